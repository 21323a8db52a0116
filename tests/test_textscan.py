"""vault/_textscan.c: a delimited chunk's record and field geometry in one C pass, the
same numbers as the NumPy scan it replaces, and the same outcome for every reader call
(rows, batch starts, sample, or the one error line) with it and without it."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vault.errors import BadInput
from vault.pii import textchunks
from vault.pii.limits import ReaderLimits
from vault.pii.readers import iter_batches, scan_source

native = pytest.mark.skipif(not textchunks.NATIVE, reason="vault/_textscan.c not built")
_textscan = pytest.importorskip("vault._textscan") if textchunks.NATIVE else None

# bytes that matter to the scan (quotes, line breaks, CR, delimiters) among ordinary ones
_PIECES = st.lists(st.sampled_from([b"a", b"bc", b",", b"\t", b";", b'"', b'""', b"\n",
                                    b"\r\n", b"\r", b" ", b"\xe9", b"\x00"]),
                   max_size=120).map(b"".join)


def _numpy_geometry(part: bytes, delim: int, max_field: int) -> tuple[list[int], list[int],
                                                                      list[int], int, int]:
    """What the NumPy path finds (textchunks without the C module)."""
    rec = textchunks._Records(part, "delimited", 0)  # no delimiter: NumPy
    fields, long_at = textchunks._fields_numpy(rec, delim, max_field)
    breaks = rec.line_end + 1
    # (a part without a record end has one start, at 0, and so one line in NumPy's
    # arrays; the cutter never hands such a part over)
    lines = rec.lines[:len(rec.ends)]
    return (rec.ends.tolist(), lines.tolist(), [int(f) for f in fields], breaks, long_at)


def test_the_module_is_built_where_pip_could_build_it() -> None:
    """The install builds it (gcc and Python's headers are here); a silent fallback would
    cost every delimited ingest twice the scan."""
    assert textchunks.NATIVE, "pip install did not build vault._textscan (see its build log)"


@native
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PIECES, st.sampled_from([b",", b"\t", b";"]), st.integers(0, 6))
def test_geometry_is_numpys(part: bytes, delim: bytes, max_field: int) -> None:
    ends, lines, fields, breaks, long_at = _textscan.geometry(
        part, delim[0], max_field)
    got = (np.frombuffer(ends, dtype=np.int64).tolist(),
           np.frombuffer(lines, dtype=np.int64).tolist(),
           np.frombuffer(fields, dtype=np.int64).tolist(), breaks, long_at)
    assert got == _numpy_geometry(part, delim[0], max_field)


@native
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PIECES, st.data())
def test_last_end_is_numpys(buf: bytes, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(buf)))
    size = data.draw(st.integers(0, len(buf) - start))
    arr = np.frombuffer(buf, dtype=np.uint8, count=size, offset=start)
    is_nl = arr == 10
    seps = np.flatnonzero(is_nl & textchunks._outside_quotes(arr))
    want = (0, 0) if not len(seps) else (int(seps[-1]) + 1,
                                         int(np.count_nonzero(is_nl[:int(seps[-1]) + 1])))
    assert _textscan.last_end(buf, start, size) == want


@native
def test_geometry_refuses_what_it_cannot_scan() -> None:
    with pytest.raises(ValueError, match="delimiter"):
        _textscan.geometry(b"a\n", ord('"'), 10)
    with pytest.raises(ValueError, match="window"):
        _textscan.last_end(b"abc", 2, 5)


def _outcome(path: Path, limits: ReaderLimits) -> object:
    """Everything a reader call tells: rows, batch starts, sample and batches, or the
    error line."""
    try:
        info = scan_source(path, batch_rows=3, limits=limits)
        batches = list(iter_batches(path, 3, limits=limits, encoding=info.encoding))
        return (info.rows, info.encoding, info.columns, info.batch_starts,
                info.sample.rows(), [b.rows() for b in batches])
    except BadInput as exc:
        return str(exc)


@native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([b"a,b\n", b"a\tb\tc\n", b'"a","b"\n']), _PIECES,
       st.sampled_from([1, 7, 64, 1 << 20]))
def test_readers_tell_the_same_with_and_without_it(header: bytes, body: bytes,
                                                   chunk: int) -> None:
    limits = ReaderLimits(chunk_bytes=chunk, max_columns=50, max_field_bytes=5,
                          max_row_bytes=40, max_header_bytes=200)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.csv"
        path.write_bytes(header + body)
        with_c = _outcome(path, limits)
        textchunks.NATIVE = False
        try:
            without = _outcome(path, limits)
        finally:
            textchunks.NATIVE = True
    assert with_c == without


@native
@pytest.mark.parametrize("enabled", [True, False])
def test_deep_errors_keep_their_global_lines(tmp_path: Path, enabled: bool,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A ragged row, an over-long field and a NUL byte deep in a quoted file, found by
    either path with their global line and row (a quoted line break counts as a line)."""
    monkeypatch.setattr(textchunks, "NATIVE", enabled)
    rows = "".join(f'{i},"v\n{i}"\n' for i in range(10_000))  # two lines a row, 128 KB
    cases = {b'1,2,3\n': "line 20002 (row 10,001): 3 fields, header has 2",
             b'1,"' + b"x" * 40 + b'"\n': "line 20002 (row 10,001): a field over the limit",
             b"1,\x00\n": "line 20002 (row 10,001): a NUL byte"}
    for bad, want in cases.items():
        path = tmp_path / "q.csv"
        path.write_bytes(b"a,b\n" + rows.encode() + bad + b"7,8\n")
        for chunk in (1 << 20, 500):
            limits = ReaderLimits(chunk_bytes=chunk, max_field_bytes=30)
            with pytest.raises(BadInput) as info:
                scan_source(path, limits=limits)
            assert want in str(info.value)


@native
def test_the_scan_lets_other_threads_run() -> None:
    """The C loops release the GIL: a thread that gives the GIL up after every step
    counts while a 64 MB chunk is scanned. With the GIL held through the scan it could
    only take the steps that the switch after the call lets in."""
    part = (b'"x",' * 15 + b'"y"\n') * (1 << 20)
    box = [0]
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            box[0] += 1
            time.sleep(0)  # gives the GIL back at once

    t = threading.Thread(target=count)
    t.start()
    moved = []
    try:
        for _ in range(5):
            before = box[0]
            ends = _textscan.geometry(part, ord(","), 100)[0]
            moved.append(box[0] - before)
            before = box[0]
            _textscan.last_end(part, 0, len(part))
            moved.append(box[0] - before)
    finally:
        stop.set()
        t.join()
    assert len(ends) == 8 * (1 << 20)
    # hundreds of steps while the scan runs (each gives the GIL up); with the GIL held,
    # the one or two that the switch after the call lets in
    assert max(moved[0::2]) > 50 and max(moved[1::2]) > 50, moved


@native
def test_a_wide_file_scans_faster_with_it(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the module: the whole scan of a wide file (20k rows x 40 columns)
    takes at most two thirds of the NumPy scan's time (about half on 2 idle cores)."""
    row = ",".join(f"value{i}" for i in range(40)) + "\n"
    path = tmp_path / "wide.csv"
    path.write_bytes((",".join(f"c{i}" for i in range(40)) + "\n" + row * 20_000).encode())

    def once(enabled: bool) -> float:
        monkeypatch.setattr(textchunks, "NATIVE", enabled)
        start = time.perf_counter()
        assert scan_source(path).rows == 20_000
        return time.perf_counter() - start

    # interleaved, so a machine that slows down slows both; the best of five each
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(5):
        for enabled in (True, False):
            times[enabled].append(once(enabled))
    assert min(times[True]) < min(times[False]) * 2 / 3, times
