"""The write path of ingest: decide, seal and store a whole batch column-wise, in one
transaction with its ledger entry; pipelined over a source by :func:`write_batches`.

Layout (see ``vault.schema``): attribute columns of a batch become one sealed
Arrow blob each; the direct identifiers of each stored row become one record
sealed under the subject's own key; lookup columns become blind-index digests.
A batch either lands whole, with its ``vault.ingest.batch`` ledger entry whose
``data_hash`` vouches for every stored ciphertext byte, or not at all.

Writes use SQLAlchemy Core ``executemany`` on SQLite and ``COPY`` on PostgreSQL.

The other concerns of storage live beside it (and are re-exported here, so
``vault.store.X`` keeps working):

=========================  ======================================================
``vault.tables``           table handles ``T_*``, dataset ids, the vault write lock,
                           bulk insert
``vault.layout``           ``StoredColumn``, ``ColumnLayout`` (a dataset's column plan),
                           ``BatchResult``
``vault.identity_cache``   live subjects by identity digest: database lookup and
                           the ``IdentityCache`` of an ingest
``vault.live_mask``        which rows of a batch are current (``pack_mask`` ...)
``vault.attributes``       ``read_attributes``: the read path of DP releases
=========================  ======================================================
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
import orjson
import polars as pl
from sqlalchemy import Connection, bindparam, func, select, text, update

from ledger import store as ledger_store
from ledger.entry import MAX_STATE_ENTRY_BYTES, EntryDraft
from vault import (
    arenas,
    blind_index,
    bucket_rows,
    bulk,
    crypto,
    manifest,
    pg_planning,
    seal_worker,
    vocab,
)
from vault.attributes import iter_attributes, read_attributes
from vault.bulk import BulkInsert, Columns
from vault.identity import PERSON_COLUMN, pseudonyms
from vault.identity_cache import _LOOKUP_CHUNK, IdentityCache, KnownSubject, _existing_subjects
from vault.keyring import ActiveKey, Keyring, now
from vault.layout import BatchResult, ColumnLayout, StoredColumn
from vault.live_mask import clear_live_rows, pack_mask, pack_subjects, unpack_mask
from vault.tables import (
    T_BATCH,
    T_BLIND,
    T_COLUMN,
    T_DATASET,
    T_RECORD,
    T_SOURCE,
    T_SUBJECT,
    T_SUPPRESSED,
    VAULT_WRITE_LOCK,
    _insert_ignore,
    _next_id,
    _stored_batch,
    attribute_columns,
    bulk_insert,
    dataset_id,
    lock_vault,
)

# The write path is this module's; the rest is re-exported from the modules it was
# split into, so ``vault.store.X`` keeps working.
__all__ = [
    "ANALYZE_AFTER_ROWS",
    "T_BATCH",
    "T_BLIND",
    "T_COLUMN",
    "T_DATASET",
    "T_RECORD",
    "T_SOURCE",
    "T_SUBJECT",
    "T_SUPPRESSED",
    "VAULT_WRITE_LOCK",
    "BatchKeys",
    "BatchResult",
    "ColumnLayout",
    "IdentityCache",
    "KnownSubject",
    "NextIds",
    "StoredColumn",
    "attribute_columns",
    "bulk_insert",
    "clear_live_rows",
    "dataset_id",
    "iter_attributes",
    "lock_vault",
    "pack_mask",
    "read_attributes",
    "suppressed_digests",
    "unpack_mask",
    "write_batch",
    "write_batches",
]

ANALYZE_AFTER_ROWS = 10_000


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


T = TypeVar("T")
Digests = list[bytes | None]


def _ready(value: T | Future[T]) -> T:
    """A value computed here, or the result of one computed on a helper thread."""
    return value.result() if isinstance(value, Future) else value


@dataclass
class _Decision:
    """Which rows of a batch are stored, and whether as new or updated subjects.

    The row fingerprints and the digests of the lookup columns other than the identity
    may still be under way on helper threads (``_decide``): ``row_fps`` and
    ``lookup_digests`` wait for them the first time they are read.
    """

    n: int
    _row_fps: list[bytes] | Future[list[bytes]]
    _lookup_digests: dict[str, Digests | Future[Digests]]
    identity: list[bytes | None] | None
    new_rows: list[int]
    upd_rows: list[tuple[int, Any]]
    skipped: int
    suppressed: int = 0

    @property
    def row_fps(self) -> list[bytes]:
        self._row_fps = _ready(self._row_fps)
        return self._row_fps

    @property
    def lookup_digests(self) -> dict[str, Digests]:
        ready = {c: _ready(v) for c, v in self._lookup_digests.items()}
        self._lookup_digests = dict(ready)
        return ready

    @property
    def stored(self) -> list[int]:
        if not self.upd_rows:  # new_rows is ascending
            return list(self.new_rows)
        return sorted(self.new_rows + [i for i, _ in self.upd_rows])

    @property
    def all_new(self) -> bool:
        """Every row of the batch is stored, as a new subject, in row order."""
        return len(self.new_rows) == self.n


def _pick(values: list[Any], rows: list[int], every: bool) -> list[Any]:
    """``values`` of ``rows`` (ascending); ``every``: the rows are all of them."""
    return values if every else [values[i] for i in rows]


@dataclass
class _Sealed:
    """A batch's ciphertexts and ids, laid out as table rows (no plaintext inside).

    Everything per row is prepared here, so storing it is database work only.
    """

    batch_id: int
    stored: list[int]
    pos: dict[int, int]  # source row -> stored row position
    subject_of: dict[int, int]
    new_ids: Sequence[int]  # consecutive ids (a range once it crossed a process boundary)
    wrapped: list[bytes]
    column_blobs: dict[str, bytes]
    row_subjects: bytes  # each stored row's subject id (vault.live_mask.pack_subjects)
    data_hash: str
    inserts: list[BulkInsert]  # records, new subjects, their digests: one statement each
    subject_updates: list[dict[str, Any]]
    blind_upserts: list[dict[str, Any]]
    # the new subjects' rows per bucket (vault.bucket_rows): laid out on a thread of their
    # own as soon as the batch is sealed (``_lay_out_ahead``), by the ingest thread when a
    # child process sealed it (``_lay_out_now``), else by the writer
    bucket_parts: Callable[[], dict[int, manifest.BucketParts]]
    # the field names of the batch's records, kept once in vault_batches.record_fields
    # (migration 0015); None without direct columns (no records)
    record_fields: str | None = None


def _last_rows(identity: list[bytes | None]) -> tuple[list[int], set[bytes]]:
    """The rows of a batch that stay, ascending, and the subjects it names. Same subject
    twice in a batch: its last row wins; a row without an identity stays."""
    wanted = set(identity)
    if len(wanted) == len(identity) and None not in wanted:  # a subject per row (the
        return list(range(len(identity))), cast(set[bytes], wanted)  # usual first load)
    wanted.discard(None)
    last = {d: i for i, d in enumerate(identity) if d is not None}
    return ([i for i, d in enumerate(identity) if d is None or last[d] == i],
            cast(set[bytes], wanted))


_PACK_SLICE = 8192
"""How many of a batch's lines ``crypto.pack_rows`` packs at once for the keyed hashes
below. Each packs as a JSON object with its column names: ~1.5 KB a line of a 70-column
voter file, so a whole 100k-line batch held ~300 MB of JSON and ``bytes`` at once, beside
the sealing thread's own (issue 17: the 20M-line ingest's peak RSS +450 MiB)."""


def _row_fingerprints(key: bytes, frame: pl.DataFrame) -> list[bytes]:
    out: list[bytes] = []
    for start in range(0, frame.height, _PACK_SLICE):
        packed = crypto.pack_rows(frame.slice(start, _PACK_SLICE))
        out += crypto.fingerprints(key, packed)
    return out


def _decide(
    frame: pl.DataFrame, layout: ColumnLayout, keys: BatchKeys,
    existing_for: Callable[[set[bytes]], dict[bytes, Any]],
    suppressed_for: Callable[[set[bytes]], set[bytes]],
    helpers: Executor | None = None,
) -> _Decision:
    """Fingerprint and blind-index the batch; split its rows into new / update / skip,
    and leave out the rows of erased subjects (their identity digest is suppressed).

    With ``helpers``, the row fingerprints and the other lookup columns' digests are
    computed on them (Polars and OpenSSL, mostly without the GIL) while this thread
    decides on the identity digests and seals: only an update compares fingerprints, and
    only sealing reads the other digests. Issue 17: they were ~0.1 s of each 100k-row
    batch on this thread, which set a first load's pace (1M rows on SQLite: 9.31 ->
    8.71 s).
    """
    n = frame.height

    def soon(fn: Callable[..., T], *args: Any) -> T | Future[T]:
        return fn(*args) if helpers is None else helpers.submit(fn, *args)

    row_fps = soon(_row_fingerprints, keys.fingerprint.key, frame)
    lookup_digests: dict[str, Digests | Future[Digests]] = {}
    for c in layout.lookups:  # each lookup column's, once, vectorised; the identity's here
        if c.lookup is not None:
            args = (keys.blind.key, c.name, frame.get_column(c.name), c.lookup)
            lookup_digests[c.name] = (blind_index.digests(*args) if c.name == layout.identity
                                      else soon(blind_index.digests, *args))
    found = lookup_digests.get(layout.identity) if layout.identity else None
    identity = None if found is None else _ready(found)
    if identity is None:
        return _Decision(n, row_fps, lookup_digests, None, list(range(n)), [], 0)
    keep, wanted = _last_rows(identity)
    skipped = n - len(keep)
    erased = suppressed_for(wanted)
    suppressed = 0
    if erased:
        before = len(keep)
        keep = [i for i in keep if identity[i] not in erased]
        suppressed = before - len(keep)
    existing = existing_for(wanted - erased)
    if not existing:
        return _Decision(n, row_fps, lookup_digests, identity, keep, [], skipped, suppressed)
    new_rows: list[int] = []
    upd_rows: list[tuple[int, Any]] = []
    fps = _ready(row_fps)
    for i in keep:
        digest = identity[i]
        match = existing.get(digest) if digest is not None else None
        if match is None:
            new_rows.append(i)
        elif match.fingerprint is not None and bytes(match.fingerprint) == fps[i]:
            skipped += 1
        else:
            upd_rows.append((i, match))
    return _Decision(n, fps, lookup_digests, identity, new_rows, upd_rows, skipped, suppressed)


def _seal(
    frame: pl.DataFrame, layout: ColumnLayout, keys: BatchKeys, ds_id: int, d: _Decision,
    ids: NextIds, old_keys: dict[int, tuple[int, bytes]], dialect: str,
    key_deferred: bool = False,
) -> _Sealed:
    """All the cryptography of one batch, and its rows; pure CPU, no database.

    ``old_keys``: source row -> (subject id, unwrapped subject key) of updated rows.
    ``key_deferred``: this load has dropped the blind index's key (``_blind_rows``).
    """
    stored = d.stored
    n_stored = len(stored)
    batch_id = ids.batch
    every = d.all_new  # stored = new rows = all rows, in order
    pos = dict(zip(stored, range(n_stored), strict=True))
    part = frame if n_stored == frame.height else frame[stored]
    new_ids = list(range(ids.subject, ids.subject + len(d.new_rows)))
    new_keys = crypto.new_subject_keys(len(d.new_rows))
    subject_of = dict(zip(d.new_rows, new_ids, strict=True))
    record_ids = np.arange(ids.record, ids.record + n_stored, dtype=np.int64)
    if old_keys:
        key_of = dict(zip(d.new_rows, new_keys, strict=True))
        for i, (sid, k) in old_keys.items():
            subject_of[i], key_of[i] = sid, k
        stored_keys = [key_of[i] for i in stored]
        stored_subjects = np.fromiter((subject_of[i] for i in stored), dtype=np.int64,
                                      count=n_stored)
    else:  # only new subjects: stored in row order, ids and keys in that order too
        stored_keys = new_keys
        stored_subjects = np.arange(ids.subject, ids.subject + n_stored, dtype=np.int64)
    direct_cols, attr_cols = layout.direct, layout.attributes
    fields = ",".join(direct_cols)
    record_blobs: list[bytes] = []
    inserts: list[BulkInsert] = []
    if direct_cols:
        record_blobs = crypto.seal_records(
            stored_keys, ds_id, record_ids, stored_subjects,
            fields, crypto.pack_values(part.select(direct_cols)))
        inserts.append(bulk.prepare(dialect, T_RECORD, Columns(
            n_stored,
            ints={"id": record_ids, "subject_id": stored_subjects,
                  "row": np.arange(n_stored, dtype=np.int64)},
            blobs={"sealed": record_blobs},
            # the names once, in the batch's row (record_fields), not on every record
            consts={"batch_id": batch_id, "fields": ""})))
    wrapped: list[bytes] = []
    if new_ids:
        wrapped = crypto.wrap_subject_keys(keys.subject_wrap.key, keys.subject_wrap.id, ds_id,
                                           new_ids, new_keys)
        inserts.append(bulk.prepare(dialect, T_SUBJECT, Columns(
            len(new_ids),
            ints={"id": np.asarray(new_ids, dtype=np.int64),
                  "current_row": np.arange(n_stored, dtype=np.int64) if every else
                  np.fromiter((pos[i] for i in d.new_rows), dtype=np.int64,
                              count=len(new_ids))},
            blobs={"wrapped_key": wrapped,
                   "fingerprint": _pick(d.row_fps, d.new_rows, every)},
            consts={"dataset_id": ds_id, "key_id": keys.subject_wrap.id,
                    "current_batch_id": batch_id})))
    # New subjects' digests cannot clash with stored ones: the bulk path, in the order of
    # the blind index's primary key (B-tree appends, see _blind_rows). Updated subjects
    # may re-deliver digests: insert-or-ignore.
    blind_upserts: list[dict[str, Any]] = []
    new_digests = {col: _pick(digs, d.new_rows, every)
                   for col, digs in d.lookup_digests.items()}
    if new_ids:
        inserts += _blind_rows(dialect, ds_id, keys.blind.id, new_ids, new_digests,
                               key_deferred)
    for col, digs in sorted(d.lookup_digests.items()):
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
    parts = functools.partial(
        bucket_rows.new_subject_parts, ids.subject, ds_id, keys.subject_wrap.id, wrapped,
        keys.blind.id, sorted(new_digests.items()), manifest.writer_version_for(dialect))
    return _Sealed(batch_id, stored, pos, subject_of, new_ids, wrapped, column_blobs,
                   pack_subjects(stored_subjects),
                   crypto.batch_digest(column_blobs, record_blobs), inserts, subject_updates,
                   blind_upserts, parts, record_fields=fields if direct_cols else None)


def _blind_rows(dialect: str, ds_id: int, key_id: int, subjects: list[int],
                digests: dict[str, list[bytes | None]], key_deferred: bool = False,
                ) -> list[BulkInsert]:
    """New subjects' blind-index rows (``subjects``: their ids, ascending; ``digests``: per
    column, one per subject, None for an empty value) as bulk statements in the order of
    the table's primary key.

    - SQLite: the key leads with the subject (migration 0013) and new subjects have the
      highest ids, so one statement in (subject, column) order appends to the B-tree's
      right edge (issue 17: a 1M-row load's 3M rows, 6.8 -> 3.2 s of inserts).
    - PostgreSQL: one COPY per column. In digest order while the key (which leads with
      the digest, migration 0012) is in place: its inserts then sweep the B-tree once
      (a second 1M-row load into a vault of 1M: 36.7-37.6 s in subject order, 28.8-28.9 s
      in digest order). In subject order when this load has dropped the key
      (``key_deferred``): its end sorts anyway, and the heap then holds a subject range in
      one run per column, which the subject index and state verification read.
    """
    names = tuple(sorted(digests))  # code order = the key's "column" order (bytes of UTF-8)
    if not names:  # a layout without lookup columns
        return []
    if dialect == "sqlite":  # row-major is (subject, column) order: no sort, no frame
        k = len(names)
        if any(len(digests[c]) != len(subjects) for c in names):
            raise ValueError("a lookup column's digests differ in number from the subjects")
        flat: list[bytes | None] = [None] * (k * len(subjects))
        for j, c in enumerate(names):  # column j's digests at j, j + k, j + 2k, ...
            flat[j::k] = digests[c]
        subject_ids = np.repeat(np.asarray(subjects, dtype=np.int64), k)
        codes = np.tile(np.arange(k, dtype=np.int64), len(subjects))
        if None in flat:  # empty values have no digest
            keep = np.fromiter((d is not None for d in flat), dtype=bool, count=len(flat))
            present = [d for d in flat if d is not None]
            subject_ids, codes = subject_ids[keep], codes[keep]
        else:
            present = cast(list[bytes], flat)
        return [bulk.prepare(dialect, T_BLIND, Columns(
            len(present), ints={"subject_id": subject_ids}, blobs={"digest": present},
            consts={"dataset_id": ds_id, "key_id": key_id},
            labels={"column": (codes, names)}))]
    frame = pl.concat([pl.DataFrame({
        "subject_id": pl.Series(subjects, dtype=pl.Int64),
        "column": pl.Series([k] * len(subjects), dtype=pl.Int64),
        "digest": pl.Series(digests[c], dtype=pl.Binary),
    }) for k, c in enumerate(names)]).drop_nulls("digest")
    out = []
    for k, c in enumerate(names):
        part = frame.filter(pl.col("column") == k)
        if not key_deferred:
            part = part.sort("digest")
        out.append(bulk.prepare(dialect, T_BLIND, Columns(
            part.height, ints={"subject_id": part.get_column("subject_id").to_numpy()},
            blobs={"digest": part.get_column("digest").to_list()},
            consts={"dataset_id": ds_id, "column": c, "key_id": key_id})))
    return out


def _portable(d: _Decision, s: _Sealed) -> tuple[_Decision, _Sealed]:
    """A batch sealed ahead as the writer needs it (``_store``): without the per-row maps
    and digests only the sealing side reads, so it crosses a process boundary cheaply."""
    new_ids = range(s.new_ids[0], s.new_ids[-1] + 1) if s.new_ids else range(0)
    # the bucket layout's inputs as Binary columns: pickled as Arrow buffers, not as
    # one Python object per wrapped key and digest
    p = s.bucket_parts
    assert isinstance(p, functools.partial)
    first, ds, wrap_id, wrapped, blind_id, lookups, version = p.args
    parts = functools.partial(p.func, first, ds, wrap_id, pl.Series(wrapped, dtype=pl.Binary),
                              blind_id, [(c, pl.Series(v, dtype=pl.Binary)) for c, v in lookups],
                              version)
    return (dataclasses.replace(d, _row_fps=[], _lookup_digests={}, identity=None),
            dataclasses.replace(s, pos={}, subject_of={}, new_ids=new_ids, wrapped=[],
                                bucket_parts=parts))


def _lay_out_now(s: _Sealed) -> None:
    """Lay out a sealed batch's bucket rows in this thread rather than the writer's."""
    parts = s.bucket_parts()
    s.bucket_parts = functools.partial(dict, parts)


def _lay_out_ahead(pool: ThreadPoolExecutor, s: _Sealed) -> None:
    """Lay out a sealed batch's bucket rows on ``pool``, while this thread decides and
    seals the next batch and the writer inserts this one's rows (it waits for them only
    when it hashes the buckets). Issue 17: on the ingest thread they made it, not the
    writer, set the pace (1M rows on SQLite: ~1.07 s of deciding, sealing and laying out a
    batch against ~0.8 s of writing it); Polars and NumPy, mostly without the GIL."""
    s.bucket_parts = pool.submit(s.bucket_parts).result


def _next_ids(ids: NextIds, s: _Sealed) -> NextIds:
    """The ids the next batch will take once batch ``s``, sealed on ``ids``, is stored."""
    watermark = s.new_ids[-1] if s.new_ids else ids.watermark
    return NextIds(ids.batch + 1, ids.subject + len(s.new_ids), ids.record + len(s.stored),
                   watermark, ids.suppressed)


@dataclass
class _Tail:
    """The bucket an ingest's last batch left partly filled, as it committed it: the next
    batch, whose first subjects continue it, takes its older rows from here instead of
    reading them back, if no other ledger entry (so no other change) came in between."""

    bucket: int = -1
    end: int = -1  # the subject id after its last
    seq: int = -1  # the ledger entry that committed it
    parts: manifest.BucketParts | None = None


def _store(
    conn: Connection, keyring: Keyring, keys: BatchKeys, *, ds_id: int, dataset: str,
    source_id: int, batch_index: int, d: _Decision, s: _Sealed, actor: str,
    analyze: bool = True, tail: _Tail | None = None,
) -> BatchResult:
    """Write a sealed batch and its ledger entry in ``conn``'s transaction.

    ``analyze``: refresh PostgreSQL's statistics after a large batch (a pipelined
    ingest asks its cache, not the database, and analyses once at the end).
    ``tail``: the ingest's last partly filled bucket (read, then updated).
    """
    batch_id = s.batch_id
    conn.execute(T_BATCH.insert().values(
        id=batch_id, dataset_id=ds_id, source_id=source_id, batch_index=batch_index,
        rows=len(s.stored), data_hash=s.data_hash,
        live_mask=pack_mask(np.ones(len(s.stored), dtype=bool)),
        row_subjects=s.row_subjects, record_fields=s.record_fields, created=now()))
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
    if s.blind_upserts:  # insert-or-ignore needs the key a first load may have dropped
        _build_blind_key(conn)
    _insert_ignore(conn, T_BLIND, s.blind_upserts)
    if analyze and conn.dialect.name == "postgresql" and len(s.stored) >= ANALYZE_AFTER_ROWS:
        # COPY leaves the planner blind to the new rows: without fresh statistics the next
        # batch's dedup lookup is planned as if the tables were empty (seconds per chunk).
        conn.execute(text("ANALYZE vault_subjects, vault_blind_index, vault_records"))
    # manifest: the state this batch leaves behind, for the verifier
    buckets = _bucket_digests(conn, s, tail)
    live = [[batch_id, manifest.all_live_digest(len(s.stored))],
            *manifest.live_masks(conn, old_positions)]
    [entry] = ledger_store.append(conn, [EntryDraft(
        actor=actor, action=vocab.VAULT_INGEST_BATCH, resource=vocab.batch(dataset, batch_id),
        data_hash=s.data_hash, max_bytes=MAX_STATE_ENTRY_BYTES,
        details={"dataset": dataset, "batch": batch_id, "source": source_id,
                 "batch_index": batch_index, "rows_in": d.n, "added": len(d.new_rows),
                 "updated": len(d.upd_rows), "skipped": d.skipped, "suppressed": d.suppressed,
                 "subject_buckets": buckets,
                 "live_masks": sorted(live),
                 "row_subjects": manifest.row_subjects_digest(len(s.stored), s.row_subjects),
                 "record_fields": None if s.record_fields is None else
                 manifest.record_fields_digest(batch_id, s.record_fields)},
    )])
    if tail is not None:
        tail.seq = entry.seq
    return BatchResult(batch_id, d.n, len(d.new_rows), len(d.upd_rows), d.skipped, s.data_hash,
                       entry.seq, suppressed=d.suppressed)


def _bucket_digests(conn: Connection, s: _Sealed, tail: _Tail | None) -> list[list[Any]]:
    """The ``subject_buckets`` of the buckets a batch changed: those its new subjects fill
    from the sealed rows (plus the older rows of a bucket shared with earlier subjects:
    the ``tail`` the ingest's last batch left, or read back), those where it added
    blind-index rows to stored subjects from the database."""
    version = manifest.writer_version(conn)
    from_db = set(manifest.buckets_of(u["subject_id"] for u in s.blind_upserts))
    items = manifest.subject_buckets(conn, from_db, version)
    last: tuple[int, manifest.BucketParts] | None = None
    for b, parts in sorted(s.bucket_parts().items()):
        if b in from_db:
            continue
        lo, first = b * manifest.BUCKET, s.new_ids[0]
        if lo < first:  # the bucket's older subjects
            if (tail is not None and tail.parts is not None
                    and (tail.bucket, tail.end) == (b, first) and _nothing_since(conn, tail.seq)):
                parts = tail.parts.then(parts)
            else:
                parts = manifest.range_parts(conn, lo, first, version).then(parts)
        items.append(manifest.bucket_item(b, parts, version))
        last = b, parts
    if tail is not None:
        tail.parts = None
        if last is not None and last[0] == s.new_ids[-1] // manifest.BUCKET:
            tail.bucket, tail.end, tail.parts = last[0], s.new_ids[-1] + 1, last[1]
    return sorted(items, key=lambda item: int(item[0]))


def _nothing_since(conn: Connection, seq: int) -> bool:
    """Whether the ledger entries after ``seq`` are only access decisions (this transaction's
    own, typically): every change of a subject or blind-index row has an entry of its own."""
    size = ledger_store.size(conn)
    if not seq + 1 <= size <= seq + 4:
        return False
    return all(orjson.loads(raw).get("action") == vocab.POLICY_ALLOWED
               for raw in ledger_store.iter_entries(conn, seq + 1, size))


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
    new, every = d.new_rows, d.all_new
    n = len(s.new_ids)  # the key ids and rows as arrays: Polars takes them as they are
    cache.add(_pick(ident, new, every), list(s.new_ids), _pick(fps, new, every), s.wrapped,
              np.full(n, keys.subject_wrap.id, dtype=np.int64), s.batch_id,
              np.arange(n, dtype=np.int64) if every else [pos[i] for i in new])
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
    so the two overlap. A batch's row fingerprints and the digests of its lookup columns
    other than the identity run on two helper threads meanwhile (``_decide``).

    Batch k+1 is planned before batch k has committed, so its ids, keys and
    duplicate decisions are *predictions*: the ids and dataset high-water mark
    batch k will leave behind, and this ingest's own :class:`IdentityCache`. The
    writer re-reads them under the write lock and stores the sealed batch only if
    every prediction holds; otherwise (another writer got in between) it
    discards the sealed bytes and writes the batch the ordinary way, and the rest
    of the ingest goes batch by batch. Batch k+1 goes to the writer as soon as batch k
    is stored, before k's result is yielded and before the cache learns k+1's subjects:
    the writer waits for neither. Batches that update stored subjects are
    always written the ordinary way. Results are yielded in order; the first
    failure is raised and the cache is dropped.

    With ``CIVICVAULT_SEAL_PROCESS=on`` the deciding and sealing move to a child
    process from the fourth batch on (``vault.seal_worker``; the same functions, the
    same predictions), and this thread only feeds it and lays out bucket rows.

    While it runs, the object allocator's freed arenas are kept for the next batch
    (``vault.arenas``) rather than given back to the OS and faulted in again.
    """
    seal_worker.mode()  # a bad setting is refused before anything is written
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="civicvault-writer")
    layout_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="civicvault-layout")
    # a batch's fingerprints and other lookup digests while this thread decides and seals
    helpers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="civicvault-digest")
    pending: Future[tuple[BatchResult, bool]] | None = None
    predicted: tuple[BatchKeys, NextIds] | None
    with begin() as conn:  # the dataset's keys exist before anything is sealed under them
        lock_vault(conn)  # before the ids: they are vault-wide max + 1
        ids = NextIds.read(conn, ds_id)
        deferred = _defer_subject_index(conn, _large_new_dataset(conn, ids, source_id))
        predicted = (BatchKeys.active(conn, keyring, ds_id), ids)
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
    tail = _Tail()  # the writer thread's alone
    # a child process that decides and seals ahead (vault.seal_worker): started once the
    # second batch is sealed, given the cache and the work from the fourth batch on
    worker: seal_worker.SealWorker | None = None
    in_child = False  # the child holds the ingest's cache; this process's is cleared

    def erased_among(wanted: set[bytes]) -> set[bytes]:
        return wanted & erased

    def stop_worker() -> None:
        nonlocal worker, in_child
        if worker is not None:
            worker.close()
        worker, in_child = None, False

    arenas.retain()  # released in the finally below, however the ingest ends
    try:
        batches_in = iter(batches)
        queued: tuple[int, pl.DataFrame] | None = None  # taken early, sent to the child
        for seen in itertools.count():
            if queued is not None:
                (index, frame), queued = queued, None
            elif (item := next(batches_in, None)) is not None:
                index, frame = item
            else:
                break
            ahead: tuple[BatchKeys, NextIds, _Decision, _Sealed] | None = None
            if predicted is not None and in_child and worker is not None:
                try:
                    if not worker.asked:
                        worker.seal(frame, *predicted)
                    got = worker.result()
                except (OSError, ValueError):  # the child is gone: go on in this process
                    got = None
                if got is None:  # declined or failed: this batch and the rest, in-process
                    stop_worker()
                else:
                    ahead = (*predicted, *got)
                    # the next batch goes to the child now, on the ids this one leaves
                    # behind: it is sealed while this process waits for the writer
                    queued = next(batches_in, None)
                    if queued is not None:
                        try:
                            worker.seal(queued[1], predicted[0], _next_ids(ahead[1], ahead[3]))
                        except (OSError, ValueError):
                            stop_worker()  # this batch stands; the next one, in-process
                    # this thread is idle until the writer is done: lay out the batch's
                    # bucket rows here rather than in the writer (Polars and NumPy, mostly
                    # without the GIL)
                    _lay_out_now(ahead[3])
            elif predicted is not None and cache.ds_id == ds_id:
                keys, ids = predicted
                d, needs_db = _decide_cached(frame, layout, keys, cache, erased_among, helpers)
                if not d.upd_rows and d.new_rows and not needs_db:
                    ahead = (keys, ids, d,
                             _seal(frame, layout, keys, ds_id, d, ids, {}, dialect, deferred))
                    _lay_out_ahead(layout_pool, ahead[3])
            done: BatchResult | None = None
            if pending is not None:
                done, diverged = pending.result()
                pending = None
                if diverged:
                    _forget(cache)
                    ahead = predicted = None
                    stop_worker()
            if ahead is not None:
                keys, ids, d, sealed = ahead
                # the writer gets this batch before anything else happens here (the caller's
                # turn with the last result, the cache's update): it waits for nothing else
                pending = writer.submit(_store_predicted, begin, keyring, keys, ids, ds_id=ds_id,
                                        dataset=dataset, source_id=source_id, batch_index=index,
                                        frame=frame, layout=layout, d=d, s=sealed, actor=actor,
                                        tail=tail)
            if done is not None:
                yield done
            if ahead is not None:
                if not in_child:
                    _remember(cache, ds_id, ids.watermark, keys, d, sealed)
                stored_ahead += len(sealed.stored)
                predicted = (keys, _next_ids(ids, sealed))
                if worker is None and seen == 1 and seal_worker.wanted():
                    worker = seal_worker.SealWorker()  # starts while this process goes on
                elif worker is not None and not in_child and cache.spilled:
                    stop_worker()  # the cache's spilled runs are this process's files
                elif worker is not None and not in_child:
                    try:
                        worker.setup(layout, ds_id, dialect, erased, cache, deferred)
                    except (OSError, ValueError):  # the child is gone: go on in this process
                        stop_worker()
                    else:
                        cache.clear()  # the child's from now on; forgotten here if it stops
                        in_child = True
                continue
            if worker is not None:  # a batch the child did not take: in-process from now on
                if in_child:  # and the cache it held is lost with it
                    _forget(cache)
                stop_worker()
            with begin() as conn:
                if deferred:  # the ordinary path asks the database: give it its indexes
                    deferred = False
                    _build_subject_index(conn)
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
        if deferred:
            deferred = False
            with begin() as conn:
                _build_subject_index(conn)
        if dialect == "postgresql" and stored_ahead >= ANALYZE_AFTER_ROWS:
            # what COPY added is invisible to the planner until analysed (see _store)
            with begin() as conn:
                conn.execute(text("ANALYZE vault_subjects, vault_blind_index, vault_records"))
    except BaseException:
        _forget(cache)  # what it learnt may not have been committed
        raise
    finally:
        try:
            stop_worker()
            writer.shutdown(wait=True)
            layout_pool.shutdown(wait=True, cancel_futures=True)
            helpers.shutdown(wait=True, cancel_futures=True)
            if deferred:  # a failed first load: what it committed is indexed (the next
                with begin() as conn:  # ingest would also build it, were this process killed)
                    _build_subject_index(conn)
        finally:
            arenas.release()


