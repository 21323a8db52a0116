"""Verify the ledger as stored in the database, on two processes for large logs.

The reading happens here; every decision is ``ledger.verify``'s and
``ledger.node_check``'s (pure). The log is split at its largest power of two
``k``: this process checks ``[0, k)`` while a forked child reads and checks
``[k, n)``, and ``verify.join`` checks the seam. Every entry is held against its
stored leaf hash as it is read. ``nodes=True`` (full verification) re-folds every
stored tree node from the same pass's leaf hashes (``NodeFolder``): the nodes serve
proofs, so they are never trusted, and the root comes out of that fold; without
it the computed root is held against the stored tree's.

A segment's node error waits until its entries passed (and the seam): an entry
edited in place also changes the nodes over it, and the entry is what to name.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection as Pipe

from sqlalchemy import Connection, Engine

from ledger import store
from ledger.errors import LedgerTampered, VerificationFailed
from ledger.merkle import EMPTY_ROOT, node_hash
from ledger.node_check import NodeFolder, StoredNodes, check_nodes, group_nodes
from ledger.verify import (
    GENESIS_PREV_HASH,
    LogChecker,
    LogVerdict,
    bulk_mode,
    join,
    split_point,
)

__all__ = ["PARALLEL_FROM", "Segment", "check_segment", "conclude", "read_stored_nodes",
           "split_nodes", "verify_nodes", "verify_stored"]

PARALLEL_FROM = 1 << 17

ChunkSink = Callable[[list[bytes]], None]


def read_only(engine: Engine) -> Connection:
    # ``readonly`` makes vault.db's SQLite engines begin DEFERRED: readers never block writers.
    return engine.connect().execution_options(readonly=True)


@dataclass(frozen=True)
class Segment:
    """A checked segment: its verdict, the stored nodes it matched, a node error held back
    until the entries and the seam passed (message, seq), and stored rows over it that
    no node of it matched."""

    verdict: LogVerdict
    nodes_checked: int = 0
    node_error: tuple[str, int | None] | None = None
    leftovers: tuple[tuple[int, int], ...] = ()


def read_stored_nodes(conn: Connection) -> StoredNodes:
    cursor = conn.connection.cursor()
    try:
        cursor.execute("SELECT level, idx, hash FROM ledger_nodes")
        return group_nodes(cursor.fetchall())
    finally:
        cursor.close()


def split_nodes(stored: StoredNodes, k: int) -> tuple[StoredNodes, StoredNodes, StoredNodes]:
    """Rows over ``[0, k)``, rows over ``[k, ...)`` and rows spanning ``k``."""
    parts: tuple[StoredNodes, StoredNodes, StoredNodes] = ({}, {}, {})
    for level, rows in stored.items():
        for idx, digest in rows.items():
            lo, hi = idx << level, (idx + 1) << level
            which = 0 if hi <= k else 1 if lo >= k else 2
            parts[which].setdefault(level, {})[idx] = digest
    return parts


def check_segment(
    conn: Connection, start: int, stop: int, prev: bytes | None, prefix_sizes: Collection[int],
    *, stored: StoredNodes | None = None, sink: ChunkSink | None = None,
) -> Segment:
    """Entries ``[start, stop)`` in one read: parse, seq, prev chain, stored leaf hashes;
    with ``stored`` every node over the segment; ``sink`` sees every chunk of entry bytes."""
    sizes = [p for p in prefix_sizes if start <= p <= stop]
    folder = (NodeFolder(start, stored, min_level=store.STORED_FROM_LEVEL, prefix_sizes=sizes)
              if stored is not None else None)
    checker = LogChecker(start, prev, sizes, tree=folder is None)
    node_error: tuple[str, int | None] | None = None
    with bulk_mode():
        for chunk, leaves in store.iter_chunks(conn, start, stop, leaves=True):
            computed = checker.feed(chunk, leaves)  # raises at the first entry unlike its hash
            if sink is not None:
                sink(chunk)
            if folder is not None and node_error is None:
                try:
                    folder.feed(computed)
                except LedgerTampered as exc:
                    node_error = (_message(exc), exc.seq)
    verdict = checker.finish()
    if verdict.stop != stop:
        raise LedgerTampered("entries missing from the stored log", seq=verdict.stop)
    if folder is None:
        return Segment(verdict)
    if node_error is None:
        try:
            root, prefix = folder.finish()
        except LedgerTampered as exc:
            node_error, root, prefix = (_message(exc), exc.seq), None, {}
        verdict = replace(verdict, root=root or EMPTY_ROOT,
                          prefix_roots={**verdict.prefix_roots, **prefix})
    return Segment(verdict, folder.checked, node_error, tuple(folder.leftovers()))


def _message(exc: LedgerTampered) -> str:
    """The message as given to ``LedgerTampered`` (to raise it again in another process)."""
    text = str(exc).removeprefix("ledger verification failed at ")
    return text.split(": ", 1)[-1] if exc.seq is not None else text


def conclude(
    n: int, parts: list[Segment], spanning: StoredNodes | None = None
) -> tuple[LogVerdict, int]:
    """Join the segments (``[0, k)`` then ``[k, n)``), then raise any node error; returns
    the log's verdict and the stored nodes checked."""
    verdict = parts[0].verdict if len(parts) == 1 else join(parts[0].verdict, parts[1].verdict)
    for part in parts:
        if part.node_error is not None:
            raise LedgerTampered(part.node_error[0], seq=part.node_error[1])
    checked = sum(p.nodes_checked for p in parts)
    extra = sorted(p for part in parts for p in part.leftovers)
    for level, rows in sorted((spanning or {}).items()):
        for idx, digest in sorted(rows.items()):
            # only the node over the whole log can span the split (n = 2k)
            if (idx, 1 << level) == (0, n) and len(parts) == 2 and digest == node_hash(
                    parts[0].verdict.root, parts[1].verdict.root):
                checked += 1
                continue
            if (idx, 1 << level) == (0, n):
                raise LedgerTampered(f"tree node (level {level}, index 0) over entries "
                                     f"0..{n - 1} differs from the entries' leaf hashes "
                                     "(ledger_nodes edited)")
            extra.append((level, idx))
    if extra:
        level, idx = min(extra)
        lo = idx << level
        raise LedgerTampered(f"tree node (level {level}, index {idx}) over entries {lo}.."
                             f"{lo + (1 << level) - 1} is stored but the log has only {n} "
                             "entries (entries deleted from the end, or a node added)",
                             seq=min(lo, n))
    return verdict, checked


