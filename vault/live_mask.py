"""Live masks: which rows of a stored batch are still current (one bit a row, zlib), and
the batch's row -> subject column (``row_subjects``, migration 0011)."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
from sqlalchemy import Connection, select, update

from vault.tables import T_BATCH

__all__ = ["clear_live_rows", "pack_mask", "pack_subjects", "unpack_mask", "unpack_subjects"]


def pack_mask(live: np.ndarray[Any, np.dtype[np.bool_]]) -> bytes:
    return zlib.compress(np.packbits(live).tobytes(), 1)


def unpack_mask(blob: bytes, rows: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    bits = np.unpackbits(np.frombuffer(zlib.decompress(blob), dtype=np.uint8))[:rows]
    return bits.astype(bool)


def pack_subjects(subjects: np.ndarray[Any, np.dtype[np.int64]]) -> bytes:
    """Each stored row's subject id, in row order: zlib over the little-endian int64
    deltas (the first against 0). A batch of new subjects is a run of +1: a few bytes."""
    ids = np.asarray(subjects, dtype=np.int64)
    return zlib.compress(np.diff(ids, prepend=np.int64(0)).astype("<i8").tobytes(), 1)


def unpack_subjects(blob: bytes, rows: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The subject id of each of the batch's ``rows`` stored rows (ValueError if the blob
    does not hold exactly that many)."""
    deltas = np.frombuffer(zlib.decompress(blob), dtype="<i8")
    if deltas.shape[0] != rows:
        raise ValueError("a batch's row_subjects does not hold one id per stored row")
    return np.cumsum(deltas, dtype=np.int64)


def clear_live_rows(conn: Connection, positions: dict[int, list[int]]) -> None:
    """Mark rows (batch id -> row positions) as no longer live."""
    for batch_id, rows in positions.items():
        b = conn.execute(select(T_BATCH.c.rows, T_BATCH.c.live_mask)
                         .where(T_BATCH.c.id == batch_id)).one()
        live = unpack_mask(b.live_mask, b.rows)
        live[rows] = False
        conn.execute(update(T_BATCH).where(T_BATCH.c.id == batch_id)
                     .values(live_mask=pack_mask(live)))
