"""Process-wide memory allocator settings, applied when ``vault`` is first imported.

A statewide ingest frees and takes again hundreds of megabytes a batch, through two C
allocators that each keep freed memory in ways that count in the process's RSS
(issue 17, docs/BENCHMARKS.md, "Allocators hand freed memory back"):

- **Polars' jemalloc.** Polars configures it with ``muzzy_decay_ms:-1``: pages freed
  for half a second are handed back with ``MADV_FREE``, which leaves them counted in
  RSS until the kernel runs short of memory, and never with ``MADV_DONTNEED``.
  ``muzzy_decay_ms:0`` (jemalloc's own default since 5.2.1, chosen for this very RSS
  accounting) hands them back for good. jemalloc reads its setting once, when Polars
  loads, so it goes into ``_RJEM_MALLOC_CONF`` before that, behind what Polars sets and
  therefore winning over it.
- **glibc malloc** (Python's large objects, NumPy, SQLite, OpenSSL). Blocks above the
  mmap threshold get pages of their own, returned when freed; but glibc raises the
  threshold to the size of each such block freed, up to 32 MiB, after which a batch's
  multi-megabyte buffers come from the heap, whose free holes stay resident. A fixed
  threshold (``mallopt(M_MMAP_THRESHOLD)``, which also turns the raising off) keeps
  them out of the heap.

A setting the caller made wins: a ``muzzy_decay_ms`` of their own in
``_RJEM_MALLOC_CONF`` (not the one Polars writes there, which a child process inherits),
and glibc's threshold when ``MALLOC_MMAP_THRESHOLD_`` or a ``GLIBC_TUNABLES``
``mmap_threshold`` is set. ``CIVICVAULT_ALLOCATORS=default`` leaves both allocators
as they come (and takes back the jemalloc setting a parent process passed on).

Both apply to every process that imports ``vault`` (the CLI, flows, Dask workers, the
seal child, the API), not only during an ingest: jemalloc's can only be set before
Polars loads, and every one of them moves bulk data through Polars and NumPy. The cost
is a page fault per page of each block of 4 MiB or more, taken fresh each time.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

__all__ = ["GLIBC_MMAP_THRESHOLD", "JEMALLOC_CONF", "SETTING", "applied", "configure", "mode"]

SETTING = "CIVICVAULT_ALLOCATORS"
MODES = ("tuned", "default")
JEMALLOC_ENV = "_RJEM_MALLOC_CONF"
JEMALLOC_CONF = "muzzy_decay_ms:0"
# what ``import polars`` puts before the caller's value in _RJEM_MALLOC_CONF (1.36; the
# longer one with POLARS_THP=1); a child process inherits it, once per generation
_POLARS_CONFS = ("dirty_decay_ms:500,muzzy_decay_ms:-1,thp:always,metadata_thp:always",
                 "dirty_decay_ms:500,muzzy_decay_ms:-1")
# the caller's part of _RJEM_MALLOC_CONF when this module appended its own to it: how a
# child process tells an inherited setting of ours from the caller's
_MARK = "_CIVICVAULT_RJEM_CALLER"
GLIBC_MMAP_THRESHOLD = 4 << 20  # 1 MiB cost a release 35% (docs/BENCHMARKS.md)
_M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>

_applied: dict[str, Any] = {}


def _setting() -> str:
    return os.environ.get(SETTING, "").strip().lower() or "tuned"


def mode() -> str:
    """The ``CIVICVAULT_ALLOCATORS`` setting (``tuned`` when unset); a bulk operation
    calls it first, so a bad value is refused before anything is written."""
    raw = _setting()
    if raw not in MODES:
        from vault.errors import BadInput

        raise BadInput(f"{SETTING} must be one of {', '.join(MODES)}")
    return raw


def _glibc() -> Any | None:
    """The C library already loaded, if it is glibc (not musl, not another system's)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: no search, no subprocess
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
    except (OSError, AttributeError):
        return None
    return libc


def _join(*parts: str) -> str:
    return ",".join(p for p in parts if p)


def _callers(conf: str) -> str:
    """``_RJEM_MALLOC_CONF`` without what Polars put first in this or earlier processes."""
    while True:
        for polars in _POLARS_CONFS:
            if conf == polars or conf.startswith(polars + ","):
                conf = conf[len(polars):].lstrip(",")
                break
        else:
            return conf


def _jemalloc(tuned: bool) -> str:
    conf = os.environ.get(JEMALLOC_ENV, "")
    own = _callers(conf)
    mark = os.environ.get(_MARK)
    inherited = mark is not None and own == _join(mark, JEMALLOC_CONF)
    caller = mark if inherited and mark is not None else own
    if "muzzy_decay_ms" in caller:
        return "caller"
    if "polars" in sys.modules:  # its jemalloc read the setting when it loaded
        return JEMALLOC_CONF if inherited else "too late" if tuned else "default"
    if tuned:  # after anything there, so it wins (jemalloc reads the options in order)
        os.environ[JEMALLOC_ENV] = _join(caller, JEMALLOC_CONF)
        os.environ[_MARK] = caller
        return JEMALLOC_CONF
    if caller:
        os.environ[JEMALLOC_ENV] = caller
    else:
        os.environ.pop(JEMALLOC_ENV, None)
    os.environ.pop(_MARK, None)
    return "default"


def configure() -> dict[str, Any]:
    """Apply the settings once per process (later calls return what was done)."""
    if _applied:
        return dict(_applied)
    tuned = _setting() != "default"  # a bad value: tuned here, refused by mode()
    jemalloc = _jemalloc(tuned)
    glibc: str | int = "default"
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in tunables:
        glibc = "caller"
    elif tuned and (libc := _glibc()) is not None \
            and libc.mallopt(_M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD) == 1:
        glibc = GLIBC_MMAP_THRESHOLD
    _applied.update(jemalloc=jemalloc, glibc_mmap_threshold=glibc)
    return dict(_applied)


def applied() -> dict[str, Any]:
    """What :func:`configure` did in this process (empty before it ran)."""
    return dict(_applied)
