"""Digests of vault state that the ledger vouches for: one definition for writers and verifier.

Every operation that changes a row which grants power or holds data puts, in the
ledger entry of its own transaction, the digest of what that row (or group of
rows) is now. ``vault.state_verify`` folds those entries and recomputes the same
digests from the database with the same functions, so a row edited by plain SQL
differs from the last digest the ledger holds for it.

- data keys: one digest per ``vault_data_keys`` row (id, dataset, purpose,
  version, KEK version, state, SHA-256 of the wrapped bytes; not the seal counter);
- subject buckets: subject ids in blocks of ``BUCKET``; a bucket's digest covers
  its ``vault_subjects`` rows (id, dataset, wrapping key, erased or not, wrapped
  key bytes) and the ``vault_blind_index`` rows of those subjects. Aggregated in the
  database (``group_concat`` / ``string_agg``): no Python object per row. Version 2
  (written since issue 19's benchmark work) aggregates column by column; version 1
  (entries without a version) hashed one text per row; both verify. Each comes with
  a *locator* (``locator``), so that a later difference names its subject. Ingest
  writers lay out the same bytes from the rows they insert (``vault.bucket_rows``,
  ``BucketParts``) instead of reading them back; ``bucket_item`` hashes either;
- live masks: one digest per batch of its live/erased row bits;
- a batch's row -> subject column (``row_subjects``, migration 0011): one digest per
  batch, written once at ingest (never changed: erasure clears live bits, not ids);
- dataset and source rows, and a dataset's suppression list.

Details keys written to ledger entries: ``key_rows``, ``subject_buckets``,
``live_masks`` (lists of ``[id, hex digest]``; ``row_subjects``, one hex digest in an
ingest entry; a subject bucket item is
``[bucket, subjects digest, blind-index digest, locator, version]``), ``dataset_row``,
``source_row``, ``suppressed``. Digests are hex SHA-256 of domain-tagged bytes; they hold no values.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, column, select, table

BUCKET = 1 << 14
"""Subject ids per bucket: a bucket is re-digested whenever one of its subjects changes."""
BUCKET_DIGEST_VERSION = 2
"""What writers commit now on SQLite; entries without a version carry version 1."""
BUCKET_DIGEST_VERSIONS = (1, 2)

# The columns digested here, as lightweight table clauses (names as in ``vault.schema``):
# verification reads them without importing the ORM models, polars or numpy.
T_KEY = table("vault_data_keys", *map(column, (
    "id", "dataset_id", "purpose", "version", "kek_version", "state", "wrapped")))
T_BATCH = table("vault_batches", *map(column, (
    "id", "dataset_id", "source_id", "batch_index", "rows", "data_hash", "live_mask",
    "row_subjects", "record_fields")))  # migrations 0011 and 0015 (batch_columns)
T_DATASET = table("vault_datasets", *map(column, ("id", "name", "schema_hash", "columns_json")))
T_SOURCE = table("vault_sources", *map(column, (
    "id", "dataset_id", "content_hash", "rows", "batches")))
T_SUBJECT = table("vault_subjects", *map(column, ("id", "erased_at", "wrapped_key")))
T_ACCOUNTS = table("budget_accounts", *map(column, (
    "analyst", "dataset", "total_nano", "spent_nano", "delta_total_atto", "delta_spent_atto")))
T_DATASETS = table("budget_datasets", *map(column, ("dataset", "spent_nano")))
T_ANALYSTS = table("budget_analysts", *map(column, ("analyst", "spent_nano",
                                                     "delta_spent_atto")))
T_SUPPRESSED = table("vault_suppressed", *map(column, ("dataset_id", "column", "digest",
                                                       "key_id")))

Pairs = list[list[Any]]


def _tagged(tag: str, *parts: object) -> str:
    body = json.dumps([tag, *parts], separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(body.encode("ascii")).hexdigest()


# -- data keys --------------------------------------------------------------------------------


def key_row_digest(row: Any) -> str:
    wrapped = hashlib.sha256(bytes(row.wrapped)).hexdigest()
    return _tagged("civicvault/data-key/v1", int(row.id), int(row.dataset_id), str(row.purpose),
                   int(row.version), int(row.kek_version), str(row.state), wrapped)


def key_rows(conn: Connection, ids: Iterable[int] | None = None) -> Pairs:
    """``[[key id, digest], ...]`` of the given data keys (default: all), by id."""
    query = select(T_KEY.c.id, T_KEY.c.dataset_id, T_KEY.c.purpose, T_KEY.c.version,
                   T_KEY.c.kek_version, T_KEY.c.state, T_KEY.c.wrapped).order_by(T_KEY.c.id)
    if ids is not None:
        query = query.where(T_KEY.c.id.in_(sorted(set(ids))))
    return [[int(r.id), key_row_digest(r)] for r in conn.execute(query)]


# -- subject buckets --------------------------------------------------------------------------

_SUBJECTS_SQLITE = (
    "SELECT group_concat(x, ',') FROM (SELECT id || ':' || dataset_id || ':' || key_id || ':' "
    "|| (erased_at IS NOT NULL) || ':' || coalesce(hex(wrapped_key), '') AS x "
    "FROM vault_subjects WHERE id >= ? AND id < ? ORDER BY id)")
_BLIND_SQLITE = (
    "SELECT group_concat(x, ',') FROM (SELECT subject_id || ':' || dataset_id || ':' "
    "|| hex(\"column\") || ':' || key_id || ':' || hex(digest) AS x FROM vault_blind_index "
    "WHERE subject_id >= ? AND subject_id < ? ORDER BY subject_id, \"column\", digest)")
_V1_PG = ("encode(sha256(convert_to(%(tag)s || '{kind}' || E'\\n' || coalesce({agg}, ''), "
          "'UTF8')), 'hex')")
_SUBJECTS_V1_PG_AGG = """(SELECT string_agg(id::text || ':' || dataset_id::text || ':'
        || key_id::text
        || ':' || (CASE WHEN erased_at IS NULL THEN '0' ELSE '1' END) || ':'
        || coalesce(upper(encode(wrapped_key, 'hex')), ''), ',' ORDER BY id)
      FROM vault_subjects WHERE id >= %(lo)s AND id < %(hi)s)"""
_BLIND_V1_PG_AGG = """string_agg(subject_id::text || ':' || dataset_id::text || ':'
        || upper(encode(convert_to("column", 'UTF8'), 'hex')) || ':' || key_id::text || ':'
        || upper(encode(digest, 'hex')), ','
        ORDER BY subject_id, "column" COLLATE "C", digest)"""
_SUBJECTS_V1_PG = "SELECT " + _V1_PG.format(kind="subjects", agg=_SUBJECTS_V1_PG_AGG)
_BUCKET_PG = (_SUBJECTS_V1_PG + ", " + _V1_PG.format(kind="blind", agg=(
    f"(SELECT {_BLIND_V1_PG_AGG} FROM vault_blind_index "
    "WHERE subject_id >= %(lo)s AND subject_id < %(hi)s)")))
_BLIND_V1_PG_ALL = (f"SELECT subject_id / {BUCKET}, "
                    + _V1_PG.format(kind="blind", agg=_BLIND_V1_PG_AGG)
                    + " FROM vault_blind_index GROUP BY 1 ORDER BY 1")
_BUCKET_TAG = "civicvault/subject-bucket/v1/"


def bucket_digest(conn: Connection, bucket: int, version: int = 2, *, quick: bool = False
                  ) -> tuple[str, str]:
    """Digests of subject bucket ``bucket``: (its subjects' rows, their blind-index rows),
    of digest ``version`` 2 (column-wise, ``bucket_digest_v2``) or 1 (row texts).

    ``quick`` (version 2, SQLite): the rows in the order the index scan yields them, without
    a sorting subquery. That order is the digest's order in practice; a quick digest that
    matches a committed one proves the same rows (the same bytes in the digest's order),
    so only a quick digest that differs needs computing again in order to be believed."""
    if version == 2:
        return bucket_digest_v2(conn, bucket, quick=quick)
    if version != 1:
        raise ValueError(f"unknown subject-bucket digest version {version}")
    lo, hi = bucket * BUCKET, (bucket + 1) * BUCKET
    if conn.dialect.name == "postgresql":
        raw: Any = conn.connection.driver_connection
        stream = _UnindexedBlind.of(conn, 1)
        got = stream.next(bucket) if stream is not None else None
        with raw.cursor() as cursor:
            if got is not None:
                cursor.execute(_SUBJECTS_V1_PG, {"tag": _BUCKET_TAG, "lo": lo, "hi": hi})
                blind_digest = str(got[0]) if got else _part_bytes(b"blind", b"")
                return str(cursor.fetchone()[0]), blind_digest
            cursor.execute(_BUCKET_PG, {"tag": _BUCKET_TAG, "lo": lo, "hi": hi})
            subjects, blind = cursor.fetchone()
            return str(subjects), str(blind)
    subjects_text, blind_text = _sqlite_bytes(conn, (_SUBJECTS_SQLITE, _BLIND_SQLITE), lo, hi)
    return _part_bytes(b"subjects", subjects_text[0]), _part_bytes(b"blind", blind_text[0])


def _part_bytes(kind: bytes, text: bytes) -> str:
    """``_part`` of the UTF-8 bytes SQLite returns, without decoding them to ``str``."""
    h = hashlib.sha256(_BUCKET_TAG.encode())
    h.update(kind + b"\n")
    h.update(text)
    return h.hexdigest()


def _sqlite_bytes(conn: Connection, queries: tuple[str, ...], lo: int, hi: int
                  ) -> list[tuple[bytes, ...]]:
    """Each query's one row over subject ids ``[lo, hi)``, text as raw bytes (no decoding)."""
    raw: Any = conn.connection.driver_connection
    before = raw.text_factory
    raw.text_factory = bytes
    cursor = raw.cursor()
    try:
        return [tuple(b"" if v is None else bytes(v) if not isinstance(v, int) else
                      str(v).encode() for v in cursor.execute(q, (lo, hi)).fetchone())
                for q in queries]
    finally:
        cursor.close()
        raw.text_factory = before


# -- version 2: column-wise -----------------------------------------------------------------------
#
# The v1 texts build one string per row in the database (8 concatenations, a hex of the
# wrapped key), then Python decodes and re-encodes them. Version 2 aggregates each column
# on its own, in the same order (subjects by id; blind-index rows by subject, column,
# digest): integers as comma-joined decimals, blobs concatenated raw beside their lengths
# (a missing wrapped key has length -1), and hashes the columns' bytes, each prefixed by its
# length: no per-row string, no decoding, no hex of the blobs. Any edited, added, deleted or
# moved row changes at least one column's bytes. A bucket digest entry says its version.

_BUCKET_TAG_V2 = b"civicvault/subject-bucket/v2/"
_SUBJECTS_V2_SQLITE = (
    "SELECT group_concat(id), group_concat(dataset_id), group_concat(key_id), "
    "group_concat(e, ''), group_concat(n), group_concat(wrapped_key, '') FROM ("
    "SELECT id, dataset_id, key_id, erased_at IS NOT NULL AS e, "
    "ifnull(length(wrapped_key), -1) AS n, wrapped_key "
    "FROM vault_subjects WHERE id >= ? AND id < ? ORDER BY id)")
_SUBJECTS_V2_QUICK = (
    "SELECT group_concat(id), group_concat(dataset_id), group_concat(key_id), "
    "group_concat(erased_at IS NOT NULL, ''), group_concat(ifnull(length(wrapped_key), -1)), "
    "group_concat(wrapped_key, '') FROM vault_subjects WHERE id >= ? AND id < ?")
_BLIND_V2_QUICK = (
    "SELECT group_concat(subject_id), group_concat(dataset_id), group_concat(hex(\"column\")), "
    "group_concat(key_id), group_concat(length(digest)), group_concat(digest, '') "
    "FROM vault_blind_index WHERE subject_id >= ? AND subject_id < ?")
_BLIND_V2_SQLITE = (
    "SELECT group_concat(subject_id), group_concat(dataset_id), group_concat(hex(\"column\")), "
    "group_concat(key_id), group_concat(length(digest)), group_concat(digest, '') FROM ("
    "SELECT subject_id, dataset_id, \"column\", key_id, digest FROM vault_blind_index "
    "WHERE subject_id >= ? AND subject_id < ? ORDER BY subject_id, \"column\", digest)")
_BY_ID = "ORDER BY id"
_BY_ROW = 'ORDER BY subject_id, "column" COLLATE "C", digest'
_SUBJECTS_V2_PG = (
    f"SELECT string_agg(id::text, ',' {_BY_ID}), string_agg(dataset_id::text, ',' {_BY_ID}), "
    f"string_agg(key_id::text, ',' {_BY_ID}), "
    f"string_agg(CASE WHEN erased_at IS NULL THEN '0' ELSE '1' END, '' {_BY_ID}), "
    f"string_agg(coalesce(length(wrapped_key), -1)::text, ',' {_BY_ID}), "
    f"string_agg(wrapped_key, ''::bytea {_BY_ID}) "
    "FROM vault_subjects WHERE id >= %(lo)s AND id < %(hi)s")
_BLIND_V2_PG_AGGS = (
    f"string_agg(subject_id::text, ',' {_BY_ROW}), "
    f"string_agg(dataset_id::text, ',' {_BY_ROW}), "
    f"string_agg(upper(encode(convert_to(\"column\", 'UTF8'), 'hex')), ',' {_BY_ROW}), "
    f"string_agg(key_id::text, ',' {_BY_ROW}), string_agg(length(digest)::text, ',' {_BY_ROW}), "
    f"string_agg(digest, ''::bytea {_BY_ROW})")
_BLIND_V2_PG = (f"SELECT {_BLIND_V2_PG_AGGS} FROM vault_blind_index "
                "WHERE subject_id >= %(lo)s AND subject_id < %(hi)s")
_LEN64 = struct.Struct(">Q").pack


def _columns_digest(kind: bytes, columns: tuple[bytes, ...]) -> str:
    h = hashlib.sha256(_BUCKET_TAG_V2 + kind + b"\n")
    for col in columns:
        h.update(_LEN64(len(col)))
        h.update(col)
    return h.hexdigest()


def bucket_columns(conn: Connection, bucket: int, *, quick: bool = False
                   ) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """The column bytes a bucket's v2 digests hash: (subjects' columns, blind-index columns);
    ``quick``: see ``bucket_digest``."""
    lo, hi = bucket * BUCKET, (bucket + 1) * BUCKET
    if conn.dialect.name == "postgresql":
        stream = _UnindexedBlind.of(conn, 2)
        got = stream.next(bucket) if stream is not None else None
        if got is not None:
            subjects = range_columns(conn, lo, hi, with_blind=False)[0]
            return subjects, _pg_bytes(got) if got else _EMPTY_BLIND
    return range_columns(conn, lo, hi, quick=quick)


def _pg_bytes(row: Iterable[Any]) -> tuple[bytes, ...]:
    return tuple(b"" if v is None else v.encode("utf-8") if isinstance(v, str) else bytes(v)
                 for v in row)


def range_columns(conn: Connection, lo: int, hi: int, *, quick: bool = False,
                  with_blind: bool = True) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """``bucket_columns`` of the subject ids ``[lo, hi)`` (a part of one bucket); with
    ``with_blind`` False (PostgreSQL), the blind-index columns are left empty, unread."""
    if conn.dialect.name == "postgresql":
        raw: Any = conn.connection.driver_connection
        out: list[tuple[bytes, ...]] = []
        with raw.cursor() as cursor:
            for q in (_SUBJECTS_V2_PG, _BLIND_V2_PG) if with_blind else (_SUBJECTS_V2_PG,):
                cursor.execute(q, {"lo": lo, "hi": hi})
                out.append(_pg_bytes(cursor.fetchone()))
        return out[0], out[1] if with_blind else ()
    queries = ((_SUBJECTS_V2_QUICK, _BLIND_V2_QUICK) if quick
               else (_SUBJECTS_V2_SQLITE, _BLIND_V2_SQLITE))
    subjects, blind = _sqlite_bytes(conn, queries, lo, hi)
    return subjects, blind


# PostgreSQL reads a bucket's blind-index rows by the subject index. A large first load
# drops that index and builds it at its end (``store._defer_subject_index``), so while
# such a load runs, or after one was killed midway and until the next ingest builds it,
# each bucket's read would scan the whole table: verification's time would grow with the
# square of the vault (2M subjects: 11.6 s -> 26.1 s). Without the index, the buckets
# come instead from one pass over the table, grouped by bucket in bucket order (one
# sort, as the index build's), read one bucket at a time from a server-side cursor of
# the reading transaction: the same aggregates, so the same bytes, and verification
# stays read-only. Of verification's two processes, the parent takes its buckets in
# ascending order and the child in descending order (``vault.verify_all._take_tasks``):
# each cursor aggregates a bucket only when it is read, so where the two meet each has
# aggregated its own buckets' rows only. A bucket asked out of order is read alone.
_BLIND_V2_PG_ALL = (f"SELECT subject_id / {BUCKET}, {_BLIND_V2_PG_AGGS} "
                    "FROM vault_blind_index GROUP BY 1 ORDER BY 1")
_SUBJECT_LED_INDEX = """
SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a
    ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
  WHERE i.indrelid = 'vault_blind_index'::regclass AND i.indisvalid
    AND a.attname = 'subject_id')"""
_EMPTY_BLIND = (b"",) * 6
_STREAMS = "civicvault.unindexed_blind"


@contextmanager
def bucket_reads(conn: Connection, *, descending: bool = False) -> Iterator[None]:
    """A block of bucket digests read in ascending order (or ``descending``) in
    ``conn``'s transaction (verification's). On PostgreSQL without the subject index
    (see above), their blind-index parts come from one grouped pass per digest version
    in that order, computed as they are read (a block that stops early has aggregated
    no further), whose server-side cursors close at the block's end; elsewhere, and in
    a block within one, nothing changes."""
    if (conn.dialect.name != "postgresql" or _STREAMS in conn.info
            or conn.exec_driver_sql(_SUBJECT_LED_INDEX).scalar()):
        yield
        return
    streams: _Streams = _Streams(descending)
    conn.info[_STREAMS] = streams
    try:
        yield
    finally:
        conn.info.pop(_STREAMS, None)
        for stream in streams.values():
            stream.close()


class _Streams(dict[int, "_UnindexedBlind"]):
    """A ``bucket_reads`` block's streams by digest version, and their order."""

    def __init__(self, descending: bool) -> None:
        super().__init__()
        self.descending = descending


class _UnindexedBlind:
    """Every bucket's blind-index aggregates of one digest version, in bucket order
    (``sign`` -1: descending)."""

    def __init__(self, cursor: Any, sign: int) -> None:
        self._cursor: Any = cursor
        self._row: Any = None
        self._sign = sign
        self._asked: int | None = None

    @classmethod
    def of(cls, conn: Connection, version: int) -> _UnindexedBlind | None:
        """The stream of ``version`` within ``bucket_reads``, else None."""
        streams: _Streams | None = conn.info.get(_STREAMS)
        if streams is None:
            return None
        if version not in streams:
            raw: Any = conn.connection.driver_connection
            cursor = raw.cursor(name=f"cv_blind_v{version}")
            cursor.itersize = 1  # a bucket's aggregates are up to a few MB: one at a time
            order = " DESC" if streams.descending else ""
            cursor.execute(*((_BLIND_V1_PG_ALL + order, {"tag": _BUCKET_TAG}) if version == 1
                             else (_BLIND_V2_PG_ALL + order,)))
            streams[version] = cls(cursor, -1 if streams.descending else 1)
        return streams[version]

    def next(self, bucket: int) -> tuple[Any, ...] | None:
        """Bucket ``bucket``'s aggregates (``()`` for a bucket with no blind-index rows), or
        None if it does not come after every bucket asked of this stream before."""
        key = bucket * self._sign
        if self._asked is not None and key <= self._asked:
            return None
        self._asked = key
        while self._cursor is not None:
            if self._row is None:
                self._row = self._cursor.fetchone()
                if self._row is None:
                    self.close()
                    break
            if self._row[0] * self._sign > key:
                break
            row, self._row = self._row, None
            if row[0] == bucket:
                return tuple(row[1:])
        return ()

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()  # psycopg skips the CLOSE in a failed transaction
            self._cursor = None


def bucket_digest_v2(conn: Connection, bucket: int, *, quick: bool = False) -> tuple[str, str]:
    subjects, blind = bucket_columns(conn, bucket, quick=quick)
    return _columns_digest(b"subjects", subjects), _columns_digest(b"blind", blind)


_SUBJECTS_PG = """
SELECT coalesce((SELECT string_agg(id::text || ':' || dataset_id::text || ':' || key_id::text
        || ':' || (CASE WHEN erased_at IS NULL THEN '0' ELSE '1' END) || ':'
        || coalesce(upper(encode(wrapped_key, 'hex')), ''), ',' ORDER BY id)
      FROM vault_subjects WHERE id >= %(lo)s AND id < %(hi)s), ''),
  coalesce((SELECT string_agg(subject_id::text || ':' || dataset_id::text || ':'
        || upper(encode(convert_to("column", 'UTF8'), 'hex')) || ':' || key_id::text || ':'
        || upper(encode(digest, 'hex')), ','
        ORDER BY subject_id, "column" COLLATE "C", digest)
      FROM vault_blind_index WHERE subject_id >= %(lo)s AND subject_id < %(hi)s), '')
"""


def bucket_texts(conn: Connection, bucket: int) -> tuple[str, str]:
    """The texts a bucket's digests hash: one ``id:...`` item per row, comma-separated
    (subjects by id; blind-index rows by subject, column, digest). Digests and ids only."""
    return range_texts(conn, bucket * BUCKET, (bucket + 1) * BUCKET)


def range_texts(conn: Connection, lo: int, hi: int) -> tuple[str, str]:
    """``bucket_texts`` of the subject ids ``[lo, hi)`` (a part of one bucket)."""
    if conn.dialect.name == "postgresql":
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cursor:
            cursor.execute(_SUBJECTS_PG, {"lo": lo, "hi": hi})
            subjects, blind = cursor.fetchone()
            return str(subjects), str(blind)
    cursor = conn.connection.cursor()
    try:
        subjects = cursor.execute(_SUBJECTS_SQLITE, (lo, hi)).fetchone()[0] or ""
        blind = cursor.execute(_BLIND_SQLITE, (lo, hi)).fetchone()[0] or ""
    finally:
        cursor.close()
    return str(subjects), str(blind)


# -- locators: which subject of a bucket differs -----------------------------------------------
#
# A bucket digest says *that* a row of its 16,384 subjects differs, not which. With each
# bucket digest the writers commit a locator: for the bucket's subject rows and for its
# blind-index rows, three moments mod the prime p = 2**31 - 1 of the rows' CRC-32s f
# weighted by w = subject id + 1: A = sum f, B = sum w*f, C = sum w*w*f. When exactly one
# subject's rows differ (edited, added or deleted), with d = f(now) - f(then) summed over its
# rows: dA = d, dB = w*d, dC = w*w*d, so w = dB / dA, confirmed by dC = w * dB. Two
# subjects can never pass as one other (that needs w1 = w2); several give "several rows".
# Detection stays with the SHA-256 digests; the locator only names the row (a CRC can be
# matched on purpose, and then the bucket is named instead). Cost: one CRC per row where
# the digest already hashes every row's text.

LOCATOR_PRIME = (1 << 31) - 1
Moments = tuple[int, int, int]


def _moments(text: str | bytes) -> Moments:
    import numpy as np  # writers have it loaded; verification only on a mismatch

    if not text:
        return 0, 0, 0
    raw = text.encode("ascii") if isinstance(text, str) else text
    rows = raw.split(b",")
    p = LOCATOR_PRIME
    f = np.fromiter(map(zlib.crc32, rows), dtype=np.int64, count=len(rows)) % p
    # each row starts with its subject id then ':'; parse the ids vectorised
    buf = np.frombuffer(raw, dtype=np.uint8)
    starts = np.concatenate(([0], np.flatnonzero(buf == ord(",")) + 1))
    colons = np.flatnonzero(buf == ord(":"))
    ends = colons[np.searchsorted(colons, starts)] if len(colons) else starts
    if len(ends) != len(starts) or np.any(ends - starts < 1) or np.any(ends - starts > 18):
        raise ValueError("a row without a subject id")
    w = np.zeros(len(starts), dtype=np.int64)
    for k in range(int((ends - starts).max())):
        at = starts + k
        more = at < ends
        digit = buf[np.minimum(at, len(buf) - 1)].astype(np.int64) - ord("0")
        if np.any(more & ((digit < 0) | (digit > 9))):
            raise ValueError("a row without a subject id")
        w = np.where(more, w * 10 + digit, w)
    return row_moments(f, w)


def row_moments(crcs: Any, subject_ids: Any) -> Moments:
    """The locator moments of rows from their CRC-32s and subject ids (NumPy int64 arrays
    of the same length): what ``_moments`` of their texts is."""
    p = LOCATOR_PRIME
    f = crcs % p
    w = (subject_ids + 1) % p
    wf = w * f % p
    return int(f.sum() % p), int(wf.sum() % p), int((w * wf % p).sum() % p)


def locator(subjects_text: str | bytes, blind_text: str | bytes) -> str:
    """``A.B.C/A.B.C`` (hex) of the subjects' and the blind-index rows' moments."""
    return "/".join(".".join(f"{m:x}" for m in _moments(t)) for t in (subjects_text, blind_text))


def locate(text: str, committed: str, part: int) -> int | None:
    """The one subject id whose rows differ between ``text`` (now) and the moments
    ``committed`` (``locator``; ``part`` 0 subjects, 1 blind-index rows), or None when
    that cannot be told (no difference in the moments, or more than one subject)."""
    p = LOCATOR_PRIME
    try:
        want = [int(x, 16) for x in committed.split("/")[part].split(".")]
    except (ValueError, IndexError):
        return None
    try:
        now = _moments(text)
    except ValueError:  # a row that does not start with an integer id
        return None
    da, db, dc = ((n - w) % p for n, w in zip(now, want, strict=True))
    if da == 0:
        return None
    w = db * pow(da, -1, p) % p
    if dc != w * db % p or w == 0:
        return None
    return w - 1


def buckets_of(subject_ids: Iterable[int]) -> list[int]:
    return sorted({int(s) // BUCKET for s in subject_ids})


def buckets_of_range(lo: int, hi: int) -> list[int]:
    """Buckets of subject ids ``[lo, hi)``."""
    return list(range(lo // BUCKET, (hi - 1) // BUCKET + 1)) if hi > lo else []


def writer_version(conn: Connection) -> int:
    """The bucket digest version writers commit on this database: 2 on SQLite; 1 on
    PostgreSQL, where the column-wise aggregates sort once per column and cost writers more
    than they save verification (1M-row ingest 31 -> 45 s with version 2, 2026-12-02)."""
    return writer_version_for(conn.dialect.name)


def writer_version_for(dialect: str) -> int:
    """``writer_version`` of a database by its SQLAlchemy dialect name."""
    return 1 if dialect == "postgresql" else BUCKET_DIGEST_VERSION


@dataclass(frozen=True)
class BucketParts:
    """What a subject bucket's digests and locator hash, for a run of consecutive subject
    ids: the locator moments of its subject rows and of its blind-index rows (``locator``),
    and the bytes of its digest version: the row texts (``bucket_texts``, ASCII; version 1)
    or the column bytes (``bucket_columns``; version 2). Read from the database
    (``range_parts``) or laid out by a writer from the rows it holds (``vault.bucket_rows``);
    parts of consecutive id ranges join (``then``) into the bucket's, since every order the
    digests use starts with the subject id, and moments add up."""

    subjects_moments: Moments
    blind_moments: Moments
    subjects_text: bytes | None = None
    blind_text: bytes | None = None
    subjects_columns: tuple[bytes, ...] | None = None
    blind_columns: tuple[bytes, ...] | None = None

    def then(self, later: BucketParts) -> BucketParts:
        """These rows followed by ``later``'s (whose subject ids are all higher)."""
        def text(a: bytes | None, b: bytes | None) -> bytes | None:
            return None if a is None or b is None else _glue(a, b, True)

        def cols(a: tuple[bytes, ...] | None, b: tuple[bytes, ...] | None,
                 glued: tuple[bool, ...]) -> tuple[bytes, ...] | None:
            if a is None or b is None:
                return None
            return tuple(_glue(x, y, g) for x, y, g in zip(a, b, glued, strict=True))

        return BucketParts(add_moments(self.subjects_moments, later.subjects_moments),
                           add_moments(self.blind_moments, later.blind_moments),
                           text(self.subjects_text, later.subjects_text),
                           text(self.blind_text, later.blind_text),
                           cols(self.subjects_columns, later.subjects_columns, _SUBJECT_GLUED),
                           cols(self.blind_columns, later.blind_columns, _BLIND_GLUED))


# which v2 columns are comma-separated lists (the others are concatenated as they are)
_SUBJECT_GLUED = (True, True, True, False, True, False)
_BLIND_GLUED = (True, True, True, True, True, False)


def _glue(a: bytes, b: bytes, comma: bool) -> bytes:
    return a + b"," + b if comma and a and b else a + b


def add_moments(a: Moments, b: Moments) -> Moments:
    p = LOCATOR_PRIME
    return (a[0] + b[0]) % p, (a[1] + b[1]) % p, (a[2] + b[2]) % p


def range_parts(conn: Connection, lo: int, hi: int, version: int) -> BucketParts:
    """``BucketParts`` of the stored rows of subject ids ``[lo, hi)`` (one bucket or part)."""
    subjects, blind = (t.encode("ascii") for t in range_texts(conn, lo, hi))
    moments = _moments(subjects), _moments(blind)
    if version == 1:
        return BucketParts(*moments, subjects, blind)
    scols, bcols = range_columns(conn, lo, hi)
    return BucketParts(*moments, subjects_columns=scols, blind_columns=bcols)


def bucket_item(bucket: int, parts: BucketParts, version: int) -> list[Any]:
    """A ``subject_buckets`` item from a whole bucket's parts: ``[bucket, subjects digest,
    blind-index digest, locator]`` (version 1), and the version after the locator (2)."""
    where = "/".join(".".join(f"{m:x}" for m in ms)
                     for ms in (parts.subjects_moments, parts.blind_moments))
    if version == 1 and parts.subjects_text is not None and parts.blind_text is not None:
        return [bucket, _part_bytes(b"subjects", parts.subjects_text),
                _part_bytes(b"blind", parts.blind_text), where]
    if version == 2 and parts.subjects_columns is not None and parts.blind_columns is not None:
        return [bucket, _columns_digest(b"subjects", parts.subjects_columns),
                _columns_digest(b"blind", parts.blind_columns), where, version]
    raise ValueError(f"no version {version} digest of these parts")


def subject_buckets(conn: Connection, buckets: Iterable[int],
                    version: int | None = None) -> Pairs:
    """``[[bucket, subjects digest, blind-index digest, locator, version], ...]`` from the
    database now (``version`` 1: the older four-item form; None: ``writer_version``); the
    locator (over the row texts) names the row when a digest later differs."""
    if version is None:
        version = writer_version(conn)
    if version not in BUCKET_DIGEST_VERSIONS:
        raise ValueError(f"unknown subject-bucket digest version {version}")
    return [bucket_item(b, range_parts(conn, b * BUCKET, (b + 1) * BUCKET, version), version)
            for b in sorted(set(buckets))]


def bucket_count(conn: Connection) -> int:
    """Buckets up to the highest subject id stored (0 without subjects)."""
    top = conn.exec_driver_sql("SELECT max(id) FROM vault_subjects").scalar()
    return 0 if top is None else int(top) // BUCKET + 1


# -- live masks ---------------------------------------------------------------------------------


def _packed_bits(mask: bytes, rows: int) -> bytes:
    """The first ``rows`` bits of a stored mask (zlib of big-endian packed bits), packed
    again with zero padding: what ``np.packbits(vault.store.unpack_mask(mask, rows))`` is."""
    if not rows:
        return b""
    raw = zlib.decompress(mask)
    need = (rows + 7) // 8
    if len(raw) < need:  # fewer bits stored than rows: they are all there is
        return raw
    out = bytearray(raw[:need])
    if rows % 8:
        out[-1] &= (0xFF << (8 - rows % 8)) & 0xFF
    return bytes(out)


def live_digest(rows: int, mask: bytes) -> str:
    """Digest of a batch's live bits (the mask is compared unpacked: its packing is free)."""
    return _tagged("civicvault/live-mask/v1", int(rows),
                   hashlib.sha256(_packed_bits(mask, rows)).hexdigest())


def all_live_digest(rows: int) -> str:
    full, rest = divmod(int(rows), 8)
    bits = b"\xff" * full + (bytes([(0xFF << (8 - rest)) & 0xFF]) if rest else b"")
    return _tagged("civicvault/live-mask/v1", int(rows), hashlib.sha256(bits).hexdigest())


def has_row_subjects(conn: Connection) -> bool:
    """Whether ``vault_batches`` has migration 0011's ``row_subjects`` column."""
    return "row_subjects" in batch_columns(conn)


def batch_columns(conn: Connection) -> set[str]:
    """The columns ``vault_batches`` has (migrations 0011 and 0015 added some)."""
    from sqlalchemy import inspect

    return {c["name"] for c in inspect(conn).get_columns("vault_batches")}


def record_fields_digest(batch_id: int, names: str) -> str:
    """What a batch's ingest entry carries for its records' field names
    (``vault_batches.record_fields``, migration 0015): a digest, never the names, which
    are a file's header text, typed by whoever made the file."""
    return _tagged("civicvault/record-fields/v1", batch_id, names)


def row_subjects_digest(rows: int, blob: bytes) -> str:
    """Digest of a batch's row -> subject column: its row count and the SHA-256 of the
    unpacked little-endian int64 deltas (``vault.live_mask.pack_subjects``; the zlib
    packing is free)."""
    try:
        raw = zlib.decompress(blob)
    except zlib.error:  # not what a writer stores: a digest no writer commits
        return _tagged("civicvault/row-subjects/unreadable", int(rows))
    return _tagged("civicvault/row-subjects/v1", int(rows), hashlib.sha256(raw).hexdigest())


def live_masks(conn: Connection, batch_ids: Iterable[int]) -> Pairs:
    ids = sorted({int(b) for b in batch_ids})
    if not ids:
        return []
    rows = conn.execute(select(T_BATCH.c.id, T_BATCH.c.rows, T_BATCH.c.live_mask)
                        .where(T_BATCH.c.id.in_(ids)).order_by(T_BATCH.c.id)).all()
    return [[int(r.id), live_digest(int(r.rows), bytes(r.live_mask))] for r in rows]


# -- datasets, sources, suppression lists --------------------------------------------------------


def dataset_row_digest(row: Any) -> str:
    return _tagged("civicvault/dataset/v1", int(row.id), str(row.name), str(row.schema_hash),
                   str(row.columns_json))


def dataset_row(conn: Connection, ds_id: int) -> str:
    row = conn.execute(select(T_DATASET.c.id, T_DATASET.c.name, T_DATASET.c.schema_hash,
                              T_DATASET.c.columns_json).where(T_DATASET.c.id == ds_id)).one()
    return dataset_row_digest(row)


def source_row_digest(row: Any) -> str:
    return _tagged("civicvault/source/v1", int(row.id), int(row.dataset_id),
                   str(row.content_hash), int(row.rows), int(row.batches))


def source_row(conn: Connection, source_id: int) -> str:
    row = conn.execute(select(T_SOURCE.c.id, T_SOURCE.c.dataset_id, T_SOURCE.c.content_hash,
                              T_SOURCE.c.rows, T_SOURCE.c.batches)
                       .where(T_SOURCE.c.id == source_id)).one()
    return source_row_digest(row)


def suppressed_digest(conn: Connection, ds_id: int) -> str:
    """Digest of a dataset's suppression list (column, identity digest, key)."""
    rows = conn.execute(select(T_SUPPRESSED.c.column, T_SUPPRESSED.c.digest,
                               T_SUPPRESSED.c.key_id)
                        .where(T_SUPPRESSED.c.dataset_id == ds_id)).all()
    items = sorted((str(r.column), bytes(r.digest).hex(), int(r.key_id)) for r in rows)
    return _tagged("civicvault/suppressed/v1", int(ds_id), [list(i) for i in items])
