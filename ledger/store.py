"""The ledger in SQL: append inside the caller's transaction, read entries, prove.

Two tables (created by migration ``0001_ledger``; the database refuses UPDATE and
DELETE on both): ``ledger_entries`` (seq, leaf hash, canonical bytes) and
``ledger_nodes`` (the hash of every complete subtree of level >= 1). Appends keep
the nodes up to date from the *frontier* (the O(log n) complete subtrees covering
the log), so roots and proofs are O(log n) lookups, never a rebuild.

Appends are serialised so the chain never forks: SQLite write transactions begin
``BEGIN IMMEDIATE`` (``vault.db.make_engine``), and on PostgreSQL ``append`` takes a
transaction-scoped advisory lock before reading the head. ``GroupCommitter``
batches concurrent appenders into shared durable transactions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator, Sequence
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
    text,
)

from ledger import merkle
from ledger.entry import Entry, EntryDraft, rfc3339_utc
from ledger.errors import BadInput, LedgerTampered
from ledger.merkle import NodeKey

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


def _serialise(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_APPEND_LOCK})


def _head(conn: Connection) -> tuple[int, bytes]:
    row = conn.execute(select(_E.seq, _E.leaf_hash).order_by(_E.seq.desc()).limit(1)).first()
    return (0, _GENESIS) if row is None else (int(row[0]) + 1, bytes(row[1]))


# Frontiers (the perfect subtrees covering the whole log) by (size, last leaf hash).
# The last leaf hash commits to the entire chain before it, so a hit is the same
# log's frontier whichever database it came from; a miss reads O(log n) nodes.
_FRONTIERS: dict[tuple[int, bytes], tuple[tuple[int, ...], tuple[bytes, ...]]] = {}
_FRONTIERS_KEPT = 16


def _remember_frontier(size: int, last: bytes, levels: list[int], hashes: list[bytes]) -> None:
    if len(_FRONTIERS) >= _FRONTIERS_KEPT:
        _FRONTIERS.clear()
    _FRONTIERS[(size, last)] = (tuple(levels), tuple(hashes))


def _frontier(conn: Connection, size: int, last: bytes) -> tuple[list[int], list[bytes]]:
    cached = _FRONTIERS.get((size, last))
    if cached is not None:
        return list(cached[0]), list(cached[1])
    keys = merkle.range_keys(0, size) if size else []
    known = {(0, size - 1): last} if size else {}
    nodes = read_nodes(conn, [k for k in keys if k not in known])
    nodes.update(known)
    try:
        return [lvl for lvl, _ in keys], [nodes[k] for k in keys]
    except KeyError:
        raise LedgerTampered("stored tree nodes are missing: cannot extend the log") from None


def append(conn: Connection, drafts: Sequence[EntryDraft]) -> list[Entry]:
    """Append ``drafts`` in order inside ``conn``'s open transaction; returns the entries."""
    if not drafts:
        return []
    _serialise(conn)
    start, prev = _head(conn)
    levels, hashes = _frontier(conn, start, prev)
    time = rfc3339_utc()
    entries: list[Entry] = []
    entry_rows: list[tuple[int, bytes, bytes]] = []
    node_rows: list[tuple[int, int, bytes]] = []
    for offset, draft in enumerate(drafts):
        seq = start + offset
        entry = Entry.place(draft, seq=seq, prev=prev.hex(), time=time)
        entries.append(entry)
        entry_rows.append((seq, entry.leaf_hash, entry.raw))
        level, digest, idx = 0, entry.leaf_hash, seq
        while levels and levels[-1] == level:
            levels.pop()
            digest = merkle.node_hash(hashes.pop(), digest)
            level, idx = level + 1, idx >> 1
            node_rows.append((level, idx, digest))
        levels.append(level)
        hashes.append(digest)
        prev = entry.leaf_hash
    _remember_frontier(start + len(drafts), prev, levels, hashes)
    _insert_many(conn, "ledger_entries (seq, leaf_hash, entry)", entry_rows)
    if node_rows:
        _insert_many(conn, "ledger_nodes (level, idx, hash)", node_rows)
    return entries


