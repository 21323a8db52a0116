"""Verify the ledger and the vault's state together, in one read, on the machine's cores.

``civicvault ledger verify`` reads every entry once: that pass checks parse, seq,
the prev chain and the stored leaf hashes (``ledger.db_verify.check_segment``),
re-folds every stored tree node and the root from the same leaf hashes (full
mode), and picks out the entries that vouch for state, which are then folded
into the state the ledger vouches for (``vault.state_verify``). The expensive
state reads (every batch's ciphertext re-hashed, every subject bucket digested)
are tasks that depend on the database only.

On two processes (a forked child) the log is split at its largest power of two
(``ledger.verify.join``): each process checks its part, then takes state tasks
until none is left, the parent from the front of the list and the child from its
back (two shared ends), so neither waits for the other. The
parent folds, joins and compares. Each process reads its own snapshot; both hold
the same ledger size or the child's work is redone here (every state change is
ledgered in its own transaction, so the same size is the same state).

A ledger failure is reported first (the state check trusts the entries);
otherwise the state's first difference, in the order ``verify_state`` checks.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Collection
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any

from sqlalchemy import Connection, Engine

from ledger import store
from ledger.db_verify import (
    PARALLEL_FROM,
    Segment,
    can_fork,
    check_segment,
    conclude,
    read_stored_nodes,
    split_nodes,
)
from ledger.errors import LedgerTampered
from ledger.node_check import StoredNodes
from ledger.verify import GENESIS_PREV_HASH, LogVerdict, split_point
from vault.manifest import BUCKET_DIGEST_VERSION, bucket_reads
from vault.state_verify import (
    BUCKET,
    Expected,
    StateReport,
    Task,
    apply_entries,
    bucket_versions,
    relevant,
    run_task,
    state_tasks,
    verify_state,
)

__all__ = ["Verified", "verify_everything"]

FORK_FROM = 50_000
"""Work units (entries, plus 4 per subject and 1 per record in full mode) from which a
second process pays for its fork."""


@dataclass(frozen=True)
class Verified:
    ledger: LogVerdict
    state: StateReport
    entries_folded: int
    nodes_checked: int


class _Collector:
    """Keeps the entries that vouch for state, as the ledger pass streams by."""

    def __init__(self) -> None:
        self.entries: list[bytes] = []

    def __call__(self, chunk: list[bytes]) -> None:
        self.entries += relevant(chunk)


def _snapshot(engine: Engine) -> Connection:
    conn = engine.connect()
    if conn.dialect.name == "postgresql":  # every statement must see the same snapshot
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn.execution_options(readonly=True)


class _Hints:
    """Which digest version each subject bucket's last entry names, as each process found
    it in its own part of the log (slot 0: ``[0, k)``, slot 1: ``[k, n)``, the later one
    wins), shared so the tasks digest old vaults' buckets in their own version (v1). A hint
    only: results carry their version and the fold decides (``state_verify._buckets``)."""

    def __init__(self, ctx: Any, buckets: int) -> None:
        self.n = buckets
        self.slots = ctx.Array("b", 2 * buckets) if buckets else None

    def publish(self, slot: int, entries: list[bytes]) -> None:
        if self.slots is None:
            return
        for b, version in bucket_versions(entries).items():
            if 0 <= b < self.n and 0 < version < 128:
                self.slots[slot * self.n + b] = version

    def version(self, task: Task) -> int:
        kind, b = task
        if kind != BUCKET or self.slots is None or not 0 <= b < self.n:
            return BUCKET_DIGEST_VERSION
        return int(self.slots[self.n + b] or self.slots[b] or BUCKET_DIGEST_VERSION)


def _take_tasks(conn: Connection, tasks: list[Task], ends: Any, hints: _Hints | None,
                from_back: bool = False) -> dict[Task, Any]:
    """Run tasks until none is left: the next from the front of ``tasks`` (the shared
    ``ends`` hold the next index from the front and one past the next from the back), or
    with ``from_back``, from the back. Each process's buckets come in one order, and
    when the two meet they have each read only their own buckets' rows
    (``manifest.bucket_reads``)."""
    out: dict[Task, Any] = {}
    with bucket_reads(conn, descending=from_back):
        while tasks:
            with ends.get_lock():
                if ends[0] >= ends[1]:
                    break
                if from_back:
                    i = ends[1] = ends[1] - 1
                else:
                    i = ends[0]
                    ends[0] = i + 1
            out[tasks[i]] = run_task(conn, tasks[i], hints.version(tasks[i]) if hints else
                                     BUCKET_DIGEST_VERSION)
    return out


@dataclass(frozen=True)
class _Part:
    """What one process did: its ledger segment (if any), the entries in it that vouch for
    state, and the state tasks it ran."""

    segment: Segment | None
    entries: list[bytes]
    done: dict[Task, Any]


def _work(
    conn: Connection, span: tuple[int, int] | None, prefix_sizes: Collection[int],
    stored: StoredNodes | None, tasks: list[Task], ends: Any, hints: _Hints | None = None,
    from_back: bool = False,
) -> _Part:
    segment = None
    collect = _Collector()
    if span is not None:
        start, stop = span
        segment = check_segment(conn, start, stop, GENESIS_PREV_HASH if start == 0 else None,
                                prefix_sizes, stored=stored, sink=collect)
        if hints is not None and tasks:
            hints.publish(0 if start == 0 else 1, collect.entries)
    return _Part(segment, collect.entries, _take_tasks(conn, tasks, ends, hints, from_back))


def _child(
    engine: Engine, n: int, span: tuple[int, int] | None, prefix_sizes: Collection[int],
    stored: StoredNodes | None, tasks: list[Task], ends: Any, hints: _Hints, out: Pipe,
) -> None:
    engine.dispose(close=False)  # never share the parent's pooled connections
    try:
        with _snapshot(engine) as conn, conn.begin():
            if store.size(conn) != n:  # appended in between: the parent redoes this part
                out.send(("moved",))
                return
            out.send(("ok", _work(conn, span, prefix_sizes, stored, tasks, ends, hints,
                                  from_back=True)))
    except LedgerTampered as exc:
        out.send(("tampered", str(exc).removeprefix("ledger verification failed at ")
                  .split(": ", 1)[-1] if exc.seq is not None else
                  str(exc).removeprefix("ledger verification failed at "), exc.seq))
    except BaseException as exc:  # report, never print: the parent decides
        out.send(("error", type(exc).__name__))
    finally:
        out.close()


def _weight(conn: Connection, n: int, full: bool) -> int:
    if not full:
        return n
    top = conn.exec_driver_sql("SELECT max(id) FROM vault_subjects").scalar()
    recs = conn.exec_driver_sql("SELECT max(id) FROM vault_records").scalar()
    return n + 4 * int(top or 0) + int(recs or 0)


def verify_everything(
    engine: Engine, *, policy_bytes: bytes | None, full: bool = True,
    prefix_sizes: Collection[int] = (), after_ledger: Callable[[LogVerdict], None] | None = None,
    parallel: bool = True, fork_from: int = FORK_FROM, split_from: int = PARALLEL_FROM,
) -> Verified:
    """Ledger (chain, leaf hashes, root; with ``full`` every stored node) and state.

    ``after_ledger`` runs on the ledger's verdict before the state result is looked
    at (e.g. holding it against a signed checkpoint). ``fork_from`` / ``split_from``:
    the work (``_weight``) from which a second process is forked, and the log size
    from which the log itself is split between the two.
    """
    with _snapshot(engine) as conn, conn.begin():
        n = store.size(conn)
        stored = read_stored_nodes(conn) if full else None
        stored_root = None if full else _stored_root(conn, n)
        tasks = state_tasks(conn) if full else []
        fork = parallel and can_fork() and _weight(conn, n, full) >= fork_from
        split = fork and n >= max(split_from, 2)
        k = split_point(n) if split else n
        mine: StoredNodes | None = stored
        theirs: StoredNodes | None = None
        spanning: StoredNodes | None = None
        if split and stored is not None:
            mine, theirs, spanning = split_nodes(stored, k)
        ctx = multiprocessing.get_context("fork")
        ends = ctx.Array("q", [0, len(tasks)])
        hints = _Hints(ctx, sum(1 for kind, _ in tasks if kind == BUCKET))
        child = receiver = None
        if fork:
            receiver, sender = ctx.Pipe(duplex=False)
            child = ctx.Process(target=_child, args=(
                engine, n, (k, n) if split else None, prefix_sizes, theirs, tasks, ends,
                hints, sender), daemon=True)
            child.start()
            sender.close()
        try:
            parts = [_work(conn, (0, k), prefix_sizes, mine, tasks, ends, hints)]
            if child is not None and receiver is not None:
                parts.append(_from_child(receiver, conn, (k, n) if split else None,
                                         prefix_sizes, theirs))
        finally:
            if receiver is not None:
                receiver.close()
            if child is not None:
                child.join(timeout=5)
                if child.is_alive():
                    child.kill()
                    child.join()
        segments = [p.segment for p in parts if p.segment is not None]
        verdict, nodes = conclude(n, segments, spanning)
        if stored_root is not None and verdict.root != stored_root:
            from ledger.db_verify import verify_stored

            verify_stored(engine, parallel=False)  # names the difference, or raises
        if after_ledger is not None:
            after_ledger(verdict)
        exp = Expected(entries=n)
        for part in parts:
            apply_entries(exp, part.entries)
        done = {task: value for part in parts for task, value in part.done.items()}
        report = verify_state(conn, exp, policy_bytes=policy_bytes, full=full, done=done)
    return Verified(verdict, report, n, nodes)


def _stored_root(conn: Connection, n: int) -> bytes | None:
    from ledger.errors import VerificationFailed

    try:
        return store.root(conn, n)
    except VerificationFailed:  # stored nodes or leaf hashes gone: the entries say where
        return None


def _from_child(
    receiver: Pipe, conn: Connection, span: tuple[int, int] | None,
    prefix_sizes: Collection[int], stored: StoredNodes | None,
) -> _Part:
    try:
        result = receiver.recv()
    except EOFError:
        result = ("error", "no result")
    if result[0] == "ok":
        part: _Part = result[1]
        return part
    if result[0] == "tampered":
        raise LedgerTampered(result[1], seq=result[2])
    if result[0] == "moved":  # its snapshot is not ours: it took no task; redo its ledger part
        return _work(conn, span, prefix_sizes, stored, [], None)
    raise RuntimeError(f"verification worker failed ({result[1]})")
