"""The read path of DP releases: decrypt attribute columns of live rows, column-wise."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import polars as pl
from sqlalchemy import Connection, select

from vault import crypto
from vault.errors import BadInput
from vault.keyring import Keyring
from vault.live_mask import unpack_mask
from vault.tables import T_BATCH, T_COLUMN, dataset_id

__all__ = ["iter_attributes", "read_attributes"]


def iter_attributes(
    conn: Connection, keyring: Keyring, dataset: str, columns: Sequence[str]
) -> Iterator[pl.DataFrame]:
    """The attribute ``columns`` of the live rows of ``dataset``, one frame per stored batch,
    in batch order (a batch with no live row gives an empty frame).

    Only the asked-for columns' blobs are read, streamed in batch order: one batch's
    ciphertext and plaintext are held at a time, never the dataset's. Erased and
    superseded rows are never returned. Cost: one AES-GCM call per (batch, column).
    """
    ds_id = dataset_id(conn, dataset)
    batches = conn.execute(select(T_BATCH.c.id, T_BATCH.c.rows, T_BATCH.c.live_mask)
                           .where(T_BATCH.c.dataset_id == ds_id).order_by(T_BATCH.c.id)).all()
    # a few batches' blobs fetched at a time (a server-side cursor on PostgreSQL)
    per_fetch = max(8, 2 * len(columns))
    blobs = iter(conn.execution_options(stream_results=True, yield_per=per_fetch).execute(
        select(T_COLUMN.c.batch_id, T_COLUMN.c.column, T_COLUMN.c.key_id, T_COLUMN.c.sealed)
        .join(T_BATCH, T_BATCH.c.id == T_COLUMN.c.batch_id)
        .where(T_BATCH.c.dataset_id == ds_id, T_COLUMN.c.column.in_(list(columns)))
        .order_by(T_COLUMN.c.batch_id)))
    ahead = next(blobs, None)
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
        del cols
        frame = pl.DataFrame(series)
        del series
        live = unpack_mask(bytes(b.live_mask), int(b.rows))
        yield frame.filter(pl.Series(live)) if not live.all() else frame


def read_attributes(
    conn: Connection, keyring: Keyring, dataset: str, columns: Sequence[str]
) -> pl.DataFrame:
    """Decrypt the attribute ``columns`` of every live row of ``dataset`` into one frame
    (:func:`iter_attributes`, concatenated)."""
    frames = list(iter_attributes(conn, keyring, dataset, columns))
    if not frames:
        return pl.DataFrame({c: pl.Series([], dtype=pl.Utf8) for c in columns})
    return pl.concat(frames, how="vertical_relaxed")
