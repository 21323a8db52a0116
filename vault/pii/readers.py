"""Read tabular files into Polars: CSV/TSV (delimiter sniffed), Parquet, JSON Lines.

* Delimited text is read with every column as a string (``"027517"`` stays a
  ZIP, not a number); UTF-8 first, Latin-1 when the bytes are not UTF-8 (a BOM is
  dropped). A header row is required.
* Every problem is a one-line :class:`~vault.errors.BadInput` naming the file
  (its base name), a row or column *number* and what is wrong, never a cell value:
  missing file, empty file, binary junk, ragged rows, empty or duplicate column
  names, unreadable Parquet / JSON Lines.
* Batches for ingest: :func:`iter_batches` yields consecutive row slices of at
  most ``batch_rows`` rows (zero-copy slices of the table read once).

The format comes from the extension (``.csv .tsv .tab .txt .psv .parquet .pq
.jsonl .ndjson``) or, failing that, from the content.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from vault.errors import BadInput

__all__ = ["iter_batches", "read_delimited", "read_table"]

_DELIMITED = {".csv", ".tsv", ".tab", ".txt", ".psv", ".dat"}
_PARQUET = {".parquet", ".pq"}
_JSONL = {".jsonl", ".ndjson", ".json"}
_CANDIDATE_DELIMITERS = ",\t;|"
_SNIFF_BYTES = 64 * 1024


def read_table(path: str | Path) -> pl.DataFrame:
    """The whole file as a DataFrame (delimited text: all columns ``pl.String``)."""
    p = Path(path)
    label = p.name
    if not p.is_file():
        raise BadInput(f"{label}: no such file")
    data = p.read_bytes()
    if not data.strip():
        raise BadInput(f"{label}: file is empty")
    suffix = p.suffix.lower()
    if suffix in _PARQUET or (suffix not in _DELIMITED | _JSONL and data[:4] == b"PAR1"):
        return _checked(_read_parquet(data, label), label)
    if suffix in _JSONL or (suffix not in _DELIMITED and data.lstrip()[:1] == b"{"):
        return _checked(_read_jsonl(data, label), label)
    return read_delimited(data, label=label)


def iter_batches(path: str | Path, batch_rows: int = 100_000) -> Iterator[pl.DataFrame]:
    """Consecutive slices of at most ``batch_rows`` rows; batch ``i`` starts at row
    ``i * batch_rows`` (0-based, header excluded), so a batch index is stable."""
    if batch_rows < 1:
        raise BadInput("batch size must be at least 1 row")
    yield from read_table(path).iter_slices(batch_rows)


def read_delimited(data: bytes, *, label: str = "input") -> pl.DataFrame:
    """Delimited text (bytes) -> DataFrame of strings; ``label`` names it in errors."""
    if not data.strip():
        raise BadInput(f"{label}: file is empty")
    if b"\x00" in data[:_SNIFF_BYTES]:
        raise BadInput(f"{label}: binary content, not a delimited text file")
    text = _decode(data)
    if _looks_binary(text[:_SNIFF_BYTES]):
        raise BadInput(f"{label}: binary content, not a delimited text file")
    delimiter = _sniff_delimiter(text[:_SNIFF_BYTES])
    header, blank_lines = _check_rows(text, delimiter, label)
    try:
        df = pl.read_csv(
            io.BytesIO(text.encode("utf-8")),
            separator=delimiter,
            has_header=True,
            infer_schema=False,
            quote_char='"',
            missing_utf8_is_empty_string=False,
        )
    except (pl.exceptions.PolarsError, ValueError) as exc:  # never echo the message: values
        raise BadInput(f"{label}: cannot parse as delimited text ({type(exc).__name__})") from None
    if df.width != len(header):
        raise BadInput(f"{label}: header has {len(header)} columns, parser found {df.width}")
    if blank_lines:  # Polars reads a blank line as a row of nulls
        df = df.filter(~pl.all_horizontal(pl.all().is_null()))
    return df.rename(dict(zip(df.columns, header, strict=True)))


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _looks_binary(text: str) -> bool:
    if not text:
        return False
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\r\n\f")
    return controls / len(text) > 0.01


def _sniff_delimiter(head: str) -> str:
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


def _check_header(names: list[str], label: str) -> list[str]:
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


def _check_rows(text: str, delimiter: str, label: str) -> tuple[list[str], int]:
    """Header names and the number of blank lines; raises on ragged rows."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    try:
        header = next(reader)
    except StopIteration:
        raise BadInput(f"{label}: file is empty") from None
    except csv.Error:
        raise BadInput(f"{label}: line 1: malformed header") from None
    names = _check_header(header, label)
    width = len(names)
    blank = 0
    try:
        for row in reader:
            if not row:
                blank += 1
            elif len(row) != width:
                raise BadInput(
                    f"{label}: line {reader.line_num}: {len(row)} fields, header has {width}"
                )
    except csv.Error:
        raise BadInput(f"{label}: line {reader.line_num}: malformed quoting") from None
    return names, blank


def _read_parquet(data: bytes, label: str) -> pl.DataFrame:
    try:
        return pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # polars/arrow raise many types; never echo their text
        raise BadInput(f"{label}: not a readable Parquet file ({type(exc).__name__})") from None


def _read_jsonl(data: bytes, label: str) -> pl.DataFrame:
    text = _decode(data)
    try:
        return pl.read_ndjson(io.BytesIO(text.encode("utf-8")), infer_schema_length=None)
    except Exception as exc:
        raise BadInput(f"{label}: not readable JSON Lines ({type(exc).__name__})") from None


def _checked(df: pl.DataFrame, label: str) -> pl.DataFrame:
    if df.width == 0:
        raise BadInput(f"{label}: no columns")
    _check_header(list(df.columns), label)
    return df
