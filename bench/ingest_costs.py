"""What each piece of per-person work costs a 1M-row ingest: the load of ``bench/vault.py``
timed whole, and again with one piece knocked out, interleaved, with the baseline in the
same run.

    python bench/ingest_costs.py [--rows 1000000] [--runs 3] [--pg URL] [--only NAME ...] [--json]

Issue 17 asks for a 1M-row ingest within ~1.41x (SQLite) and ~2.02x (PostgreSQL) of a bare
AES-GCM + HMAC + insert baseline. The figures of docs/BENCHMARKS.md say that takes less
work per person, not tuning. This script says how much each piece of that work costs, so
what the goal would cost in properties can be weighed:

- ``no-lookup-index``: the blind index's second ordering is not built at the load's end
  (SQLite: the lookup index by column and digest; PostgreSQL: the key and the subject index).
  Gives up: finding a person by a digest (dedup of later loads, erasure by identifier,
  linkage) without a full scan.
- ``no-email-lookup``: email gets no blind-index digest (voter id and phone do: the lookup
  columns of the NC voter file, on which the issue's "today 10.85 s" was measured). Gives
  up: erasure and linkage by email.
- ``identity-lookups-only``: phone and email get no blind-index digest, only the voter id.
  Gives up: erasure and linkage by phone or email. (Which entities get blind indexes is
  already the policy's choice, ``[pii] lookup_entities``; these two are that choice.)
- ``no-fingerprint``: no keyed row fingerprint. Gives up: telling an unchanged re-delivery
  from an update (every re-delivered row would be rewritten and ledgered as updated).
- ``batch-keys``: a batch's records sealed under one key, not a key per person (and no
  wrapped key per person). Gives up: crypto-shredding one person (erasure would have to
  re-seal the batch).
- ``no-bucket-layout``: the new subjects' rows not laid out and hashed for the ledger's
  subject-bucket digests. Gives up: state verification of the subjects and blind index.
- ``all-five``: the five pieces at once (no lookup index, identity lookups only, no
  fingerprint, batch keys, no bucket layout): how near the baseline the load gets with
  none of this per-person work.

Each knock-out replaces a function of the write path, in a child process of its own, with
a stand-in giving output of the same shape (the vault it leaves is not a valid vault: it is
only timed; nothing in vault/ or flows/ can switch these off). Each child times the load
alone (wall, and CPU of the process: every thread, not the PostgreSQL server). Rounds are
interleaved (baseline, full, each knock-out), and the table gives medians. Synthetic rows
only, generated in a temporary directory and removed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KNOCKOUTS: dict[str, str] = {
    "no-lookup-index": "finding a person by digest without a full scan",
    "no-email-lookup": "erasure and linkage by email",
    "identity-lookups-only": "erasure and linkage by phone or email",
    "no-fingerprint": "telling an unchanged re-delivery from an update",
    "batch-keys": "crypto-shredding one person",
    "no-bucket-layout": "state verification of subjects and blind index",
    "all-five": "all five at once",
}
_FP = b"\0" * 16
_WRAPPED = b"\0" * 60


def _knock_out(name: str) -> None:
    """Replace the write path's piece ``name`` with a stand-in (this process only)."""
    if name == "all-five":
        for piece in ("no-lookup-index", "identity-lookups-only", "no-fingerprint",
                      "batch-keys", "no-bucket-layout"):
            _knock_out(piece)
        return
    import bench.vault as bv
    from vault import _aead, bucket_rows, crypto, store
    from vault.layout import ColumnLayout, StoredColumn

    # setattr: the stand-ins are looser than the typed functions they replace
    if name == "no-lookup-index":
        setattr(store, "_build_subject_index", lambda conn: None)  # noqa: B010
    elif name in ("no-email-lookup", "identity-lookups-only"):
        plain = {"email"} if name == "no-email-lookup" else {"phone", "email"}
        bv.LAYOUT = ColumnLayout(columns=tuple(
            StoredColumn(c.name, c.role) if c.name in plain else c
            for c in bv.LAYOUT.columns), identity=bv.LAYOUT.identity)
    elif name == "no-fingerprint":
        setattr(crypto, "pack_rows", lambda frame: range(frame.height))  # noqa: B010
        setattr(crypto, "fingerprints", lambda key, rows: [_FP] * len(rows))  # noqa: B010
    elif name == "batch-keys":
        key = _aead.random_keys(1)[0]
        seal = crypto.seal_records

        def seal_under_one(keys: Any, *rest: Any) -> list[bytes]:
            return seal(cast(Any, keys[0] if len(keys) else key), *rest)  # one key schedule
        setattr(crypto, "new_subject_keys", lambda n: [key] * n)  # noqa: B010
        setattr(crypto, "wrap_subject_keys",  # noqa: B010
                lambda wrap_key, wrap_key_id, ds_id, ids, keys: [_WRAPPED] * len(keys))
        setattr(crypto, "seal_records", seal_under_one)  # noqa: B010
    elif name == "no-bucket-layout":
        setattr(bucket_rows, "new_subject_parts", lambda *a, **kw: {})  # noqa: B010
    elif name != "full":
        raise SystemExit(f"error: no such knock-out (choose from {', '.join(KNOCKOUTS)})")


