"""Limits on every file the vault reads, checked before any expensive work.

A hostile or broken upload must cost little and say clearly why it was refused:
a 10,000-column CSV, a 100 MB single field or a megabyte-long header is refused
from the first bytes read, with the limit named, never after a parse of the
whole file or a classification of columns x rows. Statewide voter files (70-100
columns) and national vendor files (several hundred columns) fit well inside.

``chunk_bytes`` is the memory setting of streaming reads: the readers hold one
chunk of the source at a time (a few times ``chunk_bytes`` in memory once
parsed), whatever the file's size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from vault.errors import BadInput

__all__ = ["CHUNK_ENV", "DEFAULT_LIMITS", "ReaderLimits", "limits_from_env"]

CHUNK_ENV = "CIVICVAULT_READ_CHUNK_MB"


@dataclass(frozen=True)
class ReaderLimits:
    """What one input file may hold. Every reader checks every field."""

    max_columns: int = 2_048  # columns per file
    max_field_bytes: int = 1 << 20  # bytes in one cell (1 MiB)
    max_row_bytes: int = 8 << 20  # bytes in one row / JSON line (8 MiB)
    max_header_bytes: int = 256 << 10  # bytes in the header row (256 KiB)
    max_name_chars: int = 128  # characters in one column name
    max_batch_rows: int = 1_000_000  # rows per ingest batch
    chunk_bytes: int = 32 << 20  # bytes read per streaming chunk (the memory setting)

    def __post_init__(self) -> None:
        if self.chunk_bytes < 1:
            raise BadInput("the read chunk must be at least 1 byte")

    def check_batch_rows(self, batch_rows: int) -> None:
        if batch_rows < 1:
            raise BadInput("batch size must be at least 1 row")
        if batch_rows > self.max_batch_rows:
            raise BadInput(f"batch size is over the limit of {self.max_batch_rows:,} rows "
                           "per batch")

    def check_names(self, names: list[str], label: str) -> None:
        """Column count and name lengths (the names themselves are never echoed)."""
        if len(names) > self.max_columns:
            raise BadInput(f"{label}: {len(names):,} columns, over the limit of "
                           f"{self.max_columns:,} columns per file")
        for i, name in enumerate(names, start=1):
            if len(name) > self.max_name_chars:
                raise BadInput(f"{label}: column {i} has a name of {len(name):,} characters, "
                               f"over the limit of {self.max_name_chars} characters")


DEFAULT_LIMITS = ReaderLimits()


def limits_from_env() -> ReaderLimits:
    """Defaults, with the chunk size from ``CIVICVAULT_READ_CHUNK_MB`` when set."""
    raw = os.environ.get(CHUNK_ENV)
    if not raw:
        return DEFAULT_LIMITS
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 4096:
        raise BadInput(f"{CHUNK_ENV} must be a whole number of MiB from 1 to 4096")
    return replace(DEFAULT_LIMITS, chunk_bytes=int(raw) << 20)
