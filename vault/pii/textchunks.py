"""Delimited text and JSON Lines in bounded chunks, checked with vectorised byte scans.

A chunk is cut after the last record separator in about ``chunk_bytes`` of input:
a line break outside quotes (delimited: quote parity from a running count of
``"`` bytes, which RFC 4180 quoting keeps even between records) or any line break
(JSON Lines). Before a chunk is parsed, one pass over its bytes finds every record
and field boundary, so ragged rows, over-long fields and rows, and NUL bytes are
refused with their global line and row numbers at a cost linear in the bytes and
independent of how many columns the header claims. Polars then parses the chunk
(all strings), and its row count must agree with the scan's, or the chunk's
quoting is malformed.

For delimited text that pass is ``vault/_textscan.c`` (one loop, without the GIL);
without the C module (an install without a compiler) NumPy finds the same numbers in a
dozen whole-chunk passes, about 2.4x slower for the scan of a wide file (issue 17).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import IO, Any

import numpy as np
import orjson
import polars as pl

from vault.errors import BadInput
from vault.pii.chunks import (
    Chunk,
    Head,
    Kind,
    check_field_bytes,
    check_header,
    looks_binary,
    sniff_delimiter,
)
from vault.pii.limits import ReaderLimits

try:
    from vault import _textscan
except ImportError:  # pragma: no cover - no C compiler at install
    _textscan = None  # type: ignore[assignment]

# vault/_textscan.c finds a delimited chunk's records and fields in one pass without the
# GIL; without it (an install without a compiler) NumPy finds the same, more slowly
NATIVE = _textscan is not None

_BOM = b"\xef\xbb\xbf"
_SNIFF_BYTES = 64 * 1024
_NL, _CR, _QUOTE = 10, 13, 34
I64 = np.ndarray[Any, np.dtype[np.int64]]


class _Decoder:
    """UTF-8, or Latin-1 for the whole file once any chunk is not UTF-8 (scan decides)."""

    def __init__(self, encoding: str | None, on_latin1: Callable[[], None] | None) -> None:
        self.encoding = encoding or "utf-8"
        self.fixed = encoding is not None
        self.on_latin1 = on_latin1

    def to_utf8(self, data: bytes) -> bytes:
        if self.encoding == "utf-8":
            try:
                data.decode("utf-8")
                return data
            except UnicodeDecodeError:
                if self.fixed:
                    raise
                self.encoding = "latin-1"
                if self.on_latin1 is not None:
                    self.on_latin1()
        return data.decode("latin-1").encode("utf-8")


def text_chunks(fh: IO[bytes], kind: Kind, label: str, limits: ReaderLimits,
                encoding: str | None, start: tuple[int, int, int] | None,
                on_bytes: Callable[[bytes], None] | None,
                on_latin1: Callable[[], None] | None) -> Iterator[tuple[Head, Chunk]]:
    decoder = _Decoder(encoding, on_latin1)
    first = fh.read(max(limits.max_header_bytes, _SNIFF_BYTES) + 1)
    if on_bytes is not None and start is None:
        on_bytes(first)
    eof = len(first) <= max(limits.max_header_bytes, _SNIFF_BYTES)
    body = first[3:] if first.startswith(_BOM) else first
    bom = len(first) - len(body)
    if not body.strip() and eof:
        raise BadInput(f"{label}: file is empty")
    if b"\x00" in body[:_SNIFF_BYTES]:
        raise BadInput(f"{label}: binary content, not a {_what(kind)} file")
    head_text = body[:_SNIFF_BYTES].decode("utf-8", errors="replace")
    if looks_binary(head_text):
        raise BadInput(f"{label}: binary content, not a {_what(kind)} file")
    if kind == "delimited":
        head, header_end = _delimited_head(body, eof, label, limits, head_text, decoder)
        data_offset = bom + header_end
        line = 1 + body[:header_end].count(b"\n")
    else:
        head = Head("jsonl", label)
        data_offset, line = bom, 1
        _check_first_object(body, eof, label, limits)
    row = 0
    if start is not None:
        data_offset, line, row = start
        fh.seek(data_offset)
        carry = b""
        eof = False
    else:
        carry = first[data_offset:]
    scanner = (_DelimitedParser(head, limits, decoder) if kind == "delimited"
               else _JsonParser(label, limits, decoder))
    yielded = False
    for part, offset, part_line in _records(fh, carry, data_offset, line, eof, kind, label,
                                            limits, on_bytes if start is None else None):
        chunk = scanner.parse(part, offset, part_line, row)
        row += chunk.frame.height
        if chunk.frame.height:
            yielded = True
            yield _head_of(head, scanner), chunk
    if not yielded:
        yield _head_of(head, scanner), Chunk(scanner.empty(), row, _i64([]), _i64([]))


def _what(kind: Kind) -> str:
    return "delimited text" if kind == "delimited" else "JSON Lines"


def _head_of(head: Head, scanner: _DelimitedParser | _JsonParser) -> Head:
    if isinstance(scanner, _JsonParser):
        return Head("jsonl", head.label, names=tuple(scanner.names or ()),
                     encoding=scanner.decoder.encoding)
    return Head(head.kind, head.label, head.delimiter, head.names, head.data_offset,
                 scanner.decoder.encoding)


def _i64(values: list[int]) -> I64:
    return np.asarray(values, dtype=np.int64)


def _outside_quotes(arr: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, Any]:
    """True where a byte is outside a quoted field (parity of the quotes so far)."""
    parity: np.ndarray[Any, Any] = (np.cumsum(arr == _QUOTE, dtype=np.uint8) & 1) == 0
    return parity


def _delimited_head(body: bytes, eof: bool, label: str, limits: ReaderLimits,
                    head_text: str, decoder: _Decoder) -> tuple[Head, int]:
    """The header (names, delimiter) and where the data starts in ``body``."""
    delimiter = sniff_delimiter(head_text)
    arr = np.frombuffer(body, dtype=np.uint8)
    ends = np.flatnonzero((arr == _NL) & _outside_quotes(arr))
    if len(ends):
        header_end = int(ends[0]) + 1
    elif eof:
        header_end = len(body)
    else:
        header_end = len(body) + 1
    if header_end > limits.max_header_bytes:
        raise BadInput(f"{label}: line 1: the header row is over the limit of "
                       f"{limits.max_header_bytes:,} bytes")
    raw = body[:header_end]
    try:
        text = decoder.to_utf8(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{label}: line 1: the header is not {decoder.encoding}") from None
    if not text.strip():
        raise BadInput(f"{label}: line 1: the header row is empty (a header row is required)")
    # a quick count first: a 10,000-column header is refused before csv parses it
    if text.count(delimiter) + 1 > limits.max_columns * 2 + 1:
        raise BadInput(f"{label}: {text.count(delimiter) + 1:,} columns, over the limit of "
                       f"{limits.max_columns:,} columns per file")
    try:
        names = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter,
                                strict=False))
    except (csv.Error, StopIteration):
        raise BadInput(f"{label}: line 1: malformed header") from None
    names = check_header(names, label, limits)
    return Head("delimited", label, delimiter, tuple(names), header_end), header_end


def _check_first_object(body: bytes, eof: bool, label: str, limits: ReaderLimits) -> None:
    """The first JSON line must be an object with at most ``max_columns`` keys."""
    stripped = body.lstrip()
    end = stripped.find(b"\n")
    if end < 0 and not eof:
        return  # a long first line: the row-length check refuses it while chunking
    line = stripped if end < 0 else stripped[:end]
    try:
        first = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise BadInput(f"{label}: line 1: not readable JSON Lines") from None
    if not isinstance(first, dict):
        raise BadInput(f"{label}: line 1: not a JSON object")
    limits.check_names([str(k) for k in first], label)


def _records(fh: IO[bytes], carry: bytes, offset: int, line: int, eof: bool, kind: Kind,
             label: str, limits: ReaderLimits,
             on_bytes: Callable[[bytes], None] | None) -> Iterator[tuple[bytes, int, int]]:
    """(bytes of whole records, file offset, line of its first byte): the records that
    end within ``chunk_bytes`` (at least one), cut at a record separator. A record
    that does not end within ``max_row_bytes`` is refused without reading further."""
    buf, pos = carry, 0  # buf[pos:] is unprocessed and starts at a record boundary

    def more() -> bool:
        nonlocal buf, pos, eof
        block = b"" if eof else fh.read(limits.chunk_bytes)
        if not block:
            eof = True
            return False
        if on_bytes is not None:
            on_bytes(block)
        buf = buf[pos:] + block
        pos = 0
        return True

    while True:
        while not eof and len(buf) - pos < limits.chunk_bytes and more():
            pass
        if eof and len(buf) > pos and not buf.endswith(b"\n"):
            buf += b"\n"
        if len(buf) <= pos:
            return
        # a record ends at a line break: none within max_row_bytes is a refusal, found by
        # memchr before any vectorised scan (a 100 MB single field costs milliseconds)
        if buf.find(b"\n", pos, pos + limits.max_row_bytes + 1) < 0 \
                and len(buf) - pos > limits.max_row_bytes:
            raise BadInput(f"{label}: line {line}: a row over the limit of "
                           f"{limits.max_row_bytes:,} bytes")
        window = limits.chunk_bytes
        while True:
            size = min(window, len(buf) - pos)
            cut, breaks = _last_end(buf, pos, size, kind)
            if cut:
                break
            if size > limits.max_row_bytes:
                raise BadInput(f"{label}: line {line}: a row over the limit of "
                               f"{limits.max_row_bytes:,} bytes")
            if size < len(buf) - pos:
                window *= 2
            elif not more():
                if not buf.endswith(b"\n"):
                    buf += b"\n"
                    continue
                raise BadInput(f"{label}: line {line}: a quoted field is never closed")
        part = buf[pos:pos + cut]
        yield part, offset, line
        offset += cut
        line += breaks
        pos += cut


def _last_end(buf: bytes, pos: int, size: int, kind: Kind) -> tuple[int, int]:
    """(cut, line breaks before it): ``cut`` is 1 + the offset of the last record
    separator in ``buf[pos:pos + size]`` (0: none there)."""
    if kind != "delimited":  # JSON Lines: every line break ends a record
        last = buf.rfind(b"\n", pos, pos + size)
        return (0, 0) if last < 0 else (last - pos + 1, buf.count(b"\n", pos, last + 1))
    if _textscan is not None and NATIVE:
        cut, breaks = _textscan.last_end(buf, pos, size)
        return int(cut), int(breaks)
    arr = np.frombuffer(buf, dtype=np.uint8, count=size, offset=pos)
    is_nl = arr == _NL
    seps = np.flatnonzero(is_nl & _outside_quotes(arr))
    if not len(seps):
        return 0, 0
    cut = int(seps[-1]) + 1
    return cut, int(np.count_nonzero(is_nl[:cut]))


class _Records:
    """Record geometry of one chunk: starts, ends (at the ``\\n``), blank flags, lines;
    for a delimited chunk read with ``delimiter``, also each record's field count and the
    first bound closing a field over ``max_field`` bytes (``long_at``, -1: none)."""

    def __init__(self, part: bytes, kind: Kind, line: int, delimiter: int | None = None,
                 max_field: int = 0) -> None:
        arr = np.frombuffer(part, dtype=np.uint8)
        self.arr = arr
        self.fields: I64 | None = None
        self.long_at = -1
        if kind == "delimited" and delimiter is not None and _native_for(delimiter):
            ends, before, fields, breaks, self.long_at = _textscan.geometry(
                part, delimiter, max_field)
            self.outside = None
            self.ends = np.frombuffer(ends, dtype=np.int64)
            self.fields = np.frombuffer(fields, dtype=np.int64)
            self.starts = np.concatenate(([0], self.ends[:-1] + 1)).astype(np.int64)
            lines_before, breaks = np.frombuffer(before, dtype=np.int64), int(breaks)
        else:
            is_nl = arr == _NL
            self.outside = _outside_quotes(arr) if kind == "delimited" else None
            sep = is_nl & self.outside if self.outside is not None else is_nl
            self.ends = np.flatnonzero(sep).astype(np.int64)
            self.starts = np.concatenate(([0], self.ends[:-1] + 1)).astype(np.int64)
            all_nl = np.flatnonzero(is_nl)
            lines_before, breaks = np.searchsorted(all_nl, self.starts), len(all_nl)
        length = self.ends - self.starts
        cr = np.zeros(len(self.ends), dtype=bool)
        nonempty = length > 0
        cr[nonempty] = arr[self.ends[nonempty] - 1] == _CR
        self.length = length - cr
        self.blank = self.length == 0
        self.lines = lines_before.astype(np.int64) + line
        self.line_end = line + breaks - 1

    def where(self, i: int, first_row: int) -> str:
        """``line L (row R)`` of record ``i`` (global numbers, 1-based row)."""
        row = first_row + int(np.count_nonzero(~self.blank[:i])) + 1
        return f"line {int(self.lines[i])} (row {row:,})"

    def check_common(self, part: bytes, label: str, limits: ReaderLimits,
                     first_row: int) -> None:
        too_long = np.flatnonzero(self.length > limits.max_row_bytes)
        if len(too_long):
            i = int(too_long[0])
            raise BadInput(f"{label}: {self.where(i, first_row)}: a row over the limit of "
                           f"{limits.max_row_bytes:,} bytes")
        nul = part.find(b"\x00")
        if nul >= 0:
            i = int(np.searchsorted(self.ends, nul))
            raise BadInput(f"{label}: {self.where(i, first_row)}: a NUL byte (binary content)")


def _native_for(delimiter: int) -> bool:
    """Whether vault/_textscan.c reads this chunk (not for a quote or line break as the
    delimiter: the sniffer never picks them, and the C loop refuses them)."""
    return NATIVE and _textscan is not None and delimiter not in (_QUOTE, _NL)


def _fields_numpy(rec: _Records, delim: int, max_field: int) -> tuple[I64, int]:
    """(each record's field count, the first bound closing a field over ``max_field``
    bytes or -1): what vault/_textscan.c's geometry gives, in NumPy."""
    assert rec.outside is not None
    arr = rec.arr
    is_delim = (arr == delim) & rec.outside
    dpos = np.flatnonzero(is_delim)
    fields = np.searchsorted(dpos, rec.ends) - np.searchsorted(dpos, rec.starts) + 1
    bounds = np.flatnonzero(is_delim | (arr == _NL) & rec.outside)
    if len(bounds):
        over = np.flatnonzero(np.diff(bounds, prepend=-1) - 1 > max_field)
        if len(over):
            return fields, int(bounds[int(over[0])])
    return fields, -1