# The blind index's second index, kept up to date row by row, cost a first load as much as
# the primary key: rows arrive in the primary key's order, so the second index's places are
# random. Built once at the end it is one sort. So an ingest into an empty blind index
# drops it and builds it when done, and so does a large new dataset's
# (``_large_new_dataset``); every other ingest builds it first if it is missing (such a
# load killed midway). "A first load" below means either. Which index that is depends on
# the database:
#
# - PostgreSQL: the primary key leads with the digest (migration 0012) and the subject
#   index serves state verification and erasure, which read a subject range. It holds
#   the subject id alone (migration 0016): a first load writes its rows in subject order
#   (``_blind_rows``), so a range is a few runs of heap pages. The table is a heap, and
#   COPY into its primary key in digest order (random places in a B-tree larger than
#   shared_buffers) was most of the server's time in an ingest (issue 17), so a first
#   load drops the key too and builds it at the end (one sort; the digest first decides
#   almost every comparison at once: 3M rows 4.45 -> 1.90 s). No reader's answer
#   changes (the rows are the same, found by a scan meanwhile), and no duplicate can
#   slip in: the rows such a load adds are its new subjects' (new subject ids), and
#   every write that could repeat a row (``_insert_ignore`` of updated subjects) builds
#   the key first.
# - SQLite: the table is its primary key (WITHOUT ROWID), which leads with the subject
#   (migration 0013): new subjects, the highest ids, are appended to it. The lookup
#   index by dataset, column and digest (the old key's order, so every lookup and
#   linkage scan reads as before) is the one deferred.
SUBJECT_INDEX = "ix_vault_blind_subject"
_SUBJECT_INDEX_SQL = (f"CREATE INDEX IF NOT EXISTS {SUBJECT_INDEX} ON vault_blind_index "
                      "(subject_id)")  # as migration 0016 makes it
