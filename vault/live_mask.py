"""Live masks: which rows of a stored batch are still current (one bit a row, zlib)."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
from sqlalchemy import Connection, select, update

from vault.tables import T_BATCH

__all__ = ["clear_live_rows", "pack_mask", "unpack_mask"]


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
