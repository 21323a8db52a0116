"""Verify the ledger as stored in the database, on two processes for large logs.

The reading happens here; every decision is ``ledger.verify``'s (pure). The log
is split at its largest power of two ``k``: this process checks ``[0, k)`` while
a forked child reads and checks ``[k, n)``, and ``verify.join`` checks the seam.
The computed root is held against the stored tree nodes; only when they differ
are the entries read again against their stored leaf hashes, to name the entry.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Collection
from multiprocessing.connection import Connection as Pipe

from sqlalchemy import Connection, Engine

from ledger import store
from ledger.errors import LedgerTampered, VerificationFailed
from ledger.verify import (
    GENESIS_PREV_HASH,
    LogChecker,
    LogVerdict,
    bulk_mode,
    join,
    split_point,
)

__all__ = ["PARALLEL_FROM", "verify_stored"]

PARALLEL_FROM = 1 << 17


def _read_only(engine: Engine) -> Connection:
    # ``readonly`` makes vault.db's SQLite engines begin DEFERRED: readers never block writers.
    return engine.connect().execution_options(readonly=True)


def _check_range(
    conn: Connection, start: int, stop: int, prev: bytes | None, prefix_sizes: Collection[int]
) -> LogVerdict:
    checker = LogChecker(start, prev, [p for p in prefix_sizes if start <= p <= stop])
    with bulk_mode():
        for chunk, _ in store.iter_chunks(conn, start, stop):
            checker.feed(chunk)
    verdict = checker.finish()
    if verdict.stop != stop:
        raise LedgerTampered("entries missing from the stored log", seq=verdict.stop)
    return verdict


def _child(
    engine: Engine, start: int, stop: int, prefix_sizes: Collection[int], out: Pipe
) -> None:
    engine.dispose(close=False)  # never share the parent's pooled connections
    try:
        with _read_only(engine) as conn, conn.begin():
            out.send(("ok", _check_range(conn, start, stop, None, prefix_sizes)))
    except LedgerTampered as exc:
        out.send(("tampered", str(exc).split(": ", 1)[-1], exc.seq))
    except BaseException as exc:  # report, never print: the parent decides
        out.send(("error", type(exc).__name__, None))
    finally:
        out.close()


def _can_fork() -> bool:
    return ("fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1)


def verify_stored(
    engine: Engine, *, prefix_sizes: Collection[int] = (), parallel: bool = True
) -> LogVerdict:
    """Verify every stored entry, their stored leaf hashes and the stored tree root."""
    with _read_only(engine) as conn, conn.begin():
        n = store.size(conn)
        try:
            stored_root: bytes | None = store.root(conn, n)
        except VerificationFailed:  # stored nodes or leaf hashes gone: the entries say where
            stored_root = None
        if not (parallel and n >= PARALLEL_FROM and _can_fork()):
            verdict = _check_range(conn, 0, n, GENESIS_PREV_HASH, prefix_sizes)
        else:
            verdict = _two_processes(engine, conn, n, prefix_sizes)
    if verdict.root != stored_root:
        _name_the_difference(engine, n)
    return verdict


def _name_the_difference(engine: Engine, n: int) -> None:
    """The entries chain but their root differs from the stored tree: say where (slow path)."""
    with _read_only(engine) as conn, conn.begin():
        checker = LogChecker(0, GENESIS_PREV_HASH)
        for chunk, leaves in store.iter_chunks(conn, 0, n, leaves=True):
            checker.feed(chunk, leaves)  # raises at the first entry unlike its stored hash
    raise LedgerTampered(f"the stored tree nodes disagree with the {n} entries "
                         "(tree nodes altered)")


def _two_processes(
    engine: Engine, conn: Connection, n: int, prefix_sizes: Collection[int]
) -> LogVerdict:
    k = split_point(n)
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(engine, k, n, prefix_sizes, sender), daemon=True)
    child.start()
    sender.close()
    try:
        first = _check_range(conn, 0, k, GENESIS_PREV_HASH, prefix_sizes)
        result = receiver.recv()
    finally:
        receiver.close()
        child.join(timeout=60)
        if child.is_alive():
            child.kill()
    if result[0] == "tampered":
        raise LedgerTampered(result[1], seq=result[2])
    if result[0] != "ok":
        raise RuntimeError(f"ledger verification worker failed ({result[1]})")
    second: LogVerdict = result[1]
    return join(first, second)