COPY_FROM = 64  # rows; below this an executemany is cheaper than opening a COPY


def _insert_many(conn: Connection, target: str, rows: Sequence[tuple[object, ...]]) -> None:
    """Driver-level executemany (COPY on PostgreSQL for bulk): values are already bytes/ints."""
    if conn.dialect.name == "postgresql" and len(rows) >= COPY_FROM:
        raw: Any = conn.connection.driver_connection  # psycopg, in this same transaction
        with raw.cursor() as cursor, cursor.copy(f"COPY {target} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    conn.exec_driver_sql(f"INSERT INTO {target} VALUES ({_marks(conn, len(rows[0]))})",
                         list(rows))


@dataclass
class _Request:
    draft: EntryDraft
    entry: Entry | None = None
    error: BaseException | None = None
    done: bool = field(default=False)


class GroupCommitter:
    """Durable appends from many threads, many entries per transaction (leader/follower).

    A thread that finds no commit in flight becomes the leader: it gathers the
    waiting requests (waiting up to ``gather_s`` for as many as the previous
    batch had, since those writers are about to come back), appends them in one
    transaction and wakes the followers. ``append`` returns once its entry is
    committed (durable) and raises if that transaction failed.
    """

    def __init__(
        self, engine: Engine, *, max_batch: int = 4096, gather_s: float = 0.001
    ) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.gather_s = gather_s
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._arrived = threading.Condition(lock)
        self._waiting: list[_Request] = []
        self._leading = False
        self._last_batch = 1

    def append(self, draft: EntryDraft) -> Entry:
        request = _Request(draft)
        with self._cond:
            self._waiting.append(request)
            self._arrived.notify()
            while self._leading and not request.done:
                self._cond.wait()
            if not request.done:
                self._leading = True
                self._gather()
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                self._last_batch = len(batch)
        if not request.done:
            self._commit(batch)
        if request.error is not None:
            raise request.error
        assert request.entry is not None
        return request.entry

    def _gather(self) -> None:
        """Under the lock: wait briefly for the writers of the last batch to come back."""
        deadline = time.monotonic() + self.gather_s
        while len(self._waiting) < min(self._last_batch, self.max_batch):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.wait(remaining)

    def _commit(self, batch: list[_Request]) -> None:
        entries: list[Entry] = []
        error: BaseException | None = None
        try:
            with self.engine.begin() as conn:
                entries = append(conn, [r.draft for r in batch])
        except BaseException as exc:  # every waiter of this batch gets the failure
            error = exc
        with self._cond:
            for i, r in enumerate(batch):
                r.entry = entries[i] if error is None else None
                r.error = error
                r.done = True
            self._leading = False
            self._cond.notify_all()


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
    """Perfect nodes by (level, index): level 0 from the entries, others from ledger_nodes.

    Driver-level SQL with positional parameters: a proof's O(log n) lookups cost two
    round trips and no statement building.
    """
    leaves = [idx for level, idx in keys if level == 0]
    inner = [(level, idx) for level, idx in keys if level > 0]
    out: dict[NodeKey, bytes] = {}
    if leaves:
        rows = conn.exec_driver_sql(
            f"SELECT seq, leaf_hash FROM ledger_entries WHERE seq IN ({_marks(conn, len(leaves))})",
            tuple(leaves)).fetchall()
        out.update({(0, int(seq)): bytes(digest) for seq, digest in rows})
    if inner:
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        cond = " OR ".join([f"(level = {mark} AND idx = {mark})"] * len(inner))
        rows = conn.exec_driver_sql(
            f"SELECT level, idx, hash FROM ledger_nodes WHERE {cond}",
            tuple(v for key in inner for v in key)).fetchall()
        out.update({(int(level), int(idx)): bytes(digest) for level, idx, digest in rows})
    return out


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
