"""Where a pipelined ingest spends its time: one line per decide / seal / write call of
``vault.store.write_batches`` (and the sealing child's requests), with its start, wall
seconds and the calling thread's CPU seconds, then the process's and its children's CPU.

    python bench/ingest_timeline.py [--rows 1000000] [--pg URL]

After the calls, a summary: each timed function's total, and what the single writer
thread spent on the database itself (the inserts, each batch's commit, the end's index
build) against the load's wall time: the part no overlap with the sealing can hide.
``--replay`` then empties the bulk tables and runs the same batches' statements again,
one transaction each, and the index build, with nothing beside them: the database's work
alone, the floor of this schema on this machine; and ``bench/vault.py``'s baseline on the
same file, timed once, to compare it with.

Same synthetic rows and layout as ``bench/vault.py``; set ``CIVICVAULT_SEAL_PROCESS`` to
compare the two sealing modes. It wraps the write path's functions to time them, so
run it for where the time goes, and ``bench/vault.py`` for the figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import vault.seal_worker as seal_worker
import vault.store as store
from bench.pgdb import drop_pg, fresh_pg
from bench.vault import baseline, civicvault_store, write_fixture
from vault import bulk

LOG: list[tuple[str, float, float, float]] = []
T0 = time.perf_counter()


def _timed(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return f(*args, **kwargs)
        finally:
            LOG.append((name, start - T0, time.perf_counter() - start, time.thread_time() - cpu))
    return timed


def main() -> None:
    global T0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pg", default="", help="PostgreSQL admin URL (default: SQLite)")
    ap.add_argument("--replay", action="store_true",
                    help="then time the same statements alone (see above)")
    args = ap.parse_args()
    execute, defer, build = (bulk.execute, store._defer_subject_index,
                             store._build_subject_index)  # untimed, for --replay
    kept: list[list[Any]] = []  # each batch's prepared statements, for --replay
    stored = store._store

    def keep(*a: Any, **kw: Any) -> Any:
        kept.append(list(kw["s"].inserts))
        return stored(*a, **kw)

    if args.replay:
        store._store = keep
    for name in ("_decide_cached", "_seal", "_store_predicted", "_store",
                 "_build_subject_index"):
        setattr(store, name, _timed(name.strip("_"), getattr(store, name)))
    setattr(bulk, "execute", _timed("insert", bulk.execute))  # noqa: B010 (the store's calls)
    seal_worker.SealWorker.result = _timed(  # type: ignore[method-assign]
        "child result", seal_worker.SealWorker.result)
    with tempfile.TemporaryDirectory(prefix="cvtimeline-") as t:
        tmp = Path(t)
        parquet, kek = write_fixture(tmp, args.rows)
        url = fresh_pg(args.pg) if args.pg else f"sqlite:///{tmp / 'v.db'}"
        try:
            before = _cpu()
            T0 = time.perf_counter()
            civicvault_store(parquet, url, kek)()
            wall = time.perf_counter() - T0
            cpu = _cpu() - before
            floor = _replay(url, kept, execute, defer, build) if args.replay else None
            if floor is not None:
                start = time.perf_counter()
                baseline(parquet, tmp / "baseline.db")
                base = time.perf_counter() - start
        finally:
            if args.pg:
                drop_pg(args.pg, url)
    print(f"rows={args.rows:,} {seal_worker.SETTING}={seal_worker.mode()} wall {wall:.2f} s")
    print(f"{'call':<22} {'start':>7} {'wall':>6} {'cpu':>6}")
    for name, start, secs, used in sorted(LOG, key=lambda e: e[1]):
        if name not in ("store", "insert"):  # inside store_predicted: in the summary
            print(f"{name:<22} {start:7.2f} {secs:6.2f} {used:6.2f}")
    server = " (not the PostgreSQL server's)" if args.pg else ""
    print(f"CPU of this process during the load{server}: {cpu:.2f} s on {os.cpu_count()} "
          f"cores ({cpu / wall / (os.cpu_count() or 1):.0%} of what they could give)")
    _summary(wall)
    if floor is not None:
        inserts, commits, index, per_table = floor
        alone = inserts + commits + index
        split = ", ".join(f"{t} {secs:.2f} s" for t, secs in sorted(per_table.items()))
        print(f"the same statements alone: inserts {inserts:.2f} s ({split}) + commits "
              f"{commits:.2f} s + the index build {index:.2f} s = {alone:.2f} s; "
              f"bench/vault.py's baseline {base:.2f} s: the load {wall / base:.2f}x, "
              f"the statements alone {alone / base:.2f}x")


def _replay(url: str, kept: list[list[Any]], execute: Callable[..., None],
            defer: Callable[..., bool], build: Callable[..., None],
            ) -> tuple[float, float, float, dict[str, float]]:
    """Empty the bulk tables, then write each batch's statements again in a transaction
    of its own and build the deferred index, as a first load does: (inserts, commits,
    index build) in seconds, and the inserts per table."""
    from sqlalchemy import text

    from vault.db import make_engine

    tables = ("vault_blind_index", "vault_records", "vault_subjects")

    def counts() -> list[int]:
        with engine.connect() as conn:
            return [int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                    for t in tables]

    engine = make_engine(url)
    loaded = counts()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # no dead rows left in the tables and indexes
            conn.execute(text("TRUNCATE vault_blind_index, vault_records, vault_subjects"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:  # VACUUM runs outside a transaction
            conn.exec_driver_sql("COMMIT")  # the begin event opened one
            conn.exec_driver_sql("VACUUM")
    with engine.begin() as conn:
        store.lock_vault(conn)  # as write_batches holds it
        deferred = defer(conn, False)
    inserts = commits = 0.0
    per_table: dict[str, float] = {}
    for statements in kept:
        with engine.begin() as conn:
            start = time.perf_counter()
            for stmt in statements:
                t = time.perf_counter()
                execute(conn, stmt)
                per_table[stmt.table] = per_table.get(stmt.table, 0.0) + time.perf_counter() - t
            done = time.perf_counter()
            inserts += done - start
        commits += time.perf_counter() - done
    start = time.perf_counter()
    if deferred:
        with engine.begin() as conn:
            build(conn)
    index = time.perf_counter() - start
    replayed = counts()
    engine.dispose()
    if replayed != loaded:  # the figure would not be the same work
        raise SystemExit(f"the replay left {replayed} rows in {tables}, the load {loaded}")
    return inserts, commits, index, per_table


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children so far."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _summary(wall: float) -> None:
    """Totals per timed function, then the writer's database work against the wall."""
    total: dict[str, list[float]] = {}
    for name, _, secs, used in LOG:
        t = total.setdefault(name, [0.0, 0.0, 0])
        t[0], t[1], t[2] = t[0] + secs, t[1] + used, t[2] + 1
    print(f"\n{'function':<22} {'calls':>5} {'wall':>7} {'cpu':>7}")
    for name, (secs, used, calls) in sorted(total.items(), key=lambda kv: -kv[1][0]):
        print(f"{name:<22} {int(calls):>5} {secs:7.2f} {used:7.2f}")
    wall_of = {name: t[0] for name, t in total.items()}
    inserts = wall_of.get("insert", 0.0)
    # store_predicted = its checks + store (the batch's statements) + the commit
    commits = wall_of.get("store_predicted", 0.0) - wall_of.get("store", 0.0)
    index = wall_of.get("build_subject_index", 0.0)
    first = min((start for name, start, _, _ in LOG if name == "store_predicted"), default=0.0)
    db = inserts + commits + index
    print(f"\nthe writer's database work: inserts {inserts:.2f} s + commits (and the checks "
          f"before them) {commits:.2f} s + the end's index build {index:.2f} s = {db:.2f} s, "
          f"{db / wall:.0%} of the {wall:.2f} s wall; the first batch reached the writer "
          f"at {first:.2f} s")


if __name__ == "__main__":
    main()
