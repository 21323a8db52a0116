"""What the file readers share: a :class:`Chunk` of rows, a file's :class:`Head`, and the
checks every format runs (header names, field sizes, binary junk, the delimiter sniff).

:mod:`vault.pii.readers` (the entry points and the format dispatch) imports the format
modules, :mod:`vault.pii.textchunks` (delimited text and JSON Lines) and
:mod:`vault.pii.columnar` (Parquet); all three import these shared pieces from here,
and this module imports none of them, so the imports form no cycle.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from vault.errors import BadInput
from vault.pii.limits import ReaderLimits

__all__ = ["Chunk", "Head", "Kind", "check_field_bytes", "check_header", "looks_binary",
           "sniff_delimiter"]

Kind = Literal["delimited", "jsonl", "parquet"]
_CANDIDATE_DELIMITERS = ",\t;|"


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of a file: ``frame`` row 0 is global row ``first_row`` (0-based,
    header and blank lines excluded). ``offsets``/``lines``: byte offset and 1-based
    line of each row's start (text formats; for Parquet both are the row index)."""

    frame: pl.DataFrame
    first_row: int
    offsets: np.ndarray[Any, np.dtype[np.int64]]
    lines: np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class Head:
    """What the start of a file told: its format, label, delimiter, column names and
    where the first data row starts."""

    kind: Kind
    label: str
    delimiter: str = ","
    names: tuple[str, ...] = ()
    data_offset: int = 0  # where the first data row starts (after BOM and header)
    encoding: str = "utf-8"


def check_header(names: list[str], label: str, limits: ReaderLimits) -> list[str]:
    """Stripped column names; refuses empty, duplicate, too many or too long names."""
    limits.check_names(names, label)
    stripped = [n.strip() for n in names]
    for i, name in enumerate(stripped, start=1):
        if not name:
            raise BadInput(f"{label}: column {i} has an empty name (a header row is required)")
    seen: dict[str, int] = {}
    for i, name in enumerate(stripped, start=1):
        if name in seen:
            raise BadInput(f"{label}: columns {seen[name]} and {i} have the same name")
        seen[name] = i
    return stripped


def looks_binary(text: str) -> bool:
    if not text:
        return False
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\r\n\f")
    return controls / len(text) > 0.01


def sniff_delimiter(head: str) -> str:
    lines = [line for line in head.splitlines()[:50] if line.strip()]
    sample = "\n".join(lines)
    try:
        return csv.Sniffer().sniff(sample, delimiters=_CANDIDATE_DELIMITERS).delimiter
    except csv.Error:
        pass
    first = lines[0] if lines else ""
    counts = {d: first.count(d) for d in _CANDIDATE_DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def check_field_bytes(frame: pl.DataFrame, label: str, limits: ReaderLimits,
                      where: str) -> None:
    """Refuse a string/binary cell longer than ``limits.max_field_bytes``."""
    for i, (name, dtype) in enumerate(frame.schema.items(), start=1):
        col = frame.get_column(name)
        if dtype == pl.String:
            longest = col.str.len_bytes().max()
        elif dtype == pl.Binary:
            longest = col.bin.size().max()
        else:
            continue
        if longest is not None and int(longest) > limits.max_field_bytes:  # type: ignore[arg-type]
            raise BadInput(f"{label}: {where}: column {i} has a field over the limit of "
                           f"{limits.max_field_bytes:,} bytes per field")
