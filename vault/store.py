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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl
from sqlalchemy import Connection, Table, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ledger import store as ledger_store
from ledger.entry import EntryDraft
from vault import blind_index, crypto
from vault.blind_index import Normalizer
from vault.errors import BadInput
from vault.keyring import Keyring, now
from vault.schema import Batch, BatchColumn, BlindIndex, Dataset, Record, Source, Subject

T_DATASET: Table = Dataset.__table__  # type: ignore[attr-defined]
T_SOURCE: Table = Source.__table__  # type: ignore[attr-defined]
T_BATCH: Table = Batch.__table__  # type: ignore[attr-defined]
T_COLUMN: Table = BatchColumn.__table__  # type: ignore[attr-defined]
T_SUBJECT: Table = Subject.__table__  # type: ignore[attr-defined]
T_RECORD: Table = Record.__table__  # type: ignore[attr-defined]
T_BLIND: Table = BlindIndex.__table__  # type: ignore[attr-defined]

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


def lock_dataset(conn: Connection, ds_id: int) -> None:
    """Serialise writers of one dataset (SQLite: the BEGIN IMMEDIATE write lock already does)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": 0x5641554C54000000 + ds_id})


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
    """Live subjects by identity digest."""
    found: dict[bytes, Any] = {}
    todo = list(digests)
    for i in range(0, len(todo), _LOOKUP_CHUNK):
        chunk = todo[i : i + _LOOKUP_CHUNK]
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


@dataclass(frozen=True)
class KnownSubject:
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
    """

    def __init__(self) -> None:
        self.ds_id: int | None = None
        self.watermark: int | None = None
        self.known: dict[bytes, KnownSubject] = {}

    def valid_for(self, ds_id: int, max_subject_id: int | None) -> bool:
        return self.ds_id == ds_id and self.watermark == max_subject_id


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
    lock_dataset(conn, ds_id)
    done = conn.execute(select(T_BATCH.c.id).where(
        T_BATCH.c.source_id == source_id, T_BATCH.c.batch_index == batch_index)).scalar()
    if done is not None:
        return BatchResult(int(done), frame.height, 0, 0, frame.height, None, None, True)

    n = frame.height
    direct_cols, attr_cols = layout.direct, layout.attributes
    fp_key = keyring.active(conn, ds_id, "fingerprint")
    blind_key = keyring.active(conn, ds_id, "blind")
    row_fps = crypto.fingerprints(fp_key.key, crypto.pack_rows(frame))

    # Lookup digests of every lookup column, computed once, vectorised.
    lookup_digests: dict[str, list[bytes | None]] = {
        c.name: blind_index.digests(blind_key.key, c.name, frame.get_column(c.name), c.lookup)
        for c in layout.lookups if c.lookup is not None
    }
    identity = lookup_digests.get(layout.identity) if layout.identity else None

    # Same subject twice in this batch: the last row wins.
    keep = list(range(n))
    if identity is not None:
        last = {d: i for i, d in enumerate(identity) if d is not None}
        keep = [i for i, d in enumerate(identity) if d is None or last[d] == i]
    skipped = n - len(keep)

    existing: dict[bytes, Any] = {}
    max_subject: int | None = None
    if identity is not None and layout.identity is not None:
        max_subject = conn.execute(select(func.max(T_SUBJECT.c.id)).where(
            T_SUBJECT.c.dataset_id == ds_id)).scalar()
        wanted = {d for i in keep if (d := identity[i]) is not None}
        if cache is not None and cache.valid_for(ds_id, max_subject):
            existing = {d: cache.known[d] for d in wanted if d in cache.known}
        elif max_subject is not None:
            existing = _existing_subjects(conn, ds_id, layout.identity, wanted)
            if cache is not None:
                cache.known.clear()
                cache.ds_id = cache.watermark = None  # rebuilt only from our own writes

    new_rows: list[int] = []
    upd_rows: list[tuple[int, Any]] = []
    for i in keep:
        digest = identity[i] if identity is not None else None
        match = existing.get(digest) if digest is not None else None
        if match is None:
            new_rows.append(i)
        elif match.fingerprint is not None and bytes(match.fingerprint) == row_fps[i]:
            skipped += 1
        else:
            upd_rows.append((i, match))

    stored = sorted(new_rows + [i for i, _ in upd_rows])
    if not stored:
        return BatchResult(None, n, 0, 0, skipped, None, None)
    pos = {src: p for p, src in enumerate(stored)}  # source row -> stored row position
    part = frame[stored]

    batch_id = int(conn.execute(T_BATCH.insert().values(
        dataset_id=ds_id, source_id=source_id, batch_index=batch_index, rows=len(stored),
        data_hash="", live_mask=b"", created=now()).returning(T_BATCH.c.id)).scalar_one())

    # Subjects: new ones get fresh keys; updated ones keep theirs.
    wrap_key = keyring.active(conn, ds_id, "subject_wrap")
    first_subject = _next_id(conn, T_SUBJECT)
    new_ids = list(range(first_subject, first_subject + len(new_rows)))
    new_keys = crypto.new_subject_keys(len(new_rows))
    subject_of: dict[int, int] = dict(zip(new_rows, new_ids, strict=True))
    key_of: dict[int, bytes] = dict(zip(new_rows, new_keys, strict=True))
    by_wrap: dict[int, list[tuple[int, Any]]] = {}
    for i, m in upd_rows:
        by_wrap.setdefault(int(m.key_id), []).append((i, m))
    for wid, items in by_wrap.items():
        keys = crypto.unwrap_subject_keys(keyring.by_id(conn, wid), wid, ds_id,
                                          [int(m.id) for _, m in items],
                                          [bytes(m.wrapped_key) for _, m in items])
        for (i, m), k in zip(items, keys, strict=True):
            subject_of[i], key_of[i] = int(m.id), k

    first_record = _next_id(conn, T_RECORD)
    record_ids = list(range(first_record, first_record + len(stored)))
    fields = ",".join(direct_cols)
    record_blobs: list[bytes] = []
    if direct_cols:
        payloads = crypto.pack_rows(part.select(direct_cols))
        record_blobs = crypto.seal_records(
            [key_of[i] for i in stored], ds_id, record_ids,
            [subject_of[i] for i in stored], fields, payloads)

    attr_key = keyring.active(conn, ds_id, "attr")
    column_blobs = crypto.seal_batch(attr_key.key, attr_key.id, ds_id, batch_id,
                                     part.select(attr_cols)) if attr_cols else {}
    data_hash = crypto.batch_digest(column_blobs, record_blobs)

    bulk_insert(conn, T_COLUMN, ("batch_id", "column", "key_id", "sealed"),
                [(batch_id, c, attr_key.id, b) for c, b in column_blobs.items()])
    keyring.count_sealed(conn, attr_key.id, len(column_blobs))
    if record_blobs:
        bulk_insert(conn, T_RECORD, ("id", "subject_id", "batch_id", "row", "fields", "sealed"),
                    [(rid, subject_of[i], batch_id, p, fields, blob) for p, (i, rid, blob)
                     in enumerate(zip(stored, record_ids, record_blobs, strict=True))])
    if new_rows:
        wrapped = crypto.wrap_subject_keys(wrap_key.key, wrap_key.id, ds_id, new_ids, new_keys)
        keyring.count_sealed(conn, wrap_key.id, len(new_rows))
        bulk_insert(conn, T_SUBJECT, ("id", "dataset_id", "key_id", "wrapped_key", "fingerprint",
                                      "current_batch_id", "current_row"),
                    [(sid, ds_id, wrap_key.id, w, row_fps[i], batch_id, pos[i])
                     for i, sid, w in zip(new_rows, new_ids, wrapped, strict=True)])
    if upd_rows:
        old_positions: dict[int, list[int]] = {}
        for _, m in upd_rows:
            old_positions.setdefault(int(m.current_batch_id), []).append(int(m.current_row))
        clear_live_rows(conn, old_positions)
        conn.execute(
            update(T_SUBJECT).where(T_SUBJECT.c.id == bindparam("sid")).values(
                fingerprint=bindparam("fp"), current_batch_id=bindparam("cb"),
                current_row=bindparam("cr")),
            [{"sid": subject_of[i], "fp": row_fps[i], "cb": batch_id, "cr": pos[i]}
             for i, _ in upd_rows])
    # New subjects' digests cannot clash with stored ones: bulk path, in key order
    # (B-tree friendly). Updated subjects may re-deliver digests: insert-or-ignore.
    upd_set = {i for i, _ in upd_rows}
    bid = blind_key.id
    blind_new: list[tuple[Any, ...]] = []
    blind_upd: list[dict[str, Any]] = []
    for col, digs in sorted(lookup_digests.items()):
        per_col = sorted((d, subject_of[i]) for i in new_rows if (d := digs[i]) is not None)
        blind_new.extend((ds_id, col, d, s, bid) for d, s in per_col)
        blind_upd.extend({"dataset_id": ds_id, "column": col, "digest": d,
                          "subject_id": subject_of[i], "key_id": bid}
                         for i in upd_set if (d := digs[i]) is not None)
    bulk_insert(conn, T_BLIND, ("dataset_id", "column", "digest", "subject_id", "key_id"),
                blind_new)
    _insert_ignore(conn, T_BLIND, blind_upd)
    if conn.dialect.name == "postgresql" and len(stored) >= ANALYZE_AFTER_ROWS:
        # COPY leaves the planner blind to the new rows: without fresh statistics the next
        # batch's dedup lookup is planned as if the tables were empty (seconds per chunk).
        conn.execute(text("ANALYZE vault_subjects, vault_blind_index, vault_records"))

    conn.execute(update(T_BATCH).where(T_BATCH.c.id == batch_id).values(
        data_hash=data_hash, live_mask=pack_mask(np.ones(len(stored), dtype=bool))))
    if cache is not None and identity is not None:
        if cache.ds_id is None and max_subject is None:
            cache.ds_id = ds_id  # a fresh dataset: this process knows every subject
        if cache.ds_id == ds_id:
            wrapped_of = dict(zip(new_rows, wrapped, strict=True)) if new_rows else {}
            for i in stored:
                d = identity[i]
                if d is None:
                    continue
                old = cache.known.get(d)
                cache.known[d] = KnownSubject(
                    subject_of[i], row_fps[i],
                    wrapped_of.get(i, old.wrapped_key if old else b""),
                    wrap_key.id if i in wrapped_of else (old.key_id if old else 0),
                    batch_id, pos[i])
            cache.watermark = new_ids[-1] if new_ids else max_subject
    [entry] = ledger_store.append(conn, [EntryDraft(
        actor=actor, action="vault.ingest.batch", resource=f"dataset/{dataset}/batch/{batch_id}",
        data_hash=data_hash,
        details={"dataset": dataset, "batch": batch_id, "source": source_id,
                 "batch_index": batch_index, "rows_in": n, "added": len(new_rows),
                 "updated": len(upd_rows), "skipped": skipped},
    )])
    return BatchResult(batch_id, n, len(new_rows), len(upd_rows), skipped, data_hash, entry.seq)


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
    blobs = conn.execute(select(T_COLUMN.c.batch_id, T_COLUMN.c.column, T_COLUMN.c.key_id,
                                T_COLUMN.c.sealed)
                         .join(T_BATCH, T_BATCH.c.id == T_COLUMN.c.batch_id)
                         .where(T_BATCH.c.dataset_id == ds_id,
                                T_COLUMN.c.column.in_(list(columns)))).all()
    by_batch: dict[int, dict[str, Any]] = {}
    for b in blobs:
        by_batch.setdefault(int(b.batch_id), {})[b.column] = b
    frames = []
    for b in batches:
        cols = by_batch.get(int(b.id), {})
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