LOOKUP_INDEX = "ix_vault_blind_lookup"
_LOOKUP_INDEX_SQL = (f'CREATE INDEX IF NOT EXISTS {LOOKUP_INDEX} ON vault_blind_index '
                     '(dataset_id, "column", digest, subject_id, key_id)')
BLIND_KEY = "vault_blind_index_pkey"
_BLIND_KEY_SQL = (f"ALTER TABLE vault_blind_index ADD CONSTRAINT {BLIND_KEY} "
                  'PRIMARY KEY (digest, "column", dataset_id, subject_id)')


def deferred_index(dialect: str) -> str:
    """The blind-index index a first load builds at its end (and, on PostgreSQL, with
    the primary key)."""
    return SUBJECT_INDEX if dialect == "postgresql" else LOOKUP_INDEX


DEFER_ROOT = {"postgresql": 200, "sqlite": 650}
"""A load of a new dataset defers the blind index's second index (and PostgreSQL's key)
when its source has at least ``DEFER_ROOT[dialect]`` times the square root of the
vault's subjects as rows. A rebuild sorts the whole table, so it costs more as the vault
grows; so does upkeep per row (the index outgrows the caches), but more slowly. So the
break-even grows with the vault, not as a fixed share of it. ``bench/later_load.py``
(issue 17; every point in docs/BENCHMARKS.md, "The later-load rule follows the square
root of the vault") put it at about 540k, 1M, 1.3M and 1.8M rows into 1M, 2M, 4M and 8M
on SQLite (540-710 x the root), and 270k, 330k and 480k into 2M, 4M and 8M on PostgreSQL
(165-195 x), whose rebuild costs less and upkeep more. Of 30 points measured, the rule
takes the faster way, or one within 5%, at all but 150k rows into 1M on PostgreSQL
(upkeep, 7% slower); the shares before (a quarter, a half) missed by up to 78%."""
DEFER_MIN_ROWS = 100_000
"""... and at least this many: a smaller load gains less than a second than rebuilding
costs the vault's other readers (their lookups scan meanwhile)."""