def _child(
    engine: Engine, start: int, stop: int, prefix_sizes: Collection[int],
    stored: StoredNodes | None, out: Pipe,
) -> None:
    engine.dispose(close=False)  # never share the parent's pooled connections
    try:
        with read_only(engine) as conn, conn.begin():
            out.send(("ok", check_segment(conn, start, stop, None, prefix_sizes, stored=stored)))
    except LedgerTampered as exc:
        out.send(("tampered", _message(exc), exc.seq))
    except BaseException as exc:  # report, never print: the parent decides
        out.send(("error", type(exc).__name__, None))
    finally:
        out.close()


def can_fork() -> bool:
    return ("fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1)


def verify_stored(
    engine: Engine, *, prefix_sizes: Collection[int] = (), parallel: bool = True,
    nodes: bool = False,
) -> LogVerdict:
    """Verify every stored entry, their stored leaf hashes and the stored tree root;
    with ``nodes``, every stored tree node too (in the same read)."""
    with read_only(engine) as conn, conn.begin():
        n = store.size(conn)
        stored = read_stored_nodes(conn) if nodes else None
        stored_root: bytes | None = None
        if not nodes:
            try:
                stored_root = store.root(conn, n)
            except VerificationFailed:  # stored nodes or leaf hashes gone: the entries say where
                stored_root = None
        if not (parallel and n >= PARALLEL_FROM and can_fork()):
            verdict, _ = conclude(n, [check_segment(conn, 0, n, GENESIS_PREV_HASH, prefix_sizes,
                                                    stored=stored)])
        else:
            verdict = _two_processes(engine, conn, n, prefix_sizes, stored)
    if not nodes and verdict.root != stored_root:
        _name_the_difference(engine, n)
    return verdict


def verify_nodes(engine: Engine, n: int) -> int:
    """Re-fold every stored tree node from the stored leaf hashes of the first ``n``
    entries (checked against the entries by ``verify_stored``); returns rows checked."""
    with read_only(engine) as conn, conn.begin():
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
    with read_only(engine) as conn, conn.begin():
        checker = LogChecker(0, GENESIS_PREV_HASH)
        for chunk, leaves in store.iter_chunks(conn, 0, n, leaves=True):
            checker.feed(chunk, leaves)  # raises at the first entry unlike its stored hash
    verify_nodes(engine, n)  # raises at the first stored node unlike the leaves under it
    raise LedgerTampered(f"the stored tree nodes disagree with the {n} entries "
                         "(tree nodes altered)")


def _two_processes(
    engine: Engine, conn: Connection, n: int, prefix_sizes: Collection[int],
    stored: StoredNodes | None,
) -> LogVerdict:
    k = split_point(n)
    first_nodes, second_nodes, spanning = split_nodes(stored, k) if stored else (None,) * 3
    if stored is not None:
        first_nodes, second_nodes = first_nodes or {}, second_nodes or {}
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(engine, k, n, prefix_sizes, second_nodes, sender),
                        daemon=True)
    child.start()
    sender.close()
    try:
        first = check_segment(conn, 0, k, GENESIS_PREV_HASH, prefix_sizes, stored=first_nodes)
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
    verdict, _ = conclude(n, [first, result[1]], spanning)
    return verdict
