"""The read path of DP releases: decrypt attribute columns of live rows, column-wise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from sqlalchemy import Connection, select

from vault import crypto
from vault.errors import BadInput
from vault.keyring import Keyring
from vault.live_mask import unpack_mask
from vault.tables import T_BATCH, T_COLUMN, dataset_id

__all__ = ["read_attributes"]


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
