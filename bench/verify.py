"""Benchmark: full verification, state checks included, of a large vault.

    python bench/verify.py                         # 1,000,000 records, 1,000,000 entries, 3 runs
    python bench/verify.py --rows 100000 --entries 100000 --runs 3
    python bench/verify.py --home DIR              # build the vault there (kept), or reuse it

The fixture vault is built with the bulk paths: ``init``, one ``ingest_path`` of
``--rows`` synthetic voter rows (bench/pii.py's generator: 12 columns, 3 of them
blind-indexed), one erasure, then ``ledger.store.append`` of annotation entries in
transactions of 50,000 until the ledger holds ``--entries`` entries. Nothing here is
real data. What the fixture's ledger commits depends on the code that built it: a fixture
built before the v2 subject-bucket digest still verifies, with the older, slower v1
digest; rebuild it (a new ``--home``, ``--build-only``) to measure the current writers'.

Timed (each run in a fresh process, so peak RSS is that run's; medians of ``--runs``;
wall seconds and CPU seconds, user+sys of every process the run used, so a loaded
machine can be judged by CPU):

- ``full``: ``vault.verify_all.verify_everything(full=True)``: one read of the
  entries (chain, leaf hashes, every stored tree node re-folded, root, the entries
  that vouch for state picked out), the fast state checks (principals, policy,
  budgets, keys, datasets, sources, batches, live masks, erasures, suppression
  lists, reveals) and every subject bucket and blind-index row and every batch's
  ciphertext re-hashed, those two shared by two processes: what ``civicvault
  ledger verify`` runs;
- ``fast``: the same with ``--fast``;
- ``ledger only``: ``verify_stored()`` (chain, stored leaf hashes, root);
- ``parts``: each part alone on one process (CPU seconds), with the baseline every
  verifier pays (read every entry and hash it with hashlib); the subject buckets with the
  digest writers commit now (v2, column-wise) and with the older v1 (row texts);
- ``cli``: ``civicvault ledger verify --json`` wall time, interpreter start included.

Also: the load average before and after, the CPU count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHUNK = 50_000


def build(home_dir: Path, rows: int, entries: int) -> dict[str, float]:
    """The fixture vault; returns how long each step took."""
    from bench.pii import voter_frame
    from ledger import store
    from ledger.entry import EntryDraft
    from vault.access import access, authenticate
    from vault.db import make_engine
    from vault.erase import erase
    from vault.home import VaultHome
    from vault.ingest import ingest_path
    from vault.keyring import Keyring
    from vault.keys import provider_for
    from vault.setup import init_home

    took: dict[str, float] = {}
    home = VaultHome(root=home_dir)
    init_home(home)
    csv = home_dir.parent / "voters.csv"
    t0 = time.perf_counter()
    frame = voter_frame(rows)
    frame.write_csv(csv)
    erase_id = str(frame.get_column("voter_reg_num")[rows // 2])
    del frame
    took["generate"] = time.perf_counter() - t0
    engine = make_engine(home.db_url)
    try:
        admin = authenticate(engine, home, None)
        t0 = time.perf_counter()
        report = ingest_path(engine, home, admin, csv, "bench")
        assert report.rows_added == rows, report
        took["ingest"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with access(engine, home, admin, "erase", "dataset/bench") as conn:
            erase(conn, Keyring(provider_for(home)), "bench", {"voter_reg_num": erase_id},
                  admin.id)
        took["erase"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with engine.connect() as conn:
            have = store.size(conn)
        drafts = [EntryDraft(actor=admin.id, action="audit.note", resource=f"bench/{i}",
                             purpose="benchmark fill") for i in range(CHUNK)]
        while have < entries:
            n = min(CHUNK, entries - have)
            with engine.begin() as conn:
                store.append(conn, drafts[:n])
            have += n
        took["fill_ledger"] = time.perf_counter() - t0
    finally:
        engine.dispose()
    csv.unlink()
    return took


def run_once(home_dir: Path, mode: str) -> dict[str, Any]:
    """One timed verification in this (fresh) process."""
    from ledger.db_verify import verify_stored
    from vault.db import make_engine
    from vault.home import VaultHome
    from vault.verify_all import verify_everything

    home = VaultHome(root=home_dir)
    engine = make_engine(home.db_url)
    policy = home.policy_path.read_bytes()
    if mode == "parts":
        try:
            return parts(engine, policy)
        finally:
            engine.dispose()
    try:
        t0 = time.perf_counter()
        c0 = _cpu()
        state: dict[str, Any] = {}
        if mode == "ledger":
            entries = verify_stored(engine).size
        else:
            done = verify_everything(engine, policy_bytes=policy, full=mode == "full")
            entries, state = done.ledger.size, done.state.to_json()
        elapsed = time.perf_counter() - t0
        cpu = _cpu() - c0
    finally:
        engine.dispose()
    kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"seconds": elapsed, "cpu_seconds": cpu, "entries": entries,
            "peak_rss_mib": kib / 1024, "state": state}


def _cpu() -> float:
    """User + system CPU seconds of this process and its waited-for (forked) children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def parts(engine: Any, policy: bytes) -> dict[str, Any]:
    """Each part of the full verification alone on one process: CPU seconds."""
    import hashlib

    from ledger import store
    from ledger.db_verify import check_segment, read_stored_nodes
    from ledger.verify import GENESIS_PREV_HASH
    from vault import manifest, state_verify

    out: dict[str, Any] = {}
    clock = time.process_time
    with engine.connect().execution_options(readonly=True) as conn, conn.begin():
        t0 = clock()
        sha = hashlib.sha256
        for chunk, _ in store.iter_chunks(conn):
            [sha(b"\x00" + e).digest() for e in chunk]
        out["baseline: read every entry + hashlib leaf hash"] = clock() - t0
        t0 = clock()
        n = store.size(conn)
        picked: list[bytes] = []
        check_segment(conn, 0, n, GENESIS_PREV_HASH, (), stored=read_stored_nodes(conn),
                      sink=lambda chunk: picked.extend(state_verify.relevant(chunk)))
        out["ledger, one pass: chain, leaves, every node, root, state entries picked"] = (
            clock() - t0)
        t0 = clock()
        exp = state_verify.Expected(entries=n)
        state_verify.apply_entries(exp, picked)
        out["fold the picked entries"] = clock() - t0
        t0 = clock()
        state_verify.verify_state(conn, exp, policy_bytes=policy, full=False)
        out["fast state checks"] = clock() - t0
        tasks = state_verify.state_tasks(conn)
        t0 = clock()
        for task in tasks:
            if task[0] == state_verify.BUCKET:
                state_verify.run_task(conn, task)
        out["subject buckets"] = clock() - t0
        t0 = clock()
        for b in range(manifest.bucket_count(conn)):
            manifest.bucket_digest(conn, b, 1)
        out["subject buckets, v1 digest (entries written before v2)"] = clock() - t0
        t0 = clock()
        for task in tasks:
            if task[0] == state_verify.BATCH:
                state_verify.run_task(conn, task)
        out["ciphertext re-hash"] = clock() - t0
        out["buckets"] = manifest.bucket_count(conn)
    return out