class _DelimitedParser:
    def __init__(self, head: Head, limits: ReaderLimits, decoder: _Decoder) -> None:
        self.head = head
        self.limits = limits
        self.decoder = decoder
        self.width = len(head.names)
        self.schema = {n: pl.String for n in head.names}

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.schema)

    def parse(self, part: bytes, offset: int, line: int, first_row: int) -> Chunk:
        label, limits, delim = self.head.label, self.limits, ord(self.head.delimiter)
        rec = _Records(part, "delimited", line, delim, limits.max_field_bytes)
        rec.check_common(part, label, limits, first_row)
        if rec.fields is not None:
            fields, long_at = rec.fields, rec.long_at
        else:
            fields, long_at = _fields_numpy(rec, delim, limits.max_field_bytes)
        ragged = np.flatnonzero(~rec.blank & (fields != self.width))
        if len(ragged):
            i = int(ragged[0])
            raise BadInput(f"{label}: {rec.where(i, first_row)}: {int(fields[i])} fields, "
                           f"header has {self.width}")
        if long_at >= 0:
            i = int(np.searchsorted(rec.ends, long_at))
            raise BadInput(f"{label}: {rec.where(i, first_row)}: a field over the limit "
                           f"of {limits.max_field_bytes:,} bytes per field")
        try:
            data = self.decoder.to_utf8(part)
        except UnicodeDecodeError:
            raise BadInput(f"{label}: lines {line}-{rec.line_end}: not "
                           f"{self.decoder.encoding} like the rest of the file") from None
        try:
            frame = pl.read_csv(data, has_header=False, schema=self.schema,
                                separator=self.head.delimiter, quote_char='"',
                                missing_utf8_is_empty_string=False,
                                truncate_ragged_lines=False, rechunk=False)
        except Exception as exc:  # never echo the message: it quotes values
            raise BadInput(f"{label}: lines {line}-{rec.line_end}: cannot parse as delimited "
                           f"text ({type(exc).__name__})") from None
        if frame.height != len(rec.ends):
            raise BadInput(f"{label}: lines {line}-{rec.line_end}: malformed quoting")
        keep = ~rec.blank
        if not keep.all():
            frame = frame.filter(pl.Series(keep))
        return Chunk(frame, first_row, rec.starts[keep] + offset, rec.lines[keep])