def _defer_subject_index(conn: Connection, large: bool) -> bool:
    """Drop the deferred index (and, on PostgreSQL, the primary key) if the blind index
    is empty or this load is a ``large`` new dataset's (True), else make sure they exist.
    The caller holds the vault lock (``write_batches``, which read the ids under it)."""
    if large or conn.exec_driver_sql("SELECT 1 FROM vault_blind_index LIMIT 1").first() is None:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {deferred_index(conn.dialect.name)}")
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"ALTER TABLE vault_blind_index DROP CONSTRAINT IF EXISTS "
                                 f"{BLIND_KEY}")
        return True
    _build_subject_index(conn)
    return False


def _large_new_dataset(conn: Connection, ids: NextIds, source_id: int) -> bool:
    """Whether this load (``ids``: as it starts) is of a dataset with no subjects yet (so
    its decisions never ask the blind index: ``IdentityCache`` knows every subject it
    adds) from a source of at least ``DEFER_ROOT[dialect]`` times the square root of the
    vault's subjects rows, and at least ``DEFER_MIN_ROWS``. Rebuilding both orders at its
    end then costs less than keeping them up to date row by row: a second 1M-row dataset
    into a vault of 1M took 27.3-27.5 s on PostgreSQL and 21.1-21.4 s on SQLite with them
    kept, 13.4-13.5 s and 12.8-12.9 s deferred (issue 17). A rebuild sorts the whole
    table, so below some size upkeep costs less. Should its decisions need the database
    after all (a batch the cache cannot decide), the ordinary path builds them first, as
    after a first load."""
    if ids.watermark is not None:
        return False  # a later load of a dataset: its decisions look up stored digests
    rows = conn.execute(select(T_SOURCE.c.rows).where(T_SOURCE.c.id == source_id)).scalar()
    if not rows or int(rows) < DEFER_MIN_ROWS:
        return False
    root = DEFER_ROOT[conn.dialect.name]
    return int(rows) ** 2 >= root * root * (ids.subject - 1)  # ids are max + 1


