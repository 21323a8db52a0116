"""The allocator settings ``import vault`` applies (vault.allocators), each checked in a
fresh process, by what the allocators then do rather than by the settings' text alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vault.errors import BadInput

ROOT = Path(__file__).resolve().parents[1]

# Polars' jemalloc: a 150 MB Series made of many blocks, dropped; after 2 s (its dirty
# pages decay in 0.5 s, on its background thread) how much of it the process still holds
_JEMALLOC = """
import json, os, sys, time
import vault
import polars as pl

def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) / 1024

before = anon()
s = pl.concat([pl.Series(range(k * 100_000, (k + 1) * 100_000)).cast(pl.String)
               for k in range(100)])
grown = anon() - before
del s
time.sleep(2.0)
print(json.dumps({"grown": grown, "kept": anon() - before,
                  "conf": os.environ.get("_RJEM_MALLOC_CONF"),
                  "applied": vault.allocators.applied()}))
"""

# glibc: a freed 8 MiB block raises the mmap threshold to 8 MiB unless it was fixed, so a
# 2 MiB block then comes from the heap (no mmapped chunk) or gets pages of its own
_GLIBC = """
import ctypes, json
import vault

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Info
libc.free(libc.malloc(8 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(2 << 20)
mapped = libc.mallinfo2().hblks - before
libc.free(block)
print(json.dumps({"mapped": mapped, "applied": vault.allocators.applied()}))
"""


def _run(script: str, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("CIVICVAULT_", "_RJEM_", "MALLOC_", "GLIBC_TUNABLES"))}
    clean.update(PYTHONPATH=str(ROOT), **env)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=clean, check=True, timeout=120)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


linux_glibc = pytest.mark.skipif(not sys.platform.startswith("linux")
                                 or os.confstr("CS_GNU_LIBC_VERSION") is None,
                                 reason="glibc and /proc are Linux's")


@linux_glibc
def test_polars_hands_freed_pages_back_once_vault_is_imported_first() -> None:
    tuned = _run(_JEMALLOC)
    assert str(tuned["conf"]).endswith(",muzzy_decay_ms:0")
    assert tuned["applied"] == {"jemalloc": "muzzy_decay_ms:0",
                                "glibc_mmap_threshold": 1 << 20}
    assert float(tuned["grown"]) > 100  # type: ignore[arg-type]
    assert float(tuned["kept"]) < 0.2 * float(tuned["grown"])  # type: ignore[arg-type]
    # as Polars comes (muzzy pages are never purged): the same memory stays counted
    plain = _run(_JEMALLOC, CIVICVAULT_ALLOCATORS="default")
    assert plain["applied"] == {"jemalloc": "default", "glibc_mmap_threshold": "default"}
    assert float(plain["kept"]) > 0.8 * float(plain["grown"])  # type: ignore[arg-type]


@linux_glibc
def test_glibc_threshold_is_fixed_so_freed_large_blocks_do_not_raise_it() -> None:
    assert _run(_GLIBC)["mapped"] == 1
    assert _run(_GLIBC, CIVICVAULT_ALLOCATORS="default")["mapped"] == 0


@linux_glibc
def test_the_callers_own_settings_win() -> None:
    mine = _run(_JEMALLOC, _RJEM_MALLOC_CONF="muzzy_decay_ms:-1",
                GLIBC_TUNABLES="glibc.malloc.mmap_threshold=4194304")
    assert mine["applied"] == {"jemalloc": "caller", "glibc_mmap_threshold": "caller"}
    assert float(mine["kept"]) > 0.8 * float(mine["grown"])  # type: ignore[arg-type]
    # what Polars wrote into the environment of a parent process is not the caller's
    inherited = _run(_JEMALLOC, _RJEM_MALLOC_CONF="dirty_decay_ms:500,muzzy_decay_ms:-1")
    assert inherited["applied"]["jemalloc"] == "muzzy_decay_ms:0"  # type: ignore[index]
    assert float(inherited["kept"]) < 0.2 * float(inherited["grown"])  # type: ignore[arg-type]


def test_too_late_when_polars_was_loaded_first() -> None:
    got = _run("import json, polars, vault\n"
               "print(json.dumps({'applied': vault.allocators.applied()}))")
    assert got["applied"]["jemalloc"] == "too late"  # type: ignore[index]


def test_a_bad_setting_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from vault import allocators

    monkeypatch.setenv(allocators.SETTING, "fast please")
    with pytest.raises(BadInput) as info:
        allocators.mode()
    assert str(info.value) == "CIVICVAULT_ALLOCATORS must be one of tuned, default"
    monkeypatch.setenv(allocators.SETTING, " Default ")
    assert allocators.mode() == "default"
