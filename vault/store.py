"""Bulk storage: seal a whole batch column-wise, write it in one transaction with its
ledger entry, and read attribute columns back fast for DP releases.

Layout (see ``vault.schema``): attribute columns of a batch become one sealed
Arrow blob each; the direct identifiers of each stored row become one record
sealed under the subject's own key; lookup columns become blind-index digests.
A batch either lands whole, with its ``vault.ingest.batch`` ledger entry whose
``data_hash`` vouches for every stored ciphertext byte, or not at all.

Writes use SQLAlchemy Core ``executemany`` on SQLite and ``COPY`` on PostgreSQL.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import polars as pl
from sqlalchemy import Connection, Table, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ledger import store as ledger_store
from ledger.entry import EntryDraft
from vault import blind_index, bulk, crypto, pg_planning
from vault.blind_index import Normalizer
from vault.bulk import BulkInsert, Columns
from vault.errors import BadInput
from vault.identity import PERSON_COLUMN, pseudonyms
from vault.keyring import ActiveKey, Keyring, now
from vault.schema import (
    Batch,
    BatchColumn,
    BlindIndex,
    Dataset,
    Record,
    Source,
    Subject,
    Suppressed,
)

T_DATASET: Table = Dataset.__table__  # type: ignore[attr-defined]
T_SOURCE: Table = Source.__table__  # type: ignore[attr-defined]
T_BATCH: Table = Batch.__table__  # type: ignore[attr-defined]
T_COLUMN: Table = BatchColumn.__table__  # type: ignore[attr-defined]
T_SUBJECT: Table = Subject.__table__  # type: ignore[attr-defined]
T_RECORD: Table = Record.__table__  # type: ignore[attr-defined]
T_BLIND: Table = BlindIndex.__table__  # type: ignore[attr-defined]
T_SUPPRESSED: Table = Suppressed.__table__  # type: ignore[attr-defined]

_LOOKUP_CHUNK = 2000
ANALYZE_AFTER_ROWS = 10_000


@dataclass(frozen=True)
class StoredColumn:
    """How one column of a prepared batch is stored."""

    name: str
    role: Literal["direct", "attribute"]
    lookup: Normalizer | None = None  # blind-indexed with this normaliser


@dataclass(frozen=True)
class ColumnLayout:
    columns: tuple[StoredColumn, ...]
    identity: str | None = None  # the lookup column that says two rows are the same subject

    @property
    def direct(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "direct"]

    @property
    def attributes(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "attribute"]

    @property
    def lookups(self) -> list[StoredColumn]:
        return [c for c in self.columns if c.lookup is not None]

    def to_json(self, **extra: Any) -> str:
        """The dataset's stored column plan (names and roles only, never values)."""
        return json.dumps({
            "stored": [{"name": c.name, "role": c.role, "lookup": c.lookup} for c in self.columns],
            "identity": self.identity, **extra}, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> ColumnLayout:
        doc = json.loads(raw)
        return cls(columns=tuple(StoredColumn(c["name"], c["role"], c.get("lookup"))
                                 for c in doc["stored"]), identity=doc.get("identity"))


@dataclass(frozen=True)
class BatchResult:
    batch_id: int | None
    rows_in: int
    added: int
    updated: int
    skipped: int
    data_hash: str | None
    ledger_seq: int | None
    already_stored: bool = False
    suppressed: int = 0  # rows of erased subjects, not added back


def dataset_id(conn: Connection, name: str, *, create_with: tuple[str, str] | None = None) -> int:
    """Id of dataset ``name``; with ``create_with=(schema_hash, columns_json)`` create it."""
    row = conn.execute(select(T_DATASET.c.id).where(T_DATASET.c.name == name)).scalar()
    if row is not None:
        return int(row)
    if create_with is None:
        raise BadInput(f"unknown dataset '{name}'")
    schema_hash, columns_json = create_with
    return int(conn.execute(
        T_DATASET.insert().values(name=name, created=now(), schema_hash=schema_hash,
                                  columns_json=columns_json).returning(T_DATASET.c.id)
    ).scalar_one())


def attribute_columns(conn: Connection, name: str) -> list[str]:
    """The sealed attribute columns of dataset ``name`` (its stored layout; names only)."""
    raw = conn.execute(select(T_DATASET.c.columns_json).where(T_DATASET.c.name == name)).scalar()
    if raw is None:
        raise BadInput(f"unknown dataset '{name}'")
    return ColumnLayout.from_json(str(raw)).attributes


VAULT_WRITE_LOCK = 0x5641554C54000000  # "VAULT" in the high bytes: one key for all batch writers


def lock_vault(conn: Connection) -> None:
    """Serialise the transactions that change vault tables (SQLite: BEGIN IMMEDIATE
    already does). One lock for the whole vault, not one per dataset: batch, subject
    and record ids are vault-wide max + 1. Batch writers, erasure, rotation and
    re-encryption take it before they touch a data-key row or append their own ledger
    entries: an erasure that appended to the ledger and then re-sealed (a key-row
    update) once deadlocked a batch writer that held the key row and waited for the
    ledger."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": VAULT_WRITE_LOCK})


def _stored_batch(conn: Connection, source_id: int, batch_index: int) -> int | None:
    """Id of the batch already stored for (source, index), if any."""
    done = conn.execute(select(T_BATCH.c.id).where(
        T_BATCH.c.source_id == source_id, T_BATCH.c.batch_index == batch_index)).scalar()
    return None if done is None else int(done)


def bulk_insert(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert many rows (tuples in ``columns`` order): COPY on PostgreSQL, executemany on SQLite.

    Bypasses the ORM and SQLAlchemy's per-row parameter processing; the values
    are plain ints, strings and bytes.
    """
    if not rows:
        return
    for c in columns:
        if c not in table.c:
            raise ValueError(f"{table.name} has no column {c}")
    names = ", ".join(f'"{c}"' for c in columns)
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({names}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
        return
    sql = f'INSERT INTO {table.name} ({names}) VALUES ({", ".join("?" * len(columns))})'
    raw.cursor().executemany(sql, rows)


def _insert_ignore(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    ins = pg_insert(table) if conn.dialect.name == "postgresql" else sqlite_insert(table)
    conn.execute(ins.on_conflict_do_nothing(), list(rows))


def _next_id(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()) + 1


def _existing_subjects(
    conn: Connection, ds_id: int, column: str, digests: Iterable[bytes]
) -> dict[bytes, Any]:
    """Live subjects by identity digest (PostgreSQL: one index probe per digest, see
    ``vault.pg_planning``, so the cost does not depend on the planner's statistics)."""
    found: dict[bytes, Any] = {}
    todo = list(digests)
    postgres = conn.dialect.name == "postgresql"
    for i in range(0, len(todo), _LOOKUP_CHUNK):
        chunk = todo[i : i + _LOOKUP_CHUNK]
        if postgres:
            for r in conn.execute(pg_planning.lookup_sql(),
                                  {"wanted": chunk, "ds": ds_id, "col": column}):
                found[bytes(r.digest)] = r
            continue
        rows = conn.execute(
            select(T_BLIND.c.digest, T_SUBJECT.c.id, T_SUBJECT.c.fingerprint,
                   T_SUBJECT.c.wrapped_key, T_SUBJECT.c.key_id,
                   T_SUBJECT.c.current_batch_id, T_SUBJECT.c.current_row)
            .join(T_SUBJECT, T_SUBJECT.c.id == T_BLIND.c.subject_id)
            .where(T_BLIND.c.dataset_id == ds_id, T_BLIND.c.column == column,
                   T_BLIND.c.digest.in_(chunk), T_SUBJECT.c.erased_at.is_(None))
        ).all()
        for r in rows:
            found[bytes(r.digest)] = r
    return found


class KnownSubject(NamedTuple):
    """What dedup needs to know of a live subject (same names as the lookup query's row)."""

    id: int
    fingerprint: bytes | None
    wrapped_key: bytes
    key_id: int
    current_batch_id: int
    current_row: int


class IdentityCache:
    """Identity digests of the subjects this process wrote into one dataset.

    Later batches of the same ingest then need no database lookups. The cache is
    trusted only while the dataset's highest subject id is the one this process
    wrote last; if anyone else wrote subjects meanwhile, the database is asked.
    The last ``RECENT_BATCHES`` batches are kept whole, one Polars frame per batch
    (no Python object per subject; a lookup is a semi-join, and a subject stored
    twice answers with its last state). Older batches are committed by then and
    shrink to sorted 8-byte digest prefixes, so memory stays flat on a
    20-million-row file (8 bytes a subject): a digest whose prefix is among them
    is *possibly known* (:meth:`possibly_known`) and must be looked up in the
    database; every other digest is certainly new.
    """

    _COLUMNS = ("digest", *KnownSubject._fields)
    RECENT_BATCHES = 2  # the pipelined writer may not have committed the last one

    def __init__(self) -> None:
        self.ds_id: int | None = None
        self.watermark: int | None = None
        self._parts: list[pl.DataFrame] = []
        self._old: np.ndarray[Any, np.dtype[np.uint64]] = np.zeros(0, dtype=np.uint64)
        self._old_runs: list[np.ndarray[Any, np.dtype[np.uint64]]] = []

    def valid_for(self, ds_id: int, max_subject_id: int | None) -> bool:
        return self.ds_id == ds_id and self.watermark == max_subject_id

    def add(self, digests: list[bytes | None], ids: list[int], fingerprints: list[bytes],
            wrapped: list[bytes], key_ids: list[int], batch_id: int,
            rows: list[int]) -> None:
        part = pl.DataFrame({
            "digest": pl.Series(digests, dtype=pl.Binary),
            "id": pl.Series(ids, dtype=pl.Int64),
            "fingerprint": pl.Series(fingerprints, dtype=pl.Binary),
            "wrapped_key": pl.Series(wrapped, dtype=pl.Binary),
            "key_id": pl.Series(key_ids, dtype=pl.Int64),
            "current_batch_id": pl.Series([batch_id] * len(ids), dtype=pl.Int64),
            "current_row": pl.Series(rows, dtype=pl.Int64),
        }).drop_nulls("digest")
        if part.height:
            self._parts.append(part)
        while len(self._parts) > self.RECENT_BATCHES:
            self._compact(self._parts.pop(0))

    def _compact(self, part: pl.DataFrame) -> None:
        self._old_runs.append(np.sort(_prefixes(part.get_column("digest").to_list())))
        fresh = sum(len(r) for r in self._old_runs)
        if fresh >= max(len(self._old) // 4, 1 << 16):
            self._old = np.sort(np.concatenate([self._old, *self._old_runs]), kind="stable")
            self._old_runs = []

    def lookup(self, wanted: Iterable[bytes]) -> dict[bytes, KnownSubject]:
        """The subjects of the recent batches among the ``wanted`` identity digests."""
        if not self._parts:
            return {}
        keys = pl.DataFrame({"digest": pl.Series(list(wanted), dtype=pl.Binary)})
        hits = pl.concat(self._parts, rechunk=False).join(keys, on="digest", how="semi")
        if hits.height == 0:
            return {}
        hits = hits.unique(subset="digest", keep="last", maintain_order=True)
        return {r[0]: KnownSubject(*r[1:]) for r in hits.iter_rows()}

    def possibly_known(self, wanted: Iterable[bytes]) -> set[bytes]:
        """Digests (not found by :meth:`lookup`) that older, compacted batches may hold."""
        todo = list(wanted)
        if not todo or not (len(self._old) or self._old_runs):
            return set()
        prefixes = _prefixes(todo)
        hit = np.zeros(len(todo), dtype=bool)
        for run in (self._old, *self._old_runs):
            if len(run):
                at = np.minimum(np.searchsorted(run, prefixes), len(run) - 1)
                hit |= run[at] == prefixes
        return {todo[i] for i in np.flatnonzero(hit)}

    def clear(self) -> None:
        self._parts.clear()
        self._old = np.zeros(0, dtype=np.uint64)
        self._old_runs = []
        self.ds_id = self.watermark = None

    def __len__(self) -> int:
        """Distinct subjects known (recent batches exactly, compacted ones by prefix)."""
        old = np.unique(np.concatenate([self._old, *self._old_runs]))
        if not self._parts:
            return len(old)
        recent = pl.concat(self._parts, rechunk=False).get_column("digest").unique().to_list()
        return len(old) + int(np.count_nonzero(~np.isin(_prefixes(recent), old)))


def _prefixes(digests: Sequence[bytes]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """The first 8 bytes of each digest as an unsigned integer."""
    if not digests:
        return np.zeros(0, dtype=np.uint64)
    return np.frombuffer(b"".join(d[:8].ljust(8, b"\0") for d in digests),
                         dtype=">u8").astype(np.uint64)


def pack_mask(live: np.ndarray[Any, np.dtype[np.bool_]]) -> bytes:
    return zlib.compress(np.packbits(live).tobytes(), 1)


def unpack_mask(blob: bytes, rows: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    bits = np.unpackbits(np.frombuffer(zlib.decompress(blob), dtype=np.uint8))[:rows]
    return bits.astype(bool)


def clear_live_rows(conn: Connection, positions: dict[int, list[int]]) -> None:
    """Mark rows (batch id -> row positions) as no longer live."""
    for batch_id, rows in positions.items():
        b = conn.execute(select(T_BATCH.c.rows, T_BATCH.c.live_mask)
                         .where(T_BATCH.c.id == batch_id)).one()
        live = unpack_mask(b.live_mask, b.rows)
        live[rows] = False
        conn.execute(update(T_BATCH).where(T_BATCH.c.id == batch_id)
                     .values(live_mask=pack_mask(live)))


@dataclass(frozen=True)
class BatchKeys:
    """The dataset's active data keys a batch is written under."""

    fingerprint: ActiveKey
    blind: ActiveKey
    subject_wrap: ActiveKey
    attr: ActiveKey
    person: ActiveKey  # keys the pseudonymous person ids (vault.identity); never rotated

    @classmethod
    def active(cls, conn: Connection, keyring: Keyring, ds_id: int) -> BatchKeys:
        return cls(*(keyring.active(conn, ds_id, p)
                     for p in ("fingerprint", "blind", "subject_wrap", "attr", "person")))

    @property
    def ids(self) -> tuple[int, int, int, int, int]:
        return (self.fingerprint.id, self.blind.id, self.subject_wrap.id, self.attr.id,
                self.person.id)


@dataclass(frozen=True)
class NextIds:
    """Ids the next batch will take, the dataset's highest subject id, and how many
    identities its erasures have suppressed (an erasure changes that count)."""

    batch: int
    subject: int
    record: int
    watermark: int | None
    suppressed: int = 0

    @classmethod
    def read(cls, conn: Connection, ds_id: int) -> NextIds:
        return cls(_next_id(conn, T_BATCH), _next_id(conn, T_SUBJECT), _next_id(conn, T_RECORD),
                   conn.execute(select(func.max(T_SUBJECT.c.id))
                                .where(T_SUBJECT.c.dataset_id == ds_id)).scalar(),
                   int(conn.execute(select(func.count()).select_from(T_SUPPRESSED)
                                    .where(T_SUPPRESSED.c.dataset_id == ds_id)).scalar_one()))


def suppressed_digests(conn: Connection, ds_id: int, column: str,
                       wanted: Iterable[bytes] | None = None) -> set[bytes]:
    """Identity digests of erased subjects (all of the dataset's, or those ``wanted``)."""
    query = select(T_SUPPRESSED.c.digest).where(T_SUPPRESSED.c.dataset_id == ds_id,
                                                T_SUPPRESSED.c.column == column)
    if wanted is None:
        return {bytes(d) for d in conn.execute(query).scalars()}
    todo = list(wanted)
    found: set[bytes] = set()
    for i in range(0, len(todo), _LOOKUP_CHUNK):
        chunk = todo[i : i + _LOOKUP_CHUNK]
        found.update(bytes(d) for d in conn.execute(
            query.where(T_SUPPRESSED.c.digest.in_(chunk))).scalars())
    return found


@dataclass
class _Decision:
    """Which rows of a batch are stored, and whether as new or updated subjects."""

    n: int
    row_fps: list[bytes]
    lookup_digests: dict[str, list[bytes | None]]
    identity: list[bytes | None] | None
    new_rows: list[int]
    upd_rows: list[tuple[int, Any]]
    skipped: int
    suppressed: int = 0

    @property
    def stored(self) -> list[int]:
        return sorted(self.new_rows + [i for i, _ in self.upd_rows])


@dataclass
class _Sealed:
    """A batch's ciphertexts and ids, laid out as table rows (no plaintext inside).

    Everything per row is prepared here, so storing it is database work only.
    """

    batch_id: int
    stored: list[int]
    pos: dict[int, int]  # source row -> stored row position
    subject_of: dict[int, int]
    new_ids: list[int]
    wrapped: list[bytes]
    column_blobs: dict[str, bytes]
    data_hash: str
    inserts: list[BulkInsert]  # records, new subjects, their digests: one statement each
    subject_updates: list[dict[str, Any]]
    blind_upserts: list[dict[str, Any]]


def _decide(
    frame: pl.DataFrame, layout: ColumnLayout, keys: BatchKeys,
    existing_for: Callable[[set[bytes]], dict[bytes, Any]],
    suppressed_for: Callable[[set[bytes]], set[bytes]],
) -> _Decision:
    """Fingerprint and blind-index the batch; split its rows into new / update / skip,
    and leave out the rows of erased subjects (their identity digest is suppressed)."""
    n = frame.height
    row_fps = crypto.fingerprints(keys.fingerprint.key, crypto.pack_rows(frame))
    # Lookup digests of every lookup column, computed once, vectorised.
    lookup_digests: dict[str, list[bytes | None]] = {
        c.name: blind_index.digests(keys.blind.key, c.name, frame.get_column(c.name), c.lookup)
        for c in layout.lookups if c.lookup is not None
    }
    identity = lookup_digests.get(layout.identity) if layout.identity else None
    if identity is None:
        return _Decision(n, row_fps, lookup_digests, None, list(range(n)), [], 0)
    # Same subject twice in this batch: the last row wins.
    last = {d: i for i, d in enumerate(identity) if d is not None}
    keep = [i for i, d in enumerate(identity) if d is None or last[d] == i]
    skipped = n - len(keep)
    erased = suppressed_for(set(last))
    suppressed = 0
    if erased:
        before = len(keep)
        keep = [i for i in keep if identity[i] not in erased]
        suppressed = before - len(keep)
    existing = existing_for(set(last) - erased)
    if not existing:
        return _Decision(n, row_fps, lookup_digests, identity, keep, [], skipped, suppressed)
    new_rows: list[int] = []
    upd_rows: list[tuple[int, Any]] = []
    for i in keep:
        digest = identity[i]
        match = existing.get(digest) if digest is not None else None
        if match is None:
            new_rows.append(i)
        elif match.fingerprint is not None and bytes(match.fingerprint) == row_fps[i]:
            skipped += 1
        else:
            upd_rows.append((i, match))
    return _Decision(n, row_fps, lookup_digests, identity, new_rows, upd_rows, skipped,
                     suppressed)


def _seal(
    frame: pl.DataFrame, layout: ColumnLayout, keys: BatchKeys, ds_id: int, d: _Decision,
    ids: NextIds, old_keys: dict[int, tuple[int, bytes]], dialect: str,
) -> _Sealed:
    """All the cryptography of one batch, and its rows; pure CPU, no database.

    ``old_keys``: source row -> (subject id, unwrapped subject key) of updated rows.
    """
    stored = d.stored
    n_stored = len(stored)
    batch_id = ids.batch
    pos = {src: p for p, src in enumerate(stored)}
    part = frame[stored]
    new_ids = list(range(ids.subject, ids.subject + len(d.new_rows)))
    new_keys = crypto.new_subject_keys(len(d.new_rows))
    subject_of = dict(zip(d.new_rows, new_ids, strict=True))
    key_of = dict(zip(d.new_rows, new_keys, strict=True))
    for i, (sid, k) in old_keys.items():
        subject_of[i], key_of[i] = sid, k
    record_ids = np.arange(ids.record, ids.record + n_stored, dtype=np.int64)
    stored_subjects = np.fromiter((subject_of[i] for i in stored), dtype=np.int64,
                                  count=n_stored)
    direct_cols, attr_cols = layout.direct, layout.attributes
    fields = ",".join(direct_cols)
    record_blobs: list[bytes] = []
    inserts: list[BulkInsert] = []
    if direct_cols:
        record_blobs = crypto.seal_records(
            [key_of[i] for i in stored], ds_id, record_ids.tolist(), stored_subjects.tolist(),
            fields, crypto.pack_rows(part.select(direct_cols)))
        inserts.append(bulk.prepare(dialect, T_RECORD, Columns(
            n_stored,
            ints={"id": record_ids, "subject_id": stored_subjects,
                  "row": np.arange(n_stored, dtype=np.int64)},
            blobs={"sealed": record_blobs}, consts={"batch_id": batch_id, "fields": fields})))
    wrapped: list[bytes] = []
    if new_ids:
        wrapped = crypto.wrap_subject_keys(keys.subject_wrap.key, keys.subject_wrap.id, ds_id,
                                           new_ids, new_keys)
        inserts.append(bulk.prepare(dialect, T_SUBJECT, Columns(
            len(new_ids),
            ints={"id": np.asarray(new_ids, dtype=np.int64),
                  "current_row": np.fromiter((pos[i] for i in d.new_rows), dtype=np.int64,
                                             count=len(new_ids))},
            blobs={"wrapped_key": wrapped, "fingerprint": [d.row_fps[i] for i in d.new_rows]},
            consts={"dataset_id": ds_id, "key_id": keys.subject_wrap.id,
                    "current_batch_id": batch_id})))
    # New subjects' digests cannot clash with stored ones: bulk path, sorted by digest
    # (B-tree friendly). Updated subjects may re-deliver digests: insert-or-ignore.
    blind_upserts: list[dict[str, Any]] = []
    for col, digs in sorted(d.lookup_digests.items()):
        if new_ids:
            fresh = pl.DataFrame({
                "digest": pl.Series([digs[i] for i in d.new_rows], dtype=pl.Binary),
                "subject_id": pl.Series(new_ids, dtype=pl.Int64),
            }).drop_nulls("digest").sort("digest")
            inserts.append(bulk.prepare(dialect, T_BLIND, Columns(
                fresh.height, ints={"subject_id": fresh.get_column("subject_id").to_numpy()},
                blobs={"digest": fresh.get_column("digest").to_list()},
                consts={"dataset_id": ds_id, "column": col, "key_id": keys.blind.id})))
        blind_upserts.extend({"dataset_id": ds_id, "column": col, "digest": dg,
                              "subject_id": subject_of[i], "key_id": keys.blind.id}
                             for i, _ in d.upd_rows if (dg := digs[i]) is not None)
    subject_updates = [{"sid": subject_of[i], "fp": d.row_fps[i], "cb": batch_id, "cr": pos[i]}
                       for i, _ in d.upd_rows]
    attrs = part.select(attr_cols)
    if PERSON_COLUMN in attrs.columns:  # the plaintext person key never leaves this function
        attrs = attrs.with_columns(pseudonyms(keys.person.key, attrs.get_column(PERSON_COLUMN)))
    column_blobs = crypto.seal_batch(keys.attr.key, keys.attr.id, ds_id, batch_id,
                                     attrs) if attr_cols else {}
    return _Sealed(batch_id, stored, pos, subject_of, new_ids, wrapped, column_blobs,
                   crypto.batch_digest(column_blobs, record_blobs), inserts, subject_updates,
                   blind_upserts)


def _store(
    conn: Connection, keyring: Keyring, keys: BatchKeys, *, ds_id: int, dataset: str,
    source_id: int, batch_index: int, d: _Decision, s: _Sealed, actor: str,
    analyze: bool = True,
) -> BatchResult:
    """Write a sealed batch and its ledger entry in ``conn``'s transaction.

    ``analyze``: refresh PostgreSQL's statistics after a large batch (a pipelined
    ingest asks its cache, not the database, and analyses once at the end).
    """
    batch_id = s.batch_id
    conn.execute(T_BATCH.insert().values(
        id=batch_id, dataset_id=ds_id, source_id=source_id, batch_index=batch_index,
        rows=len(s.stored), data_hash=s.data_hash,
        live_mask=pack_mask(np.ones(len(s.stored), dtype=bool)), created=now()))
    bulk_insert(conn, T_COLUMN, ("batch_id", "column", "key_id", "sealed"),
                [(batch_id, c, keys.attr.id, b) for c, b in s.column_blobs.items()])
    keyring.count_sealed(conn, keys.attr.id, len(s.column_blobs))
    if s.new_ids:
        keyring.count_sealed(conn, keys.subject_wrap.id, len(s.new_ids))
    for stmt in s.inserts:
        bulk.execute(conn, stmt)
    old_positions: dict[int, list[int]] = {}
    if d.upd_rows:
        for _, m in d.upd_rows:
            old_positions.setdefault(int(m.current_batch_id), []).append(int(m.current_row))
        clear_live_rows(conn, old_positions)
        conn.execute(
            update(T_SUBJECT).where(T_SUBJECT.c.id == bindparam("sid")).values(
                fingerprint=bindparam("fp"), current_batch_id=bindparam("cb"),
                current_row=bindparam("cr")),
            s.subject_updates)
    _insert_ignore(conn, T_BLIND, s.blind_upserts)
    if analyze and conn.dialect.name == "postgresql" and len(s.stored) >= ANALYZE_AFTER_ROWS:
        # COPY leaves the planner blind to the new rows: without fresh statistics the next
        # batch's dedup lookup is planned as if the tables were empty (seconds per chunk).
        conn.execute(text("ANALYZE vault_subjects, vault_blind_index, vault_records"))
    # manifest: the state this batch leaves behind, for the verifier
    from vault import manifest, vocab

    touched = (manifest.buckets_of_range(s.new_ids[0], s.new_ids[-1] + 1) if s.new_ids else [])
    touched += manifest.buckets_of(u["subject_id"] for u in s.blind_upserts)
    live = [[batch_id, manifest.all_live_digest(len(s.stored))],
            *manifest.live_masks(conn, old_positions)]
    [entry] = ledger_store.append(conn, [EntryDraft(
        actor=actor, action=vocab.VAULT_INGEST_BATCH, resource=vocab.batch(dataset, batch_id),
        data_hash=s.data_hash,
        details={"dataset": dataset, "batch": batch_id, "source": source_id,
                 "batch_index": batch_index, "rows_in": d.n, "added": len(d.new_rows),
                 "updated": len(d.upd_rows), "skipped": d.skipped, "suppressed": d.suppressed,
                 "subject_buckets": manifest.subject_buckets(conn, touched),
                 "live_masks": sorted(live)},
    )])
    return BatchResult(batch_id, d.n, len(d.new_rows), len(d.upd_rows), d.skipped, s.data_hash,
                       entry.seq, suppressed=d.suppressed)


def _remember(cache: IdentityCache, ds_id: int, watermark: int | None, keys: BatchKeys,
              d: _Decision, s: _Sealed) -> None:
    """Teach ``cache`` the subjects a batch stores (call only if it will be committed)."""
    if d.identity is None:
        return
    if cache.ds_id is None and watermark is None:
        cache.ds_id = ds_id  # a fresh dataset: this process knows every subject
    if cache.ds_id != ds_id:
        return
    ident, fps, pos = d.identity, d.row_fps, s.pos
    cache.add([ident[i] for i in d.new_rows], s.new_ids, [fps[i] for i in d.new_rows], s.wrapped,
              [keys.subject_wrap.id] * len(s.new_ids), s.batch_id, [pos[i] for i in d.new_rows])
    if d.upd_rows:  # matched by identity: keeps its key and wrapping
        upd = d.upd_rows
        cache.add([ident[i] for i, _ in upd], [int(m.id) for _, m in upd],
                  [fps[i] for i, _ in upd], [bytes(m.wrapped_key) for _, m in upd],
                  [int(m.key_id) for _, m in upd], s.batch_id, [pos[i] for i, _ in upd])
    cache.watermark = s.new_ids[-1] if s.new_ids else watermark


def _forget(cache: IdentityCache | None) -> None:
    if cache is not None:
        cache.clear()


def write_batch(
    conn: Connection,
    keyring: Keyring,
    *,
    ds_id: int,
    dataset: str,
    source_id: int,
    batch_index: int,
    frame: pl.DataFrame,
    layout: ColumnLayout,
    actor: str,
    cache: IdentityCache | None = None,
) -> BatchResult:
    """Seal and store one prepared batch with its ledger entry, in ``conn``'s transaction.

    ``cache``: pass the same :class:`IdentityCache` to every batch of one ingest; it
    is updated here, so the caller must drop it if the transaction rolls back.
    """
    lock_vault(conn)
    done = _stored_batch(conn, source_id, batch_index)
    if done is not None:
        return BatchResult(done, frame.height, 0, 0, frame.height, None, None, True)
    keys = BatchKeys.active(conn, keyring, ds_id)
    ids = NextIds.read(conn, ds_id)

    def existing_for(wanted: set[bytes]) -> dict[bytes, Any]:
        if cache is not None and cache.valid_for(ds_id, ids.watermark):
            found: dict[bytes, Any] = dict(cache.lookup(wanted))
            older = cache.possibly_known(wanted.difference(found))
            if older and layout.identity is not None:  # compacted batches: committed, ask
                found.update(_existing_subjects(conn, ds_id, layout.identity, older))
            return found
        _forget(cache)  # rebuilt only from our own writes
        if ids.watermark is None or layout.identity is None:
            return {}
        return _existing_subjects(conn, ds_id, layout.identity, wanted)

    def suppressed_for(wanted: set[bytes]) -> set[bytes]:
        if not ids.suppressed or layout.identity is None:
            return set()
        return suppressed_digests(conn, ds_id, layout.identity, wanted)

    d = _decide(frame, layout, keys, existing_for, suppressed_for)
    if not d.new_rows and not d.upd_rows:
        return BatchResult(None, d.n, 0, 0, d.skipped, None, None, suppressed=d.suppressed)
    # Updated subjects keep their keys.
    old_keys: dict[int, tuple[int, bytes]] = {}
    by_wrap: dict[int, list[tuple[int, Any]]] = {}
    for i, m in d.upd_rows:
        by_wrap.setdefault(int(m.key_id), []).append((i, m))
    for wid, items in by_wrap.items():
        unwrapped = crypto.unwrap_subject_keys(keyring.by_id(conn, wid), wid, ds_id,
                                               [int(m.id) for _, m in items],
                                               [bytes(m.wrapped_key) for _, m in items])
        for (i, m), k in zip(items, unwrapped, strict=True):
            old_keys[i] = (int(m.id), k)
    sealed = _seal(frame, layout, keys, ds_id, d, ids, old_keys, conn.dialect.name)
    result = _store(conn, keyring, keys, ds_id=ds_id, dataset=dataset, source_id=source_id,
                    batch_index=batch_index, d=d, s=sealed, actor=actor)
    if cache is not None:
        _remember(cache, ds_id, ids.watermark, keys, d, sealed)
    return result


def write_batches(
    begin: Callable[[], AbstractContextManager[Connection]],
    keyring: Keyring,
    *,
    ds_id: int,
    dataset: str,
    source_id: int,
    batches: Iterable[tuple[int, pl.DataFrame]],
    layout: ColumnLayout,
    actor: str,
    cache: IdentityCache,
) -> Iterator[BatchResult]:
    """Write many batches of one source, sealing batch k+1 while batch k is written.

    ``begin()`` opens one transaction (e.g. an authorised ``access`` block): one to
    make sure the dataset's keys exist, then one per batch.
    The cryptography runs in this thread; each batch's inserts and commit run in a
    writer thread (SQLite and the PostgreSQL driver release the GIL while they work),
    so the two overlap.

    Batch k+1 is planned before batch k has committed, so its ids, keys and
    duplicate decisions are *predictions*: the ids and dataset high-water mark
    batch k will leave behind, and this ingest's own :class:`IdentityCache`. The
    writer re-reads them under the write lock and stores the sealed batch only if
    every prediction holds; otherwise (another writer got in between) it
    discards the sealed bytes and writes the batch the ordinary way, and the rest
    of the ingest goes batch by batch. Batches that update stored subjects are
    always written the ordinary way. Results are yielded in order; the first
    failure is raised and the cache is dropped.
    """
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="civicvault-writer")
    pending: Future[tuple[BatchResult, bool]] | None = None
    predicted: tuple[BatchKeys, NextIds] | None
    with begin() as conn:  # the dataset's keys exist before anything is sealed under them
        predicted = (BatchKeys.active(conn, keyring, ds_id), NextIds.read(conn, ds_id))
        dialect = conn.dialect.name
        if dialect == "postgresql" and predicted[1].watermark is not None:
            # a resumed or later ingest asks the database: plan it on fresh statistics
            pg_planning.refresh_stale_statistics(conn)
        # erased identities: few, read once; the writer checks that their count holds
        erased = (suppressed_digests(conn, ds_id, layout.identity)
                  if layout.identity and predicted[1].suppressed else set())
    if predicted[1].watermark is None and cache.ds_id is None:
        cache.ds_id = ds_id  # a dataset without subjects: this ingest will know every one
    stored_ahead = 0  # rows written by the pipelined path (not analysed yet)

    def erased_among(wanted: set[bytes]) -> set[bytes]:
        return wanted & erased

    try:
        for index, frame in batches:
            ahead: tuple[BatchKeys, NextIds, _Decision, _Sealed] | None = None
            if predicted is not None and cache.ds_id == ds_id:
                keys, ids = predicted
                d, needs_db = _decide_cached(frame, layout, keys, cache, erased_among)
                if not d.upd_rows and d.new_rows and not needs_db:
                    ahead = (keys, ids, d,
                             _seal(frame, layout, keys, ds_id, d, ids, {}, dialect))
            if pending is not None:
                result, diverged = pending.result()
                pending = None
                yield result
                if diverged:
                    _forget(cache)
                    ahead = predicted = None
            if ahead is not None:
                keys, ids, d, sealed = ahead
                _remember(cache, ds_id, ids.watermark, keys, d, sealed)
                stored_ahead += len(sealed.stored)
                predicted = (keys, NextIds(ids.batch + 1, ids.subject + len(sealed.new_ids),
                                           ids.record + len(sealed.stored), cache.watermark,
                                           ids.suppressed))
                pending = writer.submit(_store_predicted, begin, keyring, keys, ids, ds_id=ds_id,
                                        dataset=dataset, source_id=source_id, batch_index=index,
                                        frame=frame, layout=layout, d=d, s=sealed, actor=actor)
                continue
            with begin() as conn:
                result = write_batch(conn, keyring, ds_id=ds_id, dataset=dataset,
                                     source_id=source_id, batch_index=index, frame=frame,
                                     layout=layout, actor=actor, cache=cache)
                predicted = (BatchKeys.active(conn, keyring, ds_id), NextIds.read(conn, ds_id))
                if layout.identity and predicted[1].suppressed != len(erased):
                    erased = suppressed_digests(conn, ds_id, layout.identity)
            yield result
        if pending is not None:
            result, _ = pending.result()
            pending = None
            yield result
        if dialect == "postgresql" and stored_ahead >= ANALYZE_AFTER_ROWS:
            # what COPY added is invisible to the planner until analysed (see _store)
            with begin() as conn:
                conn.execute(text("ANALYZE vault_subjects, vault_blind_index, vault_records"))
    except BaseException:
        _forget(cache)  # what it learnt may not have been committed
        raise
    finally:
        writer.shutdown(wait=True)


def _decide_cached(frame: pl.DataFrame, layout: ColumnLayout, keys: BatchKeys,
                   cache: IdentityCache, erased_among: Callable[[set[bytes]], set[bytes]],
                   ) -> tuple[_Decision, bool]:
    """Decide a batch from the cache alone; also whether it named a subject that only
    the database can tell apart (a compacted batch's), so the decision cannot stand."""
    needs_db: set[bytes] = set()

    def cached(wanted: set[bytes]) -> dict[bytes, Any]:
        found: dict[bytes, Any] = dict(cache.lookup(wanted))
        needs_db.update(cache.possibly_known(wanted.difference(found)))
        return found

    return _decide(frame, layout, keys, cached, erased_among), bool(needs_db)


def _store_predicted(
    begin: Callable[[], AbstractContextManager[Connection]], keyring: Keyring, keys: BatchKeys,
    ids: NextIds, *, ds_id: int, dataset: str, source_id: int, batch_index: int,
    frame: pl.DataFrame, layout: ColumnLayout, d: _Decision, s: _Sealed, actor: str,
) -> tuple[BatchResult, bool]:
    """Store a batch sealed ahead if its predictions hold; else write it afresh.

    Returns the result and whether the predictions failed.
    """
    with begin() as conn:
        lock_vault(conn)
        if (_stored_batch(conn, source_id, batch_index) is None and NextIds.read(conn, ds_id) == ids
                and BatchKeys.active(conn, keyring, ds_id).ids == keys.ids):
            return _store(conn, keyring, keys, ds_id=ds_id, dataset=dataset, source_id=source_id,
                          batch_index=batch_index, d=d, s=s, actor=actor, analyze=False), False
        return write_batch(conn, keyring, ds_id=ds_id, dataset=dataset, source_id=source_id,
                           batch_index=batch_index, frame=frame, layout=layout, actor=actor), True


def read_attributes(
    conn: Connection, keyring: Keyring, dataset: str, columns: Sequence[str]
) -> pl.DataFrame:
    """Decrypt the attribute ``columns`` of every live row of ``dataset`` into one frame.

    Erased and superseded rows are never returned. Cost: one AES-GCM call per
    (batch, column), not per value.
    """
    ds_id = dataset_id(conn, dataset)
    batches = conn.execute(select(T_BATCH.c.id, T_BATCH.c.rows, T_BATCH.c.live_mask)
                           .where(T_BATCH.c.dataset_id == ds_id).order_by(T_BATCH.c.id)).all()
    # only the asked-for columns' blobs, streamed in batch order: one batch's ciphertext
    # is held at a time, never the whole dataset's
    blobs = iter(conn.execution_options(stream_results=True, yield_per=256).execute(
        select(T_COLUMN.c.batch_id, T_COLUMN.c.column, T_COLUMN.c.key_id, T_COLUMN.c.sealed)
        .join(T_BATCH, T_BATCH.c.id == T_COLUMN.c.batch_id)
        .where(T_BATCH.c.dataset_id == ds_id, T_COLUMN.c.column.in_(list(columns)))
        .order_by(T_COLUMN.c.batch_id)))
    ahead = next(blobs, None)
    frames = []
    for b in batches:
        cols: dict[str, Any] = {}
        while ahead is not None and int(ahead.batch_id) <= int(b.id):
            if int(ahead.batch_id) == int(b.id):
                cols[ahead.column] = ahead
            ahead = next(blobs, None)
        missing = [c for c in columns if c not in cols]
        if missing:
            raise BadInput(f"dataset '{dataset}' has no attribute column '{missing[0]}'")
        series = [crypto.open_column(keyring.by_id(conn, int(cols[c].key_id)), int(cols[c].key_id),
                                     ds_id, int(b.id), c, bytes(cols[c].sealed))
                  for c in columns]
        frame = pl.DataFrame(series)
        live = unpack_mask(bytes(b.live_mask), int(b.rows))
        frames.append(frame.filter(pl.Series(live)) if not live.all() else frame)
    if not frames:
        return pl.DataFrame({c: pl.Series([], dtype=pl.Utf8) for c in columns})
    return pl.concat(frames, how="vertical_relaxed")
