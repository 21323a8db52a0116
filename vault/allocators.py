"""Process-wide memory allocator settings, applied when ``vault`` is first imported.

A statewide ingest frees and takes again hundreds of megabytes a batch, through two C
allocators that each keep freed memory in ways that count in the process's RSS
(issue 17, docs/BENCHMARKS.md "Allocators"):

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
as they come.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Any

__all__ = ["GLIBC_MMAP_THRESHOLD", "JEMALLOC_CONF", "SETTING", "applied", "configure", "mode"]

SETTING = "CIVICVAULT_ALLOCATORS"
MODES = ("tuned", "default")
JEMALLOC_ENV = "_RJEM_MALLOC_CONF"
JEMALLOC_CONF = "muzzy_decay_ms:0"
# what ``import polars`` puts first in _RJEM_MALLOC_CONF (polars/__init__.py, 1.36)
_POLARS_CONF = "dirty_decay_ms:500,muzzy_decay_ms:-1"
GLIBC_MMAP_THRESHOLD = 1 << 20
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
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (not musl)
    except (OSError, AttributeError):
        return None
    return libc


def configure() -> dict[str, Any]:
    """Apply the settings once per process (later calls return what was done)."""
    if _applied:
        return dict(_applied)
    tuned = _setting() != "default"  # a bad value: tuned here, refused by mode()
    conf = os.environ.get(JEMALLOC_ENV, "")
    own = conf.removeprefix(_POLARS_CONF).strip(",")
    jemalloc = "default"
    if own == JEMALLOC_CONF:
        jemalloc = JEMALLOC_CONF  # set so by a parent process (and Polars' put before it)
    elif "muzzy_decay_ms" in own:
        jemalloc = "caller"
    elif tuned and "polars" in sys.modules:
        jemalloc = "too late"  # Polars loaded first: its jemalloc has read its setting
    elif tuned:  # after anything there, so it wins (jemalloc reads the options in order)
        os.environ[JEMALLOC_ENV] = f"{conf},{JEMALLOC_CONF}" if conf else JEMALLOC_CONF
        jemalloc = JEMALLOC_CONF
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
