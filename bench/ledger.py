"""Ledger benchmarks: verification, proofs and appends, with a baseline in the same run.

    python bench/ledger.py                      # 1,000,000 entries, 3 runs, SQLite + PostgreSQL
    python bench/ledger.py --entries 100000 --runs 5 --no-postgres

Prints one table (medians of ``--runs``). The baseline is pure ``hashlib`` RFC 9162
leaf hashing of the same entries already in memory: what any verifier must pay.
PostgreSQL is used at ``CIVICVAULT_BENCH_PG_URL`` (default: the local server) in a
fresh database that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger import db_verify, store
from ledger.entry import EntryDraft
from vault.db import make_engine, migrate

PG_URL = os.environ.get("CIVICVAULT_BENCH_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BATCH = 10_000


def draft(i: int) -> EntryDraft:
    return EntryDraft(actor=f"principal-{i % 13}", action="vault.ingest.batch",
                      resource=f"dataset/nc/batch/{i}", data_hash=hashlib.sha256(
                          i.to_bytes(8, "big")).hexdigest(),
                      details={"rows_in": 5000, "added": 4990, "skipped": 10, "batch": i})


def median_of(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextmanager
def sqlite_engine(folder: Path, name: str) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{folder / name}")
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def pg_engine() -> Iterator[Engine]:
    name = f"cv_bench_{secrets.token_hex(4)}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(PG_URL.rsplit("/", 1)[0] + "/" + name)
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def leaf_hash_baseline(engine: Engine) -> None:
    """Only the timed part is the hashing; the entries are read first."""
    with engine.connect() as conn:
        entries = list(store.iter_entries(conn))
    sha = hashlib.sha256
    t0 = time.perf_counter()
    [sha(b"\x00" + e).digest() for e in entries]
    _BASELINE_TIMES.append(time.perf_counter() - t0)


_BASELINE_TIMES: list[float] = []


def batched_appends(engine: Engine, n: int) -> float:
    """Entries/s appending ``n`` entries in transactions of BATCH."""
    drafts = [draft(i) for i in range(BATCH)]
    t0 = time.perf_counter()
    for lo in range(0, n, BATCH):
        with engine.begin() as conn:
            store.append(conn, drafts[: min(BATCH, n - lo)])
    return n / (time.perf_counter() - t0)


def raw_insert_baseline(engine: Engine, folder: Path, *, node_rows: int = 1) -> float:
    """Entries/s of plain sqlite3 executemany of the same pre-encoded rows into
    trigger-free copies of the tables: the entry rows and, per ``node_rows`` entries,
    one tree-node row (1: the layout before nodes below level 5 were dropped; 16:
    the rows the ledger writes now)."""
    import sqlite3

    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT seq, leaf_hash, entry FROM ledger_entries WHERE seq < ?", (BATCH * 10,)
        ).fetchall()
    path = folder / f"raw-{secrets.token_hex(4)}.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE e (seq INTEGER PRIMARY KEY, leaf_hash BLOB, entry BLOB)")
    db.execute("CREATE TABLE n (level INT, idx INT, hash BLOB, PRIMARY KEY (level, idx))"
               " WITHOUT ROWID")
    t0 = time.perf_counter()
    for lo in range(0, len(rows), BATCH):
        part = [tuple(r) for r in rows[lo:lo + BATCH]]
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO e VALUES (?, ?, ?)", part)
        db.executemany("INSERT INTO n VALUES (1, ?, ?)",
                       [(r[0], r[1]) for r in part[::node_rows]])
        db.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    db.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return len(rows) / elapsed


def raw_copy_baseline(engine: Engine) -> float:
    """Entries/s of one psycopg binary COPY per BATCH of the same pre-encoded entry rows
    into a trigger-free copy of the table (no ledger logic, no tree nodes)."""
    import struct

    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT seq, leaf_hash, entry FROM ledger_entries WHERE seq < %s", (BATCH * 10,)
        ).fetchall()
        pack = struct.Struct(">hiqi32si").pack
        bufs = [b"".join(part for seq, leaf, raw in rows[lo:lo + BATCH]
                         for part in (pack(3, 8, seq, 32, bytes(leaf), len(raw)), bytes(raw)))
                for lo in range(0, len(rows), BATCH)]
        conn.exec_driver_sql("CREATE TABLE raw_e (seq bigint PRIMARY KEY, leaf_hash bytea, "
                             "entry bytea)")
        conn.commit()
        driver = conn.connection.driver_connection
        assert driver is not None
        t0 = time.perf_counter()
        for buf in bufs:
            with driver.cursor() as cur, cur.copy(
                    "COPY raw_e FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(b"PGCOPY\n\xff\r\n\x00" + bytes(8))
                copy.write(buf)
                copy.write(b"\xff\xff")
            driver.commit()
        elapsed = time.perf_counter() - t0
        conn.exec_driver_sql("DROP TABLE raw_e")
        conn.commit()
    return len(rows) / elapsed


def group_commit(engine: Engine, writers: int, per_writer: int) -> float:
    """Entries/s with ``writers`` threads each appending one entry per call, durably."""
    barrier = threading.Barrier(writers + 1)
    with store.GroupCommitter(engine) as committer:

        def work(w: int) -> None:
            barrier.wait()
            for i in range(per_writer):
                committer.append(draft(w * per_writer + i))

        threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        return writers * per_writer / (time.perf_counter() - t0)


def one_per_transaction(engine: Engine, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        with engine.begin() as conn:
            store.append(conn, [draft(i)])
    return n / (time.perf_counter() - t0)


def proofs(engine: Engine, n: int, runs: int) -> tuple[float, float]:
    rng = random.Random(7)
    with engine.connect().execution_options(readonly=True) as conn, conn.begin():
        store.inclusion_proof(conn, 0, n)  # warm the statement cache
        incl = median_of(max(runs, 25), lambda: store.inclusion_proof(conn, rng.randrange(n), n))
        cons = median_of(max(runs, 25),
                         lambda: store.consistency_proof(conn, rng.randrange(1, n), n))
    return incl, cons


def row(name: str, value: str, goal: str) -> None:
    print(f"| {name:<72} | {value:>16} | {goal:>12} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--per-writer", type=int, default=500)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    n, runs = args.entries, args.runs

    print(f"ledger benchmark: {n:,} entries, medians of {runs} runs, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}, 1-min load average at start "
          f"{os.getloadavg()[0]:.1f}")
    print()
    print(f"| {'measure':<72} | {'result':>16} | {'goal':>12} |")
    print(f"|{'-' * 74}|{'-' * 17}:|{'-' * 13}:|")
    with tempfile.TemporaryDirectory(prefix="cv-bench-") as tmp:
        folder = Path(tmp)
        with sqlite_engine(folder, "big.db") as engine:
            rate = batched_appends(engine, n)
            row(f"batched appends, SQLite ({BATCH:,}/tx), building the log", f"{rate:,.0f}/s",
                ">= 100,000/s")
            raw = statistics.median(raw_insert_baseline(engine, folder) for _ in range(runs))
            row("  baseline: raw sqlite3 executemany of the same rows, no ledger logic",
                f"{raw:,.0f}/s", "")
            raw = statistics.median(raw_insert_baseline(engine, folder, node_rows=16)
                                    for _ in range(runs))
            row("  same, with a node row per 16 entries (what the ledger stores now)",
                f"{raw:,.0f}/s", "")
            for _ in range(runs):
                leaf_hash_baseline(engine)
            base = statistics.median(_BASELINE_TIMES)
            row(f"baseline: hashlib leaf hashes of {n:,} entries in memory", f"{base:.2f} s", "")
            full = median_of(runs, lambda: db_verify.verify_stored(engine))
            row(f"full verification of {n:,} entries read from SQLite", f"{full:.2f} s",
                "<= 2 s")
            seq = median_of(1, lambda: db_verify.verify_stored(engine, parallel=False))
            row("  same, one process", f"{seq:.2f} s", "")
            incl, cons = proofs(engine, n, runs)
            row(f"inclusion proof at {n:,} (SQLite)", f"{incl * 1000:.2f} ms", "<= 5 ms")
            row(f"consistency proof at {n:,} (SQLite)", f"{cons * 1000:.2f} ms", "<= 5 ms")
        with sqlite_engine(folder, "gc.db") as engine:
            commit_group(engine, "SQLite WAL", args.writers, args.per_writer, runs)
        if not args.no_postgres:
            with pg_engine() as engine:
                commit_group(engine, "PostgreSQL", args.writers, args.per_writer, runs)
                rate = statistics.median(batched_appends(engine, 100_000) for _ in range(runs))
                row(f"batched appends, PostgreSQL ({BATCH:,}/tx, COPY)", f"{rate:,.0f}/s",
                    ">= 100,000/s")
                raw = statistics.median(raw_copy_baseline(engine) for _ in range(runs))
                row("  baseline: raw binary COPY of the same entry rows, no ledger logic",
                    f"{raw:,.0f}/s", "")
                with engine.connect() as conn:
                    m = store.size(conn)
                incl, cons = proofs(engine, m, runs)
                row(f"inclusion / consistency proof at {m:,} (PostgreSQL)",
                    f"{incl * 1000:.2f} / {cons * 1000:.2f} ms", "<= 5 ms")


def commit_group(engine: Engine, backend: str, writers: int, per_writer: int, runs: int) -> None:
    """Durable one-entry appends: the single-writer rate, the ceiling for N writers that
    each wait for their own entry (at best N entries share one commit), and GroupCommitter."""
    single = one_per_transaction(engine, min(writers * per_writer, 300))
    row(f"baseline: 1 writer, 1 entry per durable transaction, {backend}", f"{single:,.0f}/s",
        "")
    row(f"  => ceiling for {writers} blocking writers: {writers} per commit x that rate",
        f"{writers * single:,.0f}/s", "")
    rates = [group_commit(engine, writers, per_writer) for _ in range(runs)]
    row(f"{writers} writers x 1 entry per append, GroupCommitter, {backend}",
        f"{statistics.median(rates):,.0f}/s", ">= 3,000/s")
    many = 4 * writers
    rates = [group_commit(engine, many, per_writer // 4) for _ in range(runs)]
    row(f"{many} writers x 1 entry per append, GroupCommitter, {backend}",
        f"{statistics.median(rates):,.0f}/s", "")


if __name__ == "__main__":
    main()
    print(f"\n1-min load average at end {os.getloadavg()[0]:.1f}")