def _child(home: Path, mode: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--run-once", mode, "--home", str(home)],
                         check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _cli(home: Path) -> tuple[float, float]:
    env = {**os.environ, "CIVICVAULT_HOME": str(home)}
    env.pop("CIVICVAULT_DB_URL", None)
    env.pop("CIVICVAULT_TOKEN", None)
    exe = Path(sys.executable).with_name("civicvault")
    t0, c0 = time.perf_counter(), _children_cpu()
    out = subprocess.run([str(exe), "ledger", "verify", "--json"], env=env,
                         capture_output=True, text=True)
    elapsed, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if out.returncode != 0:
        raise SystemExit(f"civicvault ledger verify failed: {out.stdout[-400:]} {out.stderr}")
    return elapsed, cpu


def _children_cpu() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--home", type=Path,
                    help="fixture vault home: reused if it exists, else built there and kept")
    ap.add_argument("--build-only", action="store_true", help="build --home and stop")
    ap.add_argument("--run-once", choices=["full", "fast", "ledger", "parts"],
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_once:
        print(json.dumps(run_once(args.home, args.run_once)))
        return
    with tempfile.TemporaryDirectory(prefix="cvbench-verify-") as tmp:
        home = args.home
        built: dict[str, float] = {}
        if home is None or not home.exists():  # a new --home is built there and kept
            home = home or Path(tmp) / "home"
            built = build(home, args.rows, args.entries)
            if args.build_only:
                print(json.dumps(built))
                return
        load_before = os.getloadavg()
        results: dict[str, list[dict[str, Any]]] = {"ledger": [], "fast": [], "full": []}
        cli: list[tuple[float, float]] = []
        for _ in range(args.runs):  # interleaved, so load drifts hit every variant alike
            for mode in results:
                results[mode].append(_child(home, mode))
            cli.append(_cli(home))
        split = _child(home, "parts")
        load_after = os.getloadavg()
        db_mib = sum(p.stat().st_size for p in home.glob("vault.db*")) / 2**20
    print(f"verification benchmark: {args.rows:,} records, {args.entries:,}+ ledger entries, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, SQLite file {db_mib:.0f} MiB")
    print(f"1-min load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f}")
    if built:
        print("fixture build (s): " + ", ".join(f"{k} {v:.1f}" for k, v in built.items()))
    print("| variant | median s (wall) | runs (s) | median CPU s (user+sys, all processes) "
          "| peak RSS MiB (median) |")
    print("|---|---:|---|---:|---:|")
    names = {"ledger": "ledger only (verify_stored: chain, leaf hashes, root; 2 processes)",
             "fast": "ledger verify --fast (ledger + state, no ciphertext/subjects/nodes)",
             "full": "ledger verify (full: + nodes, subject buckets, ciphertext re-hash)"}
    for mode, runs in results.items():
        secs = [r["seconds"] for r in runs]
        print(f"| {names[mode]} | {statistics.median(secs):.2f} | "
              f"{', '.join(f'{s:.2f}' for s in secs)} | "
              f"{statistics.median(r['cpu_seconds'] for r in runs):.2f} | "
              f"{statistics.median(r['peak_rss_mib'] for r in runs):.0f} |")
    print(f"| `civicvault ledger verify --json` (full, wall incl. start-up) | "
          f"{statistics.median(c[0] for c in cli):.2f} | "
          f"{', '.join(f'{c[0]:.2f}' for c in cli)} | {statistics.median(c[1] for c in cli):.2f} "
          "| |")
    print("state checked:", json.dumps(results["full"][-1]["state"]))
    print("parts, one process, CPU s: " + ", ".join(
        f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in split.items()))


if __name__ == "__main__":
    main()