def _build_blind_key(conn: Connection) -> None:
    """Put the blind index's primary key back if a first load dropped it (PostgreSQL)."""
    if conn.dialect.name != "postgresql":
        return
    lock_vault(conn)
    if conn.exec_driver_sql(f"SELECT to_regclass('{BLIND_KEY}')").scalar() is None:
        conn.exec_driver_sql(_BLIND_KEY_SQL)


def _build_subject_index(conn: Connection) -> None:
    """Build the deferred index (and the primary key) if missing (asking the catalogue
    first: on PostgreSQL even ``CREATE INDEX IF NOT EXISTS`` locks the table)."""
    lock_vault(conn)
    _build_blind_key(conn)
    if conn.dialect.name == "postgresql":
        if conn.exec_driver_sql(f"SELECT to_regclass('{SUBJECT_INDEX}')").scalar() is None:
            conn.exec_driver_sql(_SUBJECT_INDEX_SQL)
        return
    found = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index' "
                                 f"AND name = '{LOOKUP_INDEX}'").scalar()
    if found is None:
        # SQLite sorts for CREATE INDEX on helper threads when allowed to, and its
        # sorted runs are as large as the page cache: smaller runs sort faster on
        # several threads and hold less memory (3M rows on 2 cores: 3.8 s single-
        # threaded, 3.1 s with threads and 64 MiB runs, 2.2-2.3 s with 16 MiB runs).
        # Twice as many helpers as cores, with 2 MiB runs, keep every core busy while
        # the runs are merged (2 cores, bench/sqlite_index.py: 3M rows 2.78 -> 2.53 s,
        # 15M 16.27 -> 14.04 s). At the end of a first load the other cores are idle.
        cache = int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())
        conn.exec_driver_sql(f"PRAGMA threads={min(4, 2 * seal_worker.cores())}")
        conn.exec_driver_sql(f"PRAGMA cache_size={_SORT_CACHE}")
        try:
            conn.exec_driver_sql(_LOOKUP_INDEX_SQL)
        finally:
            conn.exec_driver_sql("PRAGMA threads=0")
            conn.exec_driver_sql(f"PRAGMA cache_size={cache}")


