"""Benchmark: SQLite's deferred blind-index lookup index (``vault.store._build_subject_index``),
built at the end of a first load, with the sort settings it uses against earlier ones:

    python bench/sqlite_index.py [--rows 1000000] [--runs 3] [--db VAULT.db]

Builds a vault of ``--rows`` voters (``bench/vault.py``'s 12 columns, three lookup columns,
so three index rows a voter) unless ``--db`` names one already built, then, ``--runs``
rounds, for each setting: copies the database, drops the index, reads the table once
(warm), and times ``CREATE INDEX`` and its commit. Settings are ``PRAGMA cache_size`` (the
sorter's run size) and ``PRAGMA threads`` (its helper threads). Prints each round and the
medians. Synthetic rows only; every copy is removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import vault as bench_vault
from vault import seal_worker
from vault.store import _LOOKUP_INDEX_SQL, _SORT_CACHE, LOOKUP_INDEX


def settings() -> dict[str, tuple[int, int]]:
    cores = seal_worker.cores()
    return {f"16 MiB runs, {min(4, cores)} threads (before)": (-16384, min(4, cores)),
            f"{-_SORT_CACHE // 1024} MiB runs, {min(4, 2 * cores)} threads (vault.store)":
                (_SORT_CACHE, min(4, 2 * cores))}


def build(rows: int, tmp: Path) -> Path:
    parquet, kek = bench_vault.write_fixture(tmp, rows)
    db = tmp / "vault.db"
    bench_vault.civicvault_store(parquet, f"sqlite:///{db}", kek)()
    parquet.unlink()
    return db


def timed_build(db: Path, work: Path, cache: int, threads: int) -> float:
    shutil.copy(db, work)
    for suffix in ("-wal", "-shm"):
        Path(f"{work}{suffix}").unlink(missing_ok=True)
    con = sqlite3.connect(work, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute(f"DROP INDEX IF EXISTS {LOOKUP_INDEX}")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("SELECT count(*), sum(length(digest)) FROM vault_blind_index").fetchall()
        con.execute(f"PRAGMA cache_size={cache}")
        con.execute(f"PRAGMA threads={threads}")
        t0 = time.perf_counter()
        con.execute("BEGIN")
        con.execute(_LOOKUP_INDEX_SQL)
        con.execute("COMMIT")
        return time.perf_counter() - t0
    finally:
        con.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{work}{suffix}").unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--db", default=None, help="a vault database built before (kept)")
    ap.add_argument("--tmp", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cvindex-", dir=args.tmp) as t:
        tmp = Path(t)
        db = Path(args.db) if args.db else build(args.rows, tmp)
        with sqlite3.connect(db) as con:
            n = con.execute("SELECT count(*) FROM vault_blind_index").fetchone()[0]
        times: dict[str, list[float]] = {k: [] for k in settings()}
        for k in range(args.runs):
            for name, (cache, threads) in settings().items():
                times[name].append(timed_build(db, tmp / "work.db", cache, threads))
                print(f"round {k + 1}: {name}: {times[name][-1]:.2f} s", flush=True)
    print(f"\n{n:,} blind-index rows, {args.runs} rounds, {os.cpu_count()} cores "
          "(CREATE INDEX + commit, median s)")
    for name, ts in times.items():
        print(f"  {name:48s} {statistics.median(ts):6.2f}   " + " ".join(f"{x:.2f}" for x in ts))


if __name__ == "__main__":
    main()
