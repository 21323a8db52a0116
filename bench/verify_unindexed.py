"""Benchmark: state verification of a PostgreSQL vault whose blind index has lost its
subject index, as a large first load leaves it until its end (and a load killed midway,
until the next ingest).

    python bench/verify_unindexed.py                       # 1,000,000 rows, 3 rounds
    python bench/verify_unindexed.py --rows 2000000 --runs 3 --json

Builds a vault in a fresh PostgreSQL database on ``--pg``'s server (``init``, then one
``ingest_path`` of ``--rows`` synthetic voter rows from bench/pii.py's generator: three
of its columns blind-indexed). Then each round times, in this order,
``vault.verify_all.verify_everything`` (what ``civicvault ledger verify`` runs; two
processes share its state tasks):

- ``indexed``: with the subject index and the key, as after a finished load;
- ``one pass``: both dropped as a first load drops them; each process reads the buckets'
  blind-index rows in one grouped pass (``vault.manifest.bucket_reads``);
- ``bucket by bucket``: the same vault, each bucket's rows read by a query of its own,
  a scan of the whole table each (what verification did before ``bucket_reads``: its
  check for the index is made to say yes);

and builds the index and the key again for the next round. Wall seconds; the medians of
the rounds and each against ``indexed`` of the same rounds. The database is dropped at
the end. Nothing here is real data.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pgdb import ADMIN_URL, drop_pg, fresh_pg
from bench.timing import timed

INDEXED, ONE_PASS, EACH = "indexed", "one pass", "bucket by bucket"


def build(url: str, home_dir: Path, rows: int) -> None:
    from bench.pii import voter_frame
    from vault.access import authenticate
    from vault.db import make_engine
    from vault.home import VaultHome
    from vault.ingest import ingest_path
    from vault.setup import init_home

    home = VaultHome(root=home_dir, db_url_override=url)
    init_home(home)
    csv = home_dir.parent / "voters.csv"
    voter_frame(rows).write_csv(csv)
    engine = make_engine(url)
    try:
        ingest_path(engine, home, authenticate(engine, home, None), csv, "bench")
    finally:
        engine.dispose()
        csv.unlink()


def rounds(url: str, runs: int) -> dict[str, list[float]]:
    from vault import manifest, store
    from vault.db import make_engine
    from vault.verify_all import verify_everything

    engine = make_engine(url)
    check = manifest._SUBJECT_LED_INDEX
    times: dict[str, list[float]] = {INDEXED: [], ONE_PASS: [], EACH: []}

    def verify(name: str) -> None:
        def run() -> None:
            verify_everything(engine, policy_bytes=None)
        times[name].append(timed(run)[0])

    def each_bucket() -> None:
        manifest._SUBJECT_LED_INDEX = "SELECT true"  # as before bucket_reads
        try:
            verify(EACH)
        finally:
            manifest._SUBJECT_LED_INDEX = check

    steps: list[Callable[[], None]] = [lambda: verify(INDEXED), lambda: _drop(engine, store),
                                       lambda: verify(ONE_PASS), each_bucket,
                                       lambda: _rebuild(engine, store)]
    try:
        for r in range(runs):
            for step in steps:
                step()
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                  file=sys.stderr, flush=True)
    finally:
        engine.dispose()
    return times


def _drop(engine: Any, store: Any) -> None:
    with engine.begin() as conn:  # as store._defer_subject_index drops them
        conn.exec_driver_sql(f"DROP INDEX {store.SUBJECT_INDEX}")
        conn.exec_driver_sql(f"ALTER TABLE vault_blind_index DROP CONSTRAINT {store.BLIND_KEY}")


def _rebuild(engine: Any, store: Any) -> None:
    with engine.begin() as conn:
        store._build_subject_index(conn)


def report(times: dict[str, list[float]]) -> list[dict[str, Any]]:
    base = statistics.median(times[INDEXED])
    return [{"measurement": k, "runs": [round(x, 3) for x in v],
             "median_s": round(statistics.median(v), 3),
             "x_indexed": round(statistics.median(v) / base, 2)} for k, v in times.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pg", default=ADMIN_URL,
                    help="PostgreSQL admin URL")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.rows < 1 or args.runs < 1:
        ap.error("--rows and --runs must be at least 1")
    url = fresh_pg(args.pg, "cv_bench_verify")
    try:
        with tempfile.TemporaryDirectory(prefix="cvverify-") as t:
            build(url, Path(t) / "home", args.rows)
        rows = report(rounds(url, args.runs))
    finally:
        drop_pg(args.pg, url)
    if args.json:
        print(json.dumps({"rows": args.rows, "measurements": rows}, indent=1))
        return
    print(f"PostgreSQL vault of {args.rows:,} rows; verify_everything, {args.runs} rounds")
    print(f"{'measurement':<18} {'rounds (s)':<28} {'median s':>9} {'x indexed':>10}")
    for r in rows:
        runs = " ".join(f"{x:.2f}" for x in r["runs"])
        print(f"{r['measurement']:<18} {runs:<28} {r['median_s']:>9.2f} {r['x_indexed']:>10.2f}")


if __name__ == "__main__":
    main()
