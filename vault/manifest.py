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
  key bytes) and the ``vault_blind_index`` rows of those subjects. Computed in the
  database (``group_concat`` / ``string_agg``): no Python object per row;
- live masks: one digest per batch of its live/erased row bits;
- dataset and source rows, and a dataset's suppression list.

Details keys written to ledger entries: ``key_rows``, ``subject_buckets``,
``live_masks`` (lists of ``[id, hex digest]``), ``dataset_row``, ``source_row``,
``suppressed``. Digests are hex SHA-256 of domain-tagged bytes; they hold no values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import numpy as np
from sqlalchemy import Connection, select

from vault.live_mask import unpack_mask
from vault.schema import DataKey
from vault.tables import T_BATCH, T_DATASET, T_SOURCE, T_SUPPRESSED

BUCKET = 1 << 14
"""Subject ids per bucket: a bucket is re-digested whenever one of its subjects changes."""

T_KEY = DataKey.__table__  # type: ignore[attr-defined]

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
_BUCKET_PG = """
SELECT encode(sha256(convert_to(%(tag)s || 'subjects' || E'\\n'
  || coalesce((SELECT string_agg(id::text || ':' || dataset_id::text || ':' || key_id::text
        || ':' || (CASE WHEN erased_at IS NULL THEN '0' ELSE '1' END) || ':'
        || coalesce(upper(encode(wrapped_key, 'hex')), ''), ',' ORDER BY id)
      FROM vault_subjects WHERE id >= %(lo)s AND id < %(hi)s), ''), 'UTF8')), 'hex'),
  encode(sha256(convert_to(%(tag)s || 'blind' || E'\\n'
  || coalesce((SELECT string_agg(subject_id::text || ':' || dataset_id::text || ':'
        || upper(encode(convert_to("column", 'UTF8'), 'hex')) || ':' || key_id::text || ':'
        || upper(encode(digest, 'hex')), ','
        ORDER BY subject_id, "column" COLLATE "C", digest)
      FROM vault_blind_index WHERE subject_id >= %(lo)s AND subject_id < %(hi)s), ''),
  'UTF8')), 'hex')
"""
_BUCKET_TAG = "civicvault/subject-bucket/v1/"


def _part(kind: str, text: str) -> str:
    return hashlib.sha256(f"{_BUCKET_TAG}{kind}\n{text}".encode()).hexdigest()


def bucket_digest(conn: Connection, bucket: int) -> tuple[str, str]:
    """Digests of subject bucket ``bucket``: (its subjects' rows, their blind-index rows)."""
    lo, hi = bucket * BUCKET, (bucket + 1) * BUCKET
    if conn.dialect.name == "postgresql":
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cursor:
            cursor.execute(_BUCKET_PG, {"tag": _BUCKET_TAG, "lo": lo, "hi": hi})
            subjects, blind = cursor.fetchone()
            return str(subjects), str(blind)
    cursor = conn.connection.cursor()
    try:
        subjects = cursor.execute(_SUBJECTS_SQLITE, (lo, hi)).fetchone()[0] or ""
        blind = cursor.execute(_BLIND_SQLITE, (lo, hi)).fetchone()[0] or ""
    finally:
        cursor.close()
    return _part("subjects", subjects), _part("blind", blind)


def buckets_of(subject_ids: Iterable[int]) -> list[int]:
    return sorted({int(s) // BUCKET for s in subject_ids})


def buckets_of_range(lo: int, hi: int) -> list[int]:
    """Buckets of subject ids ``[lo, hi)``."""
    return list(range(lo // BUCKET, (hi - 1) // BUCKET + 1)) if hi > lo else []


def subject_buckets(conn: Connection, buckets: Iterable[int]) -> Pairs:
    """``[[bucket, subjects digest, blind-index digest], ...]`` from the database now."""
    return [[b, *bucket_digest(conn, b)] for b in sorted(set(buckets))]


def bucket_count(conn: Connection) -> int:
    """Buckets up to the highest subject id stored (0 without subjects)."""
    top = conn.exec_driver_sql("SELECT max(id) FROM vault_subjects").scalar()
    return 0 if top is None else int(top) // BUCKET + 1


# -- live masks ---------------------------------------------------------------------------------


def live_digest(rows: int, mask: bytes) -> str:
    """Digest of a batch's live bits (the mask is compared unpacked: its packing is free)."""
    bits = unpack_mask(mask, rows) if rows else np.zeros(0, dtype=bool)
    return _tagged("civicvault/live-mask/v1", int(rows),
                   hashlib.sha256(np.packbits(bits).tobytes()).hexdigest())


def all_live_digest(rows: int) -> str:
    return _tagged("civicvault/live-mask/v1", int(rows), hashlib.sha256(
        np.packbits(np.ones(rows, dtype=bool)).tobytes()).hexdigest())


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
