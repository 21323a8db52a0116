"""The ledger in SQL: append inside the caller's transaction, read entries, prove.

Two tables (created by migration ``0001_ledger``; the database refuses UPDATE and
DELETE on both): ``ledger_entries`` (seq, leaf hash, canonical bytes) and
``ledger_nodes`` (complete subtree hashes). Appends keep the nodes up to date from
the *frontier* (the O(log n) complete subtrees covering the log), so roots and
proofs are O(log n) lookups, never a rebuild.

Since this version appends store only the nodes of level ``>= STORED_FROM_LEVEL``
(one row per 16 entries instead of one per entry); a lower node is folded from
the <= 32 stored leaf hashes under it when read. Logs written before keep their
low-level rows, which are no longer read: both layouts give the same nodes.

Appends are serialised so the chain never forks: SQLite write transactions begin
``BEGIN IMMEDIATE`` (``vault.db.make_engine``), and on PostgreSQL ``append`` takes a
transaction-scoped advisory lock before reading the head. ``GroupCommitter``
batches concurrent appenders into shared durable transactions.
"""

from __future__ import annotations

import itertools
import struct
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    func,
    select,
)
from sqlalchemy.engine import RootTransaction
from sqlalchemy.exc import DBAPIError

from ledger import merkle
from ledger.entry import Entry, EntryDraft, check_size, place_chain, rfc3339_utc
from ledger.errors import BadInput, LedgerTampered
from ledger.merkle import NodeKey
from ledger.verify import bulk_mode

__all__ = [
    "GroupCommitter",
    "append",
    "consistency_proof",
    "entries_table",
    "inclusion_proof",
    "iter_chunks",
    "iter_entries",
    "leaf_hashes",
    "nodes_table",
    "read_nodes",
    "root",
    "size",
]

