"""Parquet in bounded chunks: the footer's schema is checked against the limits before
any row is read; rows come ``iter_batches`` at a time, sized from the row groups'
byte counts so a chunk holds about ``chunk_bytes`` of data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import polars as pl

from vault.errors import BadInput
from vault.pii.chunks import Chunk, check_field_bytes, check_header
from vault.pii.limits import ReaderLimits


def parquet_chunks(fh: IO[bytes], label: str, limits: ReaderLimits,
                   start: tuple[int, int, int] | None
                   ) -> Iterator[tuple[tuple[str, ...], Chunk]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(fh)
        meta = pf.metadata
        names = list(pf.schema_arrow.names)
    except Exception as exc:  # arrow raises many types; never echo their text
        raise BadInput(f"{label}: not a readable Parquet file ({type(exc).__name__})") from None
    limits.check_names(names, label)  # from the footer: before any row is read
    if not names:
        raise BadInput(f"{label}: no columns")
    cols = tuple(check_header(names, label, limits))
    rows_total = int(meta.num_rows)
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    per_row = max(1, size // max(1, rows_total))
    chunk_rows = max(1, min(limits.max_batch_rows, limits.chunk_bytes // per_row))
    first = 0 if start is None else start[2]
    row = 0
    yielded = False
    try:
        batches: Iterator[Any] = pf.iter_batches(batch_size=chunk_rows)
        for batch in batches:
            n = batch.num_rows
            if row + n <= first:
                row += n
                continue
            frame = pl.DataFrame(pl.from_arrow(batch))
            if row < first:
                frame = frame.slice(first - row)
                row = first
            where = f"rows {row + 1:,}-{row + frame.height:,}"
            check_field_bytes(frame, label, limits, where)
            idx = np.arange(row, row + frame.height, dtype=np.int64)
            yield cols, Chunk(frame.rename(dict(zip(frame.columns, cols, strict=True))), row,
                              idx, idx)
            yielded = True
            row += frame.height
    except BadInput:
        raise
    except Exception as exc:
        raise BadInput(f"{label}: not a readable Parquet file ({type(exc).__name__})") from None
    if not yielded:
        empty = pl.DataFrame(schema=pl.Schema(pl.from_arrow(pf.schema_arrow.empty_table())
                                              .schema))  # type: ignore[union-attr]
        yield cols, Chunk(empty, row, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
