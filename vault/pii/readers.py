"""Read tabular files into Polars in bounded chunks: CSV/TSV/pipe (delimiter sniffed),
Parquet, JSON Lines.

* Streaming: a file is read ``limits.chunk_bytes`` at a time (Parquet: about as
  many bytes of rows), so memory does not grow with the file. Every check below
  runs per chunk with *global* line and row numbers, so a problem on line
  20,000,001 is reported as such.
* Delimited text is read with every column as a string (``"027517"`` stays a
  ZIP, not a number); UTF-8 first, Latin-1 when the bytes are not UTF-8 (a BOM is
  dropped). A header row is required. Lines end in ``\\n`` or ``\\r\\n``; quoted
  fields may hold delimiters, quotes (doubled) and line breaks.
* Limits (:mod:`vault.pii.limits`) are checked before any expensive work: the
  header's length and column count from the first bytes read, then field and row
  lengths per chunk, with vectorised byte scans, before a chunk is parsed.
* Every problem is a one-line :class:`~vault.errors.BadInput` naming the file by
  the ``label`` its caller gives (default "the file": never its path nor its name,
  which a caller typed and which may name a person), a line, row or column
  *number* and what is wrong, never a cell value: missing file, empty file, binary
  junk, NUL bytes, ragged rows, unclosed quotes, empty, duplicate or over-long
  column names, limits, unreadable Parquet / JSON Lines, a JSON Lines schema that
  drifts from the first chunk's.
* :func:`scan_source` reads a whole file once (validating everything, so nothing
  of a bad file is stored) and returns its row count, encoding, where each batch
  starts, and an evenly spaced sample of at most ``SAMPLE_ROWS`` rows for the
  classifier. :func:`iter_batches` yields batch ``i`` = rows ``[i*n, (i+1)*n)``
  whatever the chunk size, optionally starting at a batch found by the scan.

The format comes from the extension (``.csv .tsv .tab .txt .psv .parquet .pq
.jsonl .ndjson``) or, failing that, from the content.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import polars as pl

from vault.errors import BadInput
from vault.pii.chunks import Chunk, Head, Kind
from vault.pii.limits import DEFAULT_LIMITS, ReaderLimits

__all__ = [
    "SAMPLE_ROWS",
    "Chunk",
    "SourceInfo",
    "iter_batches",
    "iter_chunks",
    "read_delimited",
    "read_table",
    "scan_source",
]

_DELIMITED = {".csv", ".tsv", ".tab", ".txt", ".psv", ".dat"}
_PARQUET = {".parquet", ".pq"}
_JSONL = {".jsonl", ".ndjson", ".json"}
_SNIFF_BYTES = 64 * 1024
SAMPLE_ROWS = 10_000  # rows kept for classification, evenly spaced over the whole file
DEFAULT_LABEL = "the file"  # how errors name a file read by path when no label is given

Source = str | Path | bytes


@dataclass(frozen=True)
class SourceInfo:
    """What one validating pass over a file learnt (names and counts, plus a sample)."""

    label: str
    kind: Kind
    encoding: str
    columns: list[str]
    rows: int
    sample: pl.DataFrame  # at most SAMPLE_ROWS rows, evenly spaced: for the classifier only
    batch_starts: list[tuple[int, int]]  # (byte offset, line) of each batch's first row


# --- public entry points ------------------------------------------------------------------


def read_table(path: Source, *, limits: ReaderLimits = DEFAULT_LIMITS,
               label: str | None = None) -> pl.DataFrame:
    """The whole file as one DataFrame (delimited text: all columns ``pl.String``).

    Holds the whole table in memory: for ingest use :func:`iter_batches`.
    """
    info = scan_source(path, limits=limits, label=label, need_rows=False)
    frames = [c.frame for c in iter_chunks(path, limits=limits, encoding=info.encoding,
                                           label=label)]
    return pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]


def read_delimited(data: bytes, *, label: str = "input",
                   limits: ReaderLimits = DEFAULT_LIMITS) -> pl.DataFrame:
    """Delimited text (bytes) -> DataFrame of strings; ``label`` names it in errors."""
    kind_limits = limits
    info = scan_source(data, limits=kind_limits, label=label, kind="delimited", need_rows=False)
    frames = [c.frame for c in iter_chunks(data, limits=kind_limits, encoding=info.encoding,
                                           label=label, kind="delimited")]
    return pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]


def scan_source(path: Source, *, batch_rows: int = 100_000,
                limits: ReaderLimits = DEFAULT_LIMITS, label: str | None = None,
                kind: Kind | None = None, on_bytes: Callable[[bytes], None] | None = None,
                need_rows: bool = True) -> SourceInfo:
    """Read the whole file once, checking everything; nothing of it is kept but a sample.

    ``on_bytes`` sees every byte of a text file in order (e.g. to hash it in the same
    pass). ``need_rows``: refuse a file with a header but no rows.
    """
    limits.check_batch_rows(batch_rows)
    encoding = "utf-8"

    def switch_encoding() -> None:
        nonlocal encoding
        encoding = "latin-1"

    sampler = _Sampler(SAMPLE_ROWS)
    starts: list[tuple[int, int]] = []
    rows = 0
    head: Head | None = None
    for chunk_head, chunk in _chunks(path, limits, None, label, kind, None, on_bytes,
                                     switch_encoding):
        head = chunk_head
        sampler.add(chunk)
        h = chunk.frame.height
        first_in = -(-chunk.first_row // batch_rows) * batch_rows  # first batch start in chunk
        for start in range(first_in, chunk.first_row + h, batch_rows):
            i = start - chunk.first_row
            starts.append((int(chunk.offsets[i]), int(chunk.lines[i])))
        rows += h
    assert head is not None  # _chunks yields the head at least once or raises
    if rows == 0 and need_rows:
        raise BadInput(f"{head.label}: has a header but no rows")
    return SourceInfo(head.label, head.kind, encoding, list(head.names), rows,
                      sampler.frame(head.names), starts)


def iter_chunks(path: Source, *, limits: ReaderLimits = DEFAULT_LIMITS,
                encoding: str | None = None, label: str | None = None, kind: Kind | None = None,
                start: tuple[int, int, int] | None = None) -> Iterator[Chunk]:
    """Chunks of at most about ``limits.chunk_bytes`` of the file, checked.

    ``encoding``: as found by :func:`scan_source` (``None``: UTF-8, Latin-1 from the
    first chunk that is not UTF-8). ``start``: ``(byte offset, line, row)`` of a row
    start found by a scan, to read from there.
    """
    for _, chunk in _chunks(path, limits, encoding, label, kind, start, None, None):
        if chunk.frame.height:
            yield chunk


def iter_batches(path: Source, batch_rows: int = 100_000, *,
                 limits: ReaderLimits = DEFAULT_LIMITS, encoding: str | None = None,
                 label: str | None = None,
                 start: tuple[int, int, int] | None = None) -> Iterator[pl.DataFrame]:
    """Consecutive frames of ``batch_rows`` rows (the last may be shorter): batch ``i``
    holds rows ``[i * batch_rows, (i + 1) * batch_rows)`` (0-based, header excluded)
    whatever the chunk size, so a batch index is stable. ``start`` as for
    :func:`iter_chunks` (a batch start, for resuming at a batch)."""
    limits.check_batch_rows(batch_rows)
    pending: list[pl.DataFrame] = []
    have = 0
    for chunk in iter_chunks(path, limits=limits, encoding=encoding, label=label, start=start):
        frame = chunk.frame
        while frame.height:
            take = min(batch_rows - have, frame.height)
            pending.append(frame.slice(0, take))
            frame = frame.slice(take)
            have += take
            if have == batch_rows:
                yield _joined(pending)
                pending, have = [], 0
    if have:
        yield _joined(pending)


def _joined(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical", rechunk=True)


# --- format dispatch ----------------------------------------------------------------------


def _open(path: Source, label: str | None) -> tuple[IO[bytes], str, str]:
    """(binary file object, label for errors, lower-case suffix)."""
    if isinstance(path, bytes):
        return io.BytesIO(path), label or "input", ""
    p = Path(path)
    name = label or DEFAULT_LABEL  # never p.name: the caller typed it
    if not p.is_file():
        raise BadInput(f"{name}: no such file")
    return p.open("rb"), name, p.suffix.lower()


def _kind_of(fh: IO[bytes], suffix: str) -> Kind:
    if suffix in _PARQUET:
        return "parquet"
    if suffix in _JSONL:
        return "jsonl"
    if suffix in _DELIMITED:
        return "delimited"
    first = fh.read(_SNIFF_BYTES)
    fh.seek(0)
    if first[:4] == b"PAR1":
        return "parquet"
    return "jsonl" if first.lstrip()[:1] == b"{" else "delimited"


def _chunks(path: Source, limits: ReaderLimits, encoding: str | None, label: str | None,
            kind: Kind | None, start: tuple[int, int, int] | None,
            on_bytes: Callable[[bytes], None] | None,
            on_latin1: Callable[[], None] | None) -> Iterator[tuple[Head, Chunk]]:
    """(head, chunk) pairs; the head alone (with an empty chunk) for a file without rows."""
    fh, name, suffix = _open(path, label)
    with fh:
        k = kind or _kind_of(fh, suffix)
        if k == "parquet":
            from vault.pii.columnar import parquet_chunks

            if on_bytes is not None:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    on_bytes(block)
                fh.seek(0)
            for names, chunk in parquet_chunks(fh, name, limits, start):
                yield Head("parquet", name, names=names), chunk
            return
        from vault.pii.textchunks import text_chunks

        yield from text_chunks(fh, k, name, limits, encoding, start, on_bytes, on_latin1)


class _Sampler:
    """Rows ``g`` with ``g % stride == 0``, the stride doubling whenever more than
    ``cap`` rows are kept: an evenly spaced sample of the whole file in bounded
    memory, the same rows whatever the chunk size."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.stride = 1
        self.parts: list[tuple[int, pl.DataFrame]] = []  # (global row of part row 0, rows)
        self.kept = 0

    def add(self, chunk: Chunk) -> None:
        frame, first = chunk.frame, chunk.first_row
        if not frame.height:
            return
        offset = (-first) % self.stride
        if offset < frame.height:
            part = frame.gather_every(self.stride, offset)
            self.parts.append((first + offset, part))
            self.kept += part.height
        while self.kept > self.cap:
            self.stride *= 2
            parts, self.parts, self.kept = self.parts, [], 0
            for g0, part in parts:  # g0 is a multiple of stride / 2
                keep = part.gather_every(2, 0 if g0 % self.stride == 0 else 1)
                if keep.height:
                    self.parts.append((g0 if g0 % self.stride == 0 else g0 + self.stride // 2,
                                       keep))
                    self.kept += keep.height

    def frame(self, names: tuple[str, ...]) -> pl.DataFrame:
        if not self.parts:
            return pl.DataFrame({n: pl.Series([], dtype=pl.String) for n in names})
        return pl.concat([p for _, p in self.parts], how="vertical")
