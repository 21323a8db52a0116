"""Verify the ledger as stored in the database, on two processes for large logs.

The reading happens here; every decision is ``ledger.verify``'s (pure). The log
is split at its largest power of two ``k``: this process checks ``[0, k)`` while
a forked child reads and checks ``[k, n)``, and ``verify.join`` checks the seam.
Every entry is held against its stored leaf hash as it is read, and the computed
root against the stored tree nodes. ``nodes=True`` (full verification) also
re-folds every stored tree node from the leaf hashes (``ledger.node_check``):
the nodes serve proofs, so they are never trusted.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Collection
from multiprocessing.connection import Connection as Pipe

from sqlalchemy import Connection, Engine

from ledger import store
from ledger.errors import LedgerTampered, VerificationFailed
from ledger.node_check import check_nodes
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
        for chunk, leaves in store.iter_chunks(conn, start, stop, leaves=True):
            checker.feed(chunk, leaves)  # raises at the first entry unlike its stored hash
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
    engine: Engine, *, prefix_sizes: Collection[int] = (), parallel: bool = True,
    nodes: bool = False,
) -> LogVerdict:
    """Verify every stored entry, their stored leaf hashes and the stored tree root;
    with ``nodes``, every stored tree node too."""
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
    if nodes:
        verify_nodes(engine, n)
    return verdict


def verify_nodes(engine: Engine, n: int) -> int:
    """Re-fold every stored tree node from the stored leaf hashes of the first ``n``
    entries (checked against the entries by ``verify_stored``); returns rows checked."""
    with _read_only(engine) as conn, conn.begin():
        cursor = conn.connection.cursor()
        try:
            cursor.execute("SELECT leaf_hash FROM ledger_entries ORDER BY seq")
            leaves = [bytes(r[0]) for r in cursor.fetchall()]
            cursor.execute("SELECT level, idx, hash FROM ledger_nodes")
            rows = cursor.fetchall()
        finally:
            cursor.close()
    if len(leaves) != n:
        raise LedgerTampered("entries changed while verifying", seq=min(len(leaves), n))
    with bulk_mode():
        return check_nodes(leaves, rows, min_level=store.STORED_FROM_LEVEL)


def _name_the_difference(engine: Engine, n: int) -> None:
    """The entries chain but their root differs from the stored tree: say where (slow path)."""
    with _read_only(engine) as conn, conn.begin():
        checker = LogChecker(0, GENESIS_PREV_HASH)
        for chunk, leaves in store.iter_chunks(conn, 0, n, leaves=True):
            checker.feed(chunk, leaves)  # raises at the first entry unlike its stored hash
    verify_nodes(engine, n)  # raises at the first stored node unlike the leaves under it
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
