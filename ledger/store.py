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
from collections import defaultdict
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
    Row,
    SmallInteger,
    Table,
    and_,
    func,
    or_,
    select,
    text,
)

from ledger import merkle
from ledger.entry import Entry, EntryDraft, rfc3339_utc
from ledger.errors import BadInput
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


def append(conn: Connection, drafts: Sequence[EntryDraft]) -> list[Entry]:
    """Append ``drafts`` in order inside ``conn``'s open transaction; returns the entries."""
    if not drafts:
        return []
    _serialise(conn)
    start, prev = _head(conn)
    keys = merkle.range_keys(0, start) if start else []
    known = {(0, start - 1): prev} if start else {}
    nodes = read_nodes(conn, [k for k in keys if k not in known])
    nodes.update(known)
    levels = [lvl for lvl, _ in keys]
    hashes = [nodes[k] for k in keys]
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
    _insert_many(conn, "ledger_entries (seq, leaf_hash, entry)", entry_rows)
    if node_rows:
        _insert_many(conn, "ledger_nodes (level, idx, hash)", node_rows)
    return entries


def _insert_many(conn: Connection, target: str, rows: Sequence[tuple[object, ...]]) -> None:
    """Driver-level executemany: no per-value processing for what are already bytes and ints."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    marks = ", ".join([mark] * len(rows[0]))
    conn.exec_driver_sql(f"INSERT INTO {target} VALUES ({marks})", list(rows))


@dataclass
class _Request:
    draft: EntryDraft
    entry: Entry | None = None
    error: BaseException | None = None
    done: bool = field(default=False)


class GroupCommitter:
    """Durable appends from many threads, many entries per transaction (leader/follower).

    A thread that finds no commit in flight becomes the leader: it takes every
    waiting request, appends them in one transaction and wakes the followers.
    ``append`` returns once its entry is committed (durable) and raises if that
    transaction failed.
    """

    def __init__(self, engine: Engine, *, max_batch: int = 4096) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._waiting: list[_Request] = []
        self._leading = False

    def append(self, draft: EntryDraft) -> Entry:
        request = _Request(draft)
        with self._cond:
            self._waiting.append(request)
            while self._leading and not request.done:
                self._cond.wait()
            if not request.done:
                self._leading = True
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
        if not request.done:
            self._commit(batch)
        if request.error is not None:
            raise request.error
        assert request.entry is not None
        return request.entry

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
    top = conn.execute(select(func.max(_E.seq))).scalar()
    return 0 if top is None else int(top) + 1


def read_nodes(conn: Connection, keys: Collection[NodeKey]) -> dict[NodeKey, bytes]:
    """Perfect nodes by (level, index): level 0 from the entries, others from ledger_nodes."""
    by_level: dict[int, list[int]] = defaultdict(list)
    for level, idx in keys:
        by_level[level].append(idx)
    out: dict[NodeKey, bytes] = {}
    leaves = by_level.pop(0, None)
    if leaves:
        for seq, digest in conn.execute(
                select(_E.seq, _E.leaf_hash).where(_E.seq.in_(leaves))):
            out[(0, int(seq))] = bytes(digest)
    if by_level:
        cond = or_(*(and_(_N.level == lvl, _N.idx.in_(idxs)) for lvl, idxs in by_level.items()))
        for level, idx, digest in conn.execute(select(_N.level, _N.idx, _N.hash).where(cond)):
            out[(int(level), int(idx))] = bytes(digest)
    return out


def _reader(conn: Connection) -> merkle.NodeReader:
    return lambda keys: read_nodes(conn, keys)


def root(conn: Connection, size_: int | None = None) -> bytes:
    """RFC 9162 root of the first ``size_`` entries (default: all), from stored nodes."""
    current = size(conn)
    n = current if size_ is None else size_
    if not 0 <= n <= current:
        raise BadInput(f"tree size {n} is outside the ledger's 0..{current}")
    return merkle.tree_root(n, _reader(conn))


def inclusion_proof(conn: Connection, index: int, size_: int | None = None) -> list[bytes]:
    current = size(conn)
    n = current if size_ is None else size_
    if not 0 <= index < n <= current:
        raise BadInput(f"need 0 <= index < size <= {current} (ledger size)")
    return merkle.inclusion_proof(index, n, _reader(conn))


def consistency_proof(conn: Connection, old: int, new: int | None = None) -> list[bytes]:
    current = size(conn)
    n = current if new is None else new
    if not 0 < old <= n <= current:
        raise BadInput(f"need 0 < old <= new <= {current} (ledger size)")
    return merkle.consistency_proof(old, n, _reader(conn))


def iter_chunks(
    conn: Connection, start: int = 0, stop: int | None = None, *, leaves: bool = False
) -> Iterator[tuple[list[bytes], list[bytes] | None]]:
    """Pages of entry bytes (and stored leaf hashes if ``leaves``), in seq order."""
    end = size(conn) if stop is None else stop
    cols = (_E.entry, _E.leaf_hash) if leaves else (_E.entry,)
    pos = start
    while pos < end:
        upto = min(pos + PAGE, end)
        rows = conn.execute(
            select(*cols).where(_E.seq >= pos, _E.seq < upto).order_by(_E.seq)).all()
        if not rows:
            return
        yield _column(rows, 0), (_column(rows, 1) if leaves else None)
        pos += len(rows)
        if len(rows) < upto - pos + len(rows):
            return


def _as_bytes(value: object) -> bytes:
    if isinstance(value, str):  # a value someone stored with the wrong type: keep its bytes
        return value.encode("utf-8", "surrogateescape")
    return bytes(value)  # type: ignore[call-overload, no-any-return]


def _column(rows: Sequence[Row[Any]], i: int) -> list[bytes]:
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