class _JsonParser:
    def __init__(self, label: str, limits: ReaderLimits, decoder: _Decoder) -> None:
        self.label = label
        self.limits = limits
        self.decoder = decoder
        self.names: list[str] | None = None
        self.schema: dict[str, pl.DataType] = {}

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.schema)

    def parse(self, part: bytes, offset: int, line: int, first_row: int) -> Chunk:
        label, limits = self.label, self.limits
        rec = _Records(part, "jsonl", line)
        rec.check_common(part, label, limits, first_row)
        span = f"lines {line}-{rec.line_end}"
        keep = ~rec.blank
        if not keep.any():
            return Chunk(self.empty(), first_row, _i64([]), _i64([]))
        try:
            data = self.decoder.to_utf8(part)
        except UnicodeDecodeError:
            raise BadInput(f"{label}: {span}: not {self.decoder.encoding} like the rest of the "
                           "file") from None
        try:
            frame = pl.read_ndjson(data, infer_schema_length=None)
        except Exception as exc:
            raise BadInput(f"{label}: {span}: not readable JSON Lines ({type(exc).__name__})") \
                from None
        if frame.height != int(np.count_nonzero(keep)):
            raise BadInput(f"{label}: {span}: not readable JSON Lines (blank or broken lines)")
        frame = self._conform(frame, span)
        check_field_bytes(frame, label, limits, span)
        return Chunk(frame, first_row, rec.starts[keep] + offset, rec.lines[keep])

    def _conform(self, frame: pl.DataFrame, span: str) -> pl.DataFrame:
        """The first chunk fixes names and types; later chunks must fit them."""
        label = self.label
        names = check_header(list(frame.columns), label, self.limits)
        frame = frame.rename(dict(zip(frame.columns, names, strict=True)))
        if self.names is None:
            if frame.width == 0:
                raise BadInput(f"{label}: no columns")
            frame = frame.with_columns(pl.col(c).cast(pl.String) for c, t in
                                       frame.schema.items() if t == pl.Null)
            self.names, self.schema = names, dict(frame.schema)
            return frame
        if set(frame.columns) != set(self.names):
            raise BadInput(f"{label}: {span}: the keys differ from the first lines' "
                           f"({frame.width} keys, expected {len(self.names)})")
        frame = frame.select(self.names)
        for i, (name, dtype) in enumerate(self.schema.items(), start=1):
            if frame.schema[name] != dtype:
                try:
                    frame = frame.with_columns(pl.col(name).cast(dtype, strict=True))
                except Exception:
                    raise BadInput(f"{label}: {span}: column {i} has values of another type "
                                   "than in the first lines") from None
        return frame
