"""Keeping the object allocator's freed arenas while an ingest runs.

Each ingest batch makes and drops a few hundred thousand small bytes objects (digests,
keys, sealed records). CPython's small-object allocator unmaps an arena (1 MiB) as soon
as its last object is freed, so every batch gave tens of arenas back to the OS and took
them again for the next, each page costing a page fault and the kernel's zeroing: about
a third of a 1M-row load's page faults (issue 17, docs/BENCHMARKS.md). Inside
:func:`retained`, up to ``cap`` freed arenas are kept and reused instead
(``vault/_arenas.c``); at its end they are given back.

Without the C module (an install without a compiler) :func:`retained` does nothing and
an ingest runs the same, with more page faults.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

try:
    from vault import _arenas
except ImportError:  # pragma: no cover - no C compiler at install
    _arenas = None  # type: ignore[assignment]

NATIVE = _arenas is not None
# 128 arenas of 1 MiB: what a 100k-row batch of 12 columns frees and takes again, with
# room; kept memory is at most this, and only while an ingest runs
DEFAULT_CAP = 128


def retain(cap: int = DEFAULT_CAP) -> None:
    """Keep up to ``cap`` freed object arenas for reuse until the matching :func:`release`
    (calls nest; a generator that cannot hold a ``with`` block across its yields pairs
    these in ``try``/``finally``)."""
    if _arenas is not None:
        _arenas.retain(cap)


def release() -> None:
    """Undo one :func:`retain`; the outermost gives the kept arenas back."""
    if _arenas is not None:
        _arenas.release()


@contextmanager
def retained(cap: int = DEFAULT_CAP) -> Iterator[None]:
    """Keep up to ``cap`` freed object arenas for reuse until the block ends (nests)."""
    retain(cap)
    try:
        yield
    finally:
        release()


def stats() -> dict[str, int]:
    """The cache's state: whether it is installed, nesting depth, cap, arenas kept now,
    and arenas handed out again or taken fresh since the process started."""
    if _arenas is None:
        return {"installed": 0, "depth": 0, "cap": 0, "kept": 0, "reused": 0, "fresh": 0}
    installed, depth, cap, kept, reused, fresh = _arenas.stats()
    return {"installed": installed, "depth": depth, "cap": cap, "kept": kept,
            "reused": reused, "fresh": fresh}