metadata = MetaData()
_BIGINT = BigInteger().with_variant(Integer(), "sqlite")
entries_table = Table(
    "ledger_entries", metadata,
    Column("seq", _BIGINT, primary_key=True, autoincrement=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("entry", LargeBinary, nullable=False),
)
nodes_table = Table(
    "ledger_nodes", metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)
_E, _N = entries_table.c, nodes_table.c
PG_APPEND_LOCK = 0x63766C67  # "cvlg": the ledger's advisory lock key on PostgreSQL
PAGE = 1 << 14
_GENESIS = bytes(32)


# -- appending ----------------------------------------------------------------------------


STORED_FROM_LEVEL = 5
"""``ledger_nodes`` gets the perfect nodes of this level and above; lower ones (at most
2**5 leaves each) are recomputed from the entries' stored leaf hashes when read."""
_HEAD = "SELECT seq, leaf_hash FROM ledger_entries ORDER BY seq DESC LIMIT 1"


def _lock_and_head(conn: Connection) -> tuple[int, bytes]:
    """Serialise appenders, then read the head (size, last leaf hash) in this transaction.

    SQLite write transactions already began ``BEGIN IMMEDIATE``. On PostgreSQL the
    advisory lock and the head read go in one query string (one round trip after
    the BEGIN); the server runs the read only once the lock is held, with a fresh
    snapshot (READ COMMITTED), so it sees every append committed before.
    """
    if not conn.in_transaction():
        conn.begin()  # what SQLAlchemy's autobegin would do; raw cursors below do not
    raw: Any = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cursor:
            cursor.execute(f"SELECT pg_advisory_xact_lock({int(PG_APPEND_LOCK)}); {_HEAD}")
            cursor.nextset()
            row = cursor.fetchone()
    else:
        cursor = raw.cursor()
        try:
            row = cursor.execute(_HEAD).fetchone()
        finally:
            cursor.close()
    return (0, _GENESIS) if row is None else (int(row[0]) + 1, bytes(row[1]))


# Frontiers (the perfect subtrees covering the whole log) by (size, last leaf hash).
# The last leaf hash commits to the entire chain before it, so a hit is the same
# log's frontier whichever database it came from; a miss reads O(log n) nodes.
_FRONTIERS: dict[tuple[int, bytes], dict[int, bytes]] = {}
_FRONTIERS_KEPT = 16


def _remember_frontier(size: int, last: bytes, frontier: dict[int, bytes]) -> None:
    if len(_FRONTIERS) >= _FRONTIERS_KEPT:
        _FRONTIERS.clear()
    _FRONTIERS[(size, last)] = frontier


def _frontier(conn: Connection, size: int, last: bytes) -> dict[int, bytes]:
    cached = _FRONTIERS.get((size, last))
    if cached is not None:
        return cached
    keys = merkle.frontier_keys(size)
    known = {(0, size - 1): last} if size else {}
    nodes = read_nodes(conn, [k for k in keys if k not in known])
    nodes.update(known)
    try:
        return {level: nodes[(level, idx)] for level, idx in keys}
    except KeyError:
        gap = _first_gap(conn, size)
        if gap is not None:
            raise LedgerTampered("entry missing (deleted): cannot extend the log",
                                 seq=gap) from None
        raise LedgerTampered("stored tree nodes are missing: cannot extend the log "
                             "(run 'civicvault ledger verify')") from None


def _first_gap(conn: Connection, size: int) -> int | None:
    """The first seq below ``size`` with no stored entry, if any (one indexed query)."""
    row = conn.exec_driver_sql(
        "SELECT min(seq) + 1 FROM ledger_entries e WHERE seq + 1 < "
        f"{_marks(conn, 1)} AND NOT EXISTS (SELECT 1 FROM ledger_entries n "
        "WHERE n.seq = e.seq + 1)", (size,)).scalar()
    if row is not None:
        return int(row)
    first = conn.exec_driver_sql("SELECT min(seq) FROM ledger_entries").scalar()
    return 0 if first is not None and int(first) > 0 else None


BULK_FROM = 512  # drafts; from here on ``append`` pauses the cyclic GC while it encodes
CHUNK = 1024  # drafts encoded, hashed and written at a time (stays in the CPU caches)


def append(conn: Connection, drafts: Sequence[EntryDraft]) -> list[Entry]:
    """Append ``drafts`` in order inside ``conn``'s open transaction; returns the entries.

    The drafts are encoded and written a chunk at a time; on PostgreSQL into one
    open COPY, so the server stores a chunk while this process encodes the next.
    """
    if not drafts:
        return []
    return _append_after(conn, _lock_and_head(conn), drafts)


def _append_after(
    conn: Connection, head: tuple[int, bytes], drafts: Sequence[EntryDraft], *,
    commit: bool = False,
) -> list[Entry]:
    """``append`` once the head is read under the append lock (``_lock_and_head``).

    ``commit``: the caller commits right after. On PostgreSQL a small batch is then
    written and committed in one statement string (one round trip instead of two);
    the caller's own commit finds the transaction already ended.
    """
    start, last = head
    frontier = _frontier(conn, start, last)
    stamp = rfc3339_utc()
    if commit and conn.dialect.name == "postgresql" and len(drafts) < COPY_FROM:
        placed = place_chain(drafts, start=start, prev=last, time=stamp)
        leaves = [e.leaf_hash for e in placed]
        frontier, made = merkle.extend(start, frontier, leaves, min_level=STORED_FROM_LEVEL)
        _insert_and_commit(conn, placed, made)
        _remember_frontier(start + len(placed), leaves[-1], frontier)
        return placed
    entries: list[Entry] = []
    nodes: list[tuple[int, int, bytes]] = []
    bulk = len(drafts) >= BULK_FROM
    with bulk_mode() if bulk else nullcontext(), _entry_writer(conn, len(drafts)) as write:
        for lo in range(0, len(drafts), CHUNK):
            part = place_chain(drafts[lo:lo + CHUNK], start=start + lo, prev=last, time=stamp)
            leaves = [e.leaf_hash for e in part]
            frontier, made = merkle.extend(start + lo, frontier, leaves,
                                           min_level=STORED_FROM_LEVEL)
            write(start + lo, leaves, [e.raw for e in part])
            entries += part
            nodes += made
            last = leaves[-1]
    if nodes:
        _insert_nodes(conn, nodes)
    _remember_frontier(start + len(entries), last, frontier)
    return entries


COPY_FROM = 64  # rows; below this an executemany is cheaper than opening a COPY
_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, no extension
_PGCOPY_TRAILER = b"\xff\xff"
_ENTRY_ROW = struct.Struct(">hiqi32si").pack  # 3 fields: int8 seq, bytea(32), bytea length
_NODE_ROW = struct.Struct(">hihiqi32s").pack  # 3 fields: int2 level, int8 idx, bytea(32)
_EntryWrite = Callable[[int, list[bytes], list[bytes]], None]


def _insert_and_commit(
    conn: Connection, entries: list[Entry], nodes: list[tuple[int, int, bytes]]
) -> None:
    """PostgreSQL: INSERT the rows and COMMIT in one simple-protocol query string.

    Every value is an int we computed or bytes we spell in hex digits, so the
    literals cannot carry anything but the values.
    """
    sql = ["INSERT INTO ledger_entries (seq, leaf_hash, entry) VALUES ",
           ",".join(f"({int(e.seq)},decode('{e.leaf_hash.hex()}','hex'),"
                    f"decode('{e.raw.hex()}','hex'))" for e in entries), ";"]
    if nodes:
        sql += ["INSERT INTO ledger_nodes (level, idx, hash) VALUES ",
                ",".join(f"({int(level)},{int(idx)},decode('{digest.hex()}','hex'))"
                         for level, idx, digest in nodes), ";"]
    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cursor:
        cursor.execute("".join([*sql, "COMMIT"]))


@contextmanager
def _entry_writer(conn: Connection, rows: int) -> Iterator[_EntryWrite]:
    """Writes (first seq, leaf hashes, entry bytes) chunks: binary COPY on PostgreSQL
    for bulk, driver-level executemany otherwise (values are already bytes/ints)."""
    if conn.dialect.name != "postgresql" or rows < COPY_FROM:
        def insert(start: int, leaves: list[bytes], raws: list[bytes]) -> None:
            _executemany(conn, "ledger_entries (seq, leaf_hash, entry)",
                         list(zip(itertools.count(start), leaves, raws)))
        yield insert
        return
    pack = _ENTRY_ROW
    with _copy_binary(conn, "ledger_entries (seq, leaf_hash, entry)") as copy:
        def write(start: int, leaves: list[bytes], raws: list[bytes]) -> None:
            copy.write(b"".join([
                part for seq, leaf, raw in zip(itertools.count(start), leaves, raws)
                for part in (pack(3, 8, seq, 32, leaf, len(raw)), raw)]))
        yield write


def _insert_nodes(conn: Connection, nodes: list[tuple[int, int, bytes]]) -> None:
    if conn.dialect.name == "postgresql" and len(nodes) >= COPY_FROM:
        pack = _NODE_ROW
        with _copy_binary(conn, "ledger_nodes (level, idx, hash)") as copy:
            copy.write(b"".join([pack(3, 2, level, 8, idx, 32, digest)
                                 for level, idx, digest in nodes]))
        return
    _executemany(conn, "ledger_nodes (level, idx, hash)", nodes)


@contextmanager
def _copy_binary(conn: Connection, target: str) -> Iterator[Any]:
    """An open ``COPY target FROM STDIN (FORMAT BINARY)`` in this same transaction:
    write pre-encoded rows to it; the header and trailer are written here."""
    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(f"COPY {target} FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(_PGCOPY_HEADER)
        yield copy
        copy.write(_PGCOPY_TRAILER)


def _executemany(conn: Connection, target: str, rows: Sequence[tuple[object, ...]]) -> None:
    cursor = conn.connection.cursor()  # DBAPI cursor in this transaction: no per-row processing
    try:
        cursor.executemany(f"INSERT INTO {target} VALUES ({_marks(conn, len(rows[0]))})", rows)
    finally:
        cursor.close()


@dataclass
class _Request:
    draft: EntryDraft
    entry: Entry | None = None
    error: BaseException | None = None
    done: bool = field(default=False)


def _connection_lost(exc: BaseException) -> bool:
    """The server or network dropped the connection (SQLSTATE class 08, or 57P0x:
    terminated by an administrator, crash or shutdown)."""
    if getattr(exc, "connection_invalidated", False):
        return True
    state = str(getattr(getattr(exc, "orig", exc), "sqlstate", "") or "")
    return state.startswith(("08", "57P0"))


class GroupCommitter:
    """Durable appends from many threads, many entries per transaction (leader/follower).

    A thread that finds no commit in flight becomes the leader: it gathers the
    waiting requests (waiting up to ``gather_s`` for as many as the previous
    batch had, since those writers are about to come back), appends them in one
    transaction and wakes the followers. ``append`` returns once its entry is
    committed (durable) and raises if that transaction failed.

    Leaders commit on one connection the committer keeps while commits follow
    each other within ``keep_s`` (a pool checkout pings the server first: a round
    trip per commit); after a longer pause, or a failed commit, the next leader
    checks out a connection afresh. ``close()`` (or leaving a ``with`` block)
    returns it to the pool; so does garbage collection of the committer.
    """

    def __init__(
        self, engine: Engine, *, max_batch: int = 4096, gather_s: float = 0.001,
        keep_s: float = 1.0,
    ) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.gather_s = gather_s
        self.keep_s = keep_s
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._arrived = threading.Condition(lock)
        self._waiting: list[_Request] = []
        self._leading = False
        self._last_batch = 1
        self._conn: Connection | None = None
        self._release: weakref.finalize[[], GroupCommitter] | None = None
        self._used_at = 0.0

    def __enter__(self) -> GroupCommitter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Return the kept connection to the pool (after the commit in flight, if any)."""
        with self._cond:
            while self._leading:
                self._cond.wait()
            self._drop_connection()

    def _connection(self) -> Connection:
        """The leaders' connection (one leader at a time, so never used concurrently)."""
        if self._conn is not None and time.monotonic() - self._used_at > self.keep_s:
            self._drop_connection()  # idle a while: let the pool check it again
        if self._conn is None:
            self._conn = self.engine.connect()
            self._release = weakref.finalize(self, self._conn.close)
        return self._conn

    def _drop_connection(self, *, broken: bool = False) -> None:
        """Give the kept connection back; a ``broken`` one is discarded, never rolled back
        (a dead socket would raise from the rollback and leave the committer stuck)."""
        conn, release = self._conn, self._release
        self._conn, self._release = None, None
        if release is None:
            return
        if broken and conn is not None:
            conn.invalidate()
        try:
            release()  # closes once; later calls do nothing
        except DBAPIError:
            if conn is not None and not conn.invalidated:
                conn.invalidate()

    def append(self, draft: EntryDraft) -> Entry:
        check_size(draft)  # an entry over its cap fails alone, not its whole group
        request = _Request(draft)
        with self._cond:
            self._waiting.append(request)
            self._arrived.notify()
            while not request.done:
                if self._leading:
                    self._cond.wait()
                    continue
                self._leading = True
                self._cond.release()
                try:
                    self._lead()
                finally:
                    self._cond.acquire()
        if request.error is not None:
            raise request.error
        assert request.entry is not None
        return request.entry

    def _lead(self) -> None:
        """One transaction: begin, lock and read the head, *then* take the batch, so the
        writers of the last batch come back during that round trip; append, commit."""
        batch: list[_Request] = []
        entries: list[Entry] = []
        error: BaseException | None = None
        try:
            conn, tx, head = self._begin()
            with tx:
                batch = self._take()
                entries = _append_after(conn, head, [r.draft for r in batch], commit=True)
            self._used_at = time.monotonic()
        except BaseException as exc:  # every waiter of this batch gets the failure
            error = exc
            try:
                self._drop_connection(broken=True)  # the next leader connects afresh
            finally:
                if not batch:
                    batch = self._take()
        finally:
            with self._cond:
                for i, r in enumerate(batch):
                    r.entry = entries[i] if error is None else None
                    r.error = error
                    r.done = True
                self._leading = False
                self._cond.notify_all()

    def _begin(self) -> tuple[Connection, RootTransaction, tuple[int, bytes]]:
        """Begin, lock and read the head. A kept connection the server has dropped fails
        here, before anything is written: then, and only then, connect afresh once."""
        kept = self._conn is not None
        conn = self._connection()
        tx = conn.begin()
        try:
            return conn, tx, _lock_and_head(conn)
        except Exception as exc:  # SQLAlchemy-wrapped, or raw from a driver-level cursor
            if not (kept and _connection_lost(exc)):
                raise
        self._drop_connection(broken=True)
        conn = self._connection()
        tx = conn.begin()
        return conn, tx, _lock_and_head(conn)

    def _take(self) -> list[_Request]:
        """Wait briefly for the writers of the last batch to come back; take a batch."""
        with self._cond:
            deadline = time.monotonic() + self.gather_s
            while len(self._waiting) < min(self._last_batch, self.max_batch):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.wait(remaining)
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            self._last_batch = len(batch)
            return batch


# -- reading --------------------------------------------------------------------------------


def size(conn: Connection) -> int:
    """Number of entries in the ledger."""
    top = conn.execute(select(func.max(_E.seq))).scalar()
    return 0 if top is None else int(top) + 1


_stored_size = size  # for functions whose ``size`` parameter shadows it


def _marks(conn: Connection, n: int) -> str:
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * n)


def read_nodes(conn: Connection, keys: Collection[NodeKey]) -> dict[NodeKey, bytes]:
    """Perfect nodes by (level, index); a node that is not stored is absent from the result.

    Levels >= ``STORED_FROM_LEVEL`` come from ``ledger_nodes``; lower ones are folded
    from the stored leaf hashes under them (at most ``2**STORED_FROM_LEVEL`` each,
    and a proof's low nodes share one or two such blocks). Driver-level SQL with
    positional parameters: two round trips and no statement building.
    """
    low = [(level, idx) for level, idx in keys if level < STORED_FROM_LEVEL]
    high = [(level, idx) for level, idx in keys if level >= STORED_FROM_LEVEL]
    out: dict[NodeKey, bytes] = {}
    if low:
        leaves = _read_leaves(conn, [(idx << level, (idx + 1) << level) for level, idx in low])
        for level, idx in low:
            lo, hi = idx << level, (idx + 1) << level
            span = [leaves[seq] for seq in range(lo, hi) if seq in leaves]
            if len(span) == hi - lo:
                out[(level, idx)] = merkle.root_of(span)
    if high:
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        cond = " OR ".join([f"(level = {mark} AND idx = {mark})"] * len(high))
        rows = conn.exec_driver_sql(
            f"SELECT level, idx, hash FROM ledger_nodes WHERE {cond}",
            tuple(v for key in high for v in key)).fetchall()
        out.update({(int(level), int(idx)): bytes(digest) for level, idx, digest in rows})
    return out


def _read_leaves(conn: Connection, spans: Collection[tuple[int, int]]) -> dict[int, bytes]:
    """Stored leaf hashes by seq for the union of the ``[lo, hi)`` spans."""
    merged: list[list[int]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    mark = _marks(conn, 1)
    cond = " OR ".join([f"(seq >= {mark} AND seq < {mark})"] * len(merged))
    rows = conn.exec_driver_sql(f"SELECT seq, leaf_hash FROM ledger_entries WHERE {cond}",
                                tuple(v for span in merged for v in span)).fetchall()
    return {int(seq): bytes(digest) for seq, digest in rows}


def _reader(conn: Connection) -> merkle.NodeReader:
    return lambda keys: read_nodes(conn, keys)


def root(conn: Connection, size: int | None = None) -> bytes:
    """RFC 9162 root of the first ``size`` entries (default: all), from stored nodes."""
    current = _stored_size(conn)
    n = current if size is None else size
    if not 0 <= n <= current:
        raise BadInput(f"tree size {n} is outside the ledger's 0..{current}")
    return merkle.tree_root(n, _reader(conn))


def inclusion_proof(conn: Connection, index: int, size: int | None = None) -> list[bytes]:
    """RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` (default: all)."""
    current = _stored_size(conn)
    n = current if size is None else size
    if not 0 <= index < n <= current:
        raise BadInput(f"need 0 <= index < size <= {current} (ledger size)")
    return merkle.inclusion_proof(index, n, _reader(conn))


def consistency_proof(conn: Connection, old: int, new: int | None = None) -> list[bytes]:
    """RFC 9162 consistency proof from the tree of ``old`` to ``new`` (default: all)."""
    current = _stored_size(conn)
    n = current if new is None else new
    if not 0 < old <= n <= current:
        raise BadInput(f"need 0 < old <= new <= {current} (ledger size)")
    return merkle.consistency_proof(old, n, _reader(conn))


def iter_chunks(
    conn: Connection, start: int = 0, stop: int | None = None, *, leaves: bool = False
) -> Iterator[tuple[list[bytes], list[bytes] | None]]:
    """Pages of entry bytes (and stored leaf hashes if ``leaves``), in seq order."""
    end = size(conn) if stop is None else stop
    cols = "entry, leaf_hash" if leaves else "entry"
    sql = (f"SELECT {cols} FROM ledger_entries WHERE seq >= {_marks(conn, 1)} "
           f"AND seq < {_marks(conn, 1)} ORDER BY seq")
    cursor = conn.connection.cursor()  # DBAPI cursor in this transaction: plain tuples
    pos = start
    while pos < end:
        upto = min(pos + PAGE, end)
        cursor.execute(sql, (pos, upto))
        rows = cursor.fetchall()
        if not rows:
            return
        yield _column(rows, 0), (_column(rows, 1) if leaves else None)
        if len(rows) < upto - pos:
            return
        pos = upto


def _as_bytes(value: object) -> bytes:
    if isinstance(value, str):  # a value someone stored with the wrong type: keep its bytes
        return value.encode("utf-8", "surrogateescape")
    return bytes(value)  # type: ignore[call-overload, no-any-return]


def _column(rows: Sequence[Any], i: int) -> list[bytes]:
    try:
        return [bytes(r[i]) for r in rows]
    except TypeError:
        return [_as_bytes(r[i]) for r in rows]


def iter_entries(conn: Connection, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
    """Canonical bytes of entries ``start..stop-1`` (the Merkle leaves), in order."""
    for chunk, _ in iter_chunks(conn, start, stop):
        yield from chunk


def leaf_hashes(conn: Connection, start: int = 0, stop: int | None = None) -> list[bytes]:
    end = size(conn) if stop is None else stop
    rows = conn.execute(select(_E.leaf_hash).where(_E.seq >= start, _E.seq < end)
                        .order_by(_E.seq)).scalars().all()
    return [bytes(r) for r in rows]


def inclusion_document(conn: Connection, index: int, size_: int | None = None) -> dict[str, Any]:
    """The inclusion proof of entry ``index`` as DESIGN.md's JSON shape (hex hashes)."""
    n = size(conn) if size_ is None else size_
    path = inclusion_proof(conn, index, n)
    [leaf] = leaf_hashes(conn, index, index + 1)
    return {"leaf_index": index, "tree_size": n, "leaf_hash": leaf.hex(),
            "root_hash": root(conn, n).hex(), "inclusion_path": [h.hex() for h in path]}


def consistency_document(conn: Connection, old: int, new: int | None = None) -> dict[str, Any]:
    """The consistency proof from ``old`` to ``new`` as DESIGN.md's JSON shape (hex hashes)."""
    n = size(conn) if new is None else new
    path = consistency_proof(conn, old, n)
    return {"old_size": old, "new_size": n, "old_root": root(conn, old).hex(),
            "new_root": root(conn, n).hex(), "consistency_path": [h.hex() for h in path]}