def _child(args: argparse.Namespace) -> None:
    """One timed load (or the baseline) in this process; prints its wall and CPU as JSON."""
    import bench.vault as bv
    from bench.pgdb import drop_pg, fresh_pg

    parquet, kek, tmp = Path(args.parquet), Path(args.kek), Path(args.tmp)
    pg_url = ""  # a database of this child's own, dropped when it is done
    if args.child == "baseline":
        def run() -> None:
            bv.baseline(parquet, tmp / "base.db")
    else:
        _knock_out(args.child)
        if args.pg:
            url = pg_url = fresh_pg(args.pg)
        else:
            url = f"sqlite:///{tmp / f'{args.child}.db'}"
        run = bv.civicvault_store(parquet, url, kek)
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        run()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        if pg_url:
            drop_pg(args.pg, pg_url)
        for f in tmp.glob(f"{args.child}.db*"):
            f.unlink()
    print(json.dumps({"wall": wall, "cpu": cpu}))


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1")
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=_positive, default=1_000_000)
    ap.add_argument("--runs", type=_positive, default=3)
    ap.add_argument("--pg", default="", help="PostgreSQL admin URL (default: SQLite)")
    ap.add_argument("--only", nargs="+", choices=["full", *sorted(KNOCKOUTS)], metavar="NAME",
                    help=f"knock-outs to time (default all: {', '.join(KNOCKOUTS)}; 'full' "
                         "alone: only the baseline and the whole load)")
    ap.add_argument("--json", action="store_true", help="print the medians as JSON")
    for hidden in ("--child", "--parquet", "--kek", "--tmp"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    from bench.vault import write_fixture

    variants = ["baseline", "full", *(k for k in (args.only or KNOCKOUTS) if k != "full")]
    times: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    started = time.strftime("%H:%M:%S", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="cvcosts-") as t:
        tmp = Path(t)
        parquet, kek = write_fixture(tmp, args.rows)
        for r in range(args.runs):
            for v in variants:
                cmd = [sys.executable, __file__, "--child", v, "--parquet", str(parquet),
                       "--kek", str(kek), "--tmp", str(tmp), "--pg", args.pg]
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    last = (out.stderr.strip().splitlines() or ["no output"])[-1]
                    raise SystemExit(f"error: the {v} load failed: {last}")
                got = json.loads(out.stdout.strip().splitlines()[-1])
                times[v].append((got["wall"], got["cpu"]))
                print(f"round {r + 1}/{args.runs} {v:<22} {got['wall']:6.2f} s wall "
                      f"{got['cpu']:6.2f} s CPU", file=sys.stderr, flush=True)
    med = {v: (statistics.median(w for w, _ in ts), statistics.median(c for _, c in ts))
           for v, ts in times.items()}
    base_wall, base_cpu = med["baseline"]
    full_wall, full_cpu = med["full"]
    # each round's load against the baseline of the same round: a machine whose speed
    # drifts between rounds moves both alike
    per_round = sorted(f[0] / b[0] for f, b in zip(times["full"], times["baseline"], strict=True))
    db = "PostgreSQL" if args.pg else "SQLite"
    rows = [{"variant": v, "gives_up": KNOCKOUTS.get(v, ""), "wall_s": round(w, 3),
             "x_baseline": round(w / base_wall, 3), "cpu_s": round(c, 3),
             "cpu_x_baseline": round(c / base_cpu, 3),
             "saved_s": None if v == "baseline" else round(full_wall - w, 3),
             "saved_cpu_s": None if v == "baseline" else round(full_cpu - c, 3)}
            for v, (w, c) in med.items()]
    if args.json:
        print(json.dumps({"rows": args.rows, "runs": args.runs, "database": db,
                          "cores": os.cpu_count(), "started_utc": started,
                          "full_x_baseline_per_round": [round(x, 3) for x in per_round],
                          "variants": rows}, indent=2))
        return
    print(f"\n{args.rows:,} rows x 12 columns into {db}, medians of {args.runs} interleaved "
          f"rounds, {os.cpu_count()} cores, started {started} UTC, load at end "
          f"{os.getloadavg()[0]:.2f} (baseline: SQLite, as the issue states its goals)")
    print(f"{'variant':<22} {'wall s':>7} {'x base':>7} {'CPU s':>7} {'CPU x base':>10} "
          f"{'saved s':>8} {'saved CPU s':>11}  gives up")
    for row in rows:
        saved = "" if row["saved_s"] is None else f"{row['saved_s']:8.2f}"
        saved_cpu = "" if row["saved_cpu_s"] is None else f"{row['saved_cpu_s']:11.2f}"
        print(f"{row['variant']:<22} {row['wall_s']:7.2f} {row['x_baseline']:7.2f} "
              f"{row['cpu_s']:7.2f} {row['cpu_x_baseline']:10.2f} {saved:>8} {saved_cpu:>11}"
              f"  {row['gives_up']}")
    print(f"full load / baseline, round by round: median {statistics.median(per_round):.2f}x "
          f"({', '.join(f'{x:.2f}' for x in per_round)})")


if __name__ == "__main__":
    main()