_SORT_CACHE = -2048  # KiB


def _decide_cached(frame: pl.DataFrame, layout: ColumnLayout, keys: BatchKeys,
                   cache: IdentityCache, erased_among: Callable[[set[bytes]], set[bytes]],
                   helpers: Executor | None = None) -> tuple[_Decision, bool]:
    """Decide a batch from the cache alone; also whether it named a subject that only
    the database can tell apart (a compacted batch's), so the decision cannot stand."""
    needs_db: set[bytes] = set()

    def cached(wanted: set[bytes]) -> dict[bytes, Any]:
        found: dict[bytes, Any] = dict(cache.lookup(wanted))
        needs_db.update(cache.possibly_known(wanted.difference(found)))
        return found

    return _decide(frame, layout, keys, cached, erased_among, helpers), bool(needs_db)


def _store_predicted(
    begin: Callable[[], AbstractContextManager[Connection]], keyring: Keyring, keys: BatchKeys,
    ids: NextIds, *, ds_id: int, dataset: str, source_id: int, batch_index: int,
    frame: pl.DataFrame, layout: ColumnLayout, d: _Decision, s: _Sealed, actor: str,
    tail: _Tail | None = None,
) -> tuple[BatchResult, bool]:
    """Store a batch sealed ahead if its predictions hold; else write it afresh.

    Returns the result and whether the predictions failed.
    """
    with begin() as conn:
        lock_vault(conn)
        if (_stored_batch(conn, source_id, batch_index) is None and NextIds.read(conn, ds_id) == ids
                and BatchKeys.active(conn, keyring, ds_id).ids == keys.ids):
            return _store(conn, keyring, keys, ds_id=ds_id, dataset=dataset, source_id=source_id,
                          batch_index=batch_index, d=d, s=s, actor=actor, analyze=False,
                          tail=tail), False
        _build_subject_index(conn)  # another writer came in between: it asks the database
        return write_batch(conn, keyring, ds_id=ds_id, dataset=dataset, source_id=source_id,
                           batch_index=batch_index, frame=frame, layout=layout, actor=actor), True


