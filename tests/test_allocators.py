"""The allocator settings ``import vault`` applies (vault.allocators), each checked in a
fresh process, by what the allocators then do rather than by the settings' text alone."""

from __future__ import annotations

import json
import os
import platform
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
# the tuned purge runs on jemalloc's background thread: polled (a loaded machine may run
# it late); otherwise 2 s is four times the decay that makes the pages muzzy
deadline = time.monotonic() + (6.0 if sys.argv[1] == "wait" else 2.0)
while time.monotonic() < deadline and (sys.argv[1] != "wait" or anon() - before > 0.2 * grown):
    time.sleep(0.25)
print(json.dumps({"grown": grown, "kept": anon() - before,
                  "conf": os.environ.get("_RJEM_MALLOC_CONF"),
                  "applied": vault.allocators.applied()}))
"""

# glibc: a freed 16 MiB block raises the mmap threshold to 16 MiB unless it was fixed (at
# 4 MiB), so a 6 MiB block then comes from the heap (no mmapped chunk) or gets pages of
# its own
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
libc.free(libc.malloc(16 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(6 << 20)
mapped = libc.mallinfo2().hblks - before
libc.free(block)
print(json.dumps({"mapped": mapped, "applied": vault.allocators.applied()}))
"""


def _run(script: str, *args: str, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("CIVICVAULT_", "_RJEM_", "_CIVICVAULT_", "MALLOC_",
                                  "GLIBC_TUNABLES"))}
    clean.update(PYTHONPATH=str(ROOT), **env)
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                         text=True, env=clean, check=True, timeout=120)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


linux_glibc = pytest.mark.skipif(not sys.platform.startswith("linux")
                                 or platform.libc_ver()[0] != "glibc",
                                 reason="glibc and /proc are Linux's")


@linux_glibc
def test_polars_hands_freed_pages_back_once_vault_is_imported_first() -> None:
    tuned = _run(_JEMALLOC, "wait")
    assert str(tuned["conf"]).endswith(",muzzy_decay_ms:0")
    assert tuned["applied"] == {"jemalloc": "muzzy_decay_ms:0",
                                "glibc_mmap_threshold": 4 << 20}
    assert float(tuned["grown"]) > 100  # type: ignore[arg-type]
    assert float(tuned["kept"]) < 0.2 * float(tuned["grown"])  # type: ignore[arg-type]
    # as Polars comes (muzzy pages are never purged): the same memory stays counted
    plain = _run(_JEMALLOC, "fixed", CIVICVAULT_ALLOCATORS="default")
    assert plain["applied"] == {"jemalloc": "default", "glibc_mmap_threshold": "default"}
    # (the kernel may take MADV_FREE pages back early only when memory runs short)
    assert float(plain["kept"]) > 0.5 * float(plain["grown"])  # type: ignore[arg-type]


@linux_glibc
def test_glibc_threshold_is_fixed_so_freed_large_blocks_do_not_raise_it() -> None:
    assert _run(_GLIBC)["mapped"] == 1
    assert _run(_GLIBC, CIVICVAULT_ALLOCATORS="default")["mapped"] == 0


@linux_glibc
def test_the_callers_own_settings_win() -> None:
    mine = _run(_JEMALLOC, "fixed", _RJEM_MALLOC_CONF="muzzy_decay_ms:-1",
                GLIBC_TUNABLES="glibc.malloc.mmap_threshold=4194304")
    assert mine["applied"] == {"jemalloc": "caller", "glibc_mmap_threshold": "caller"}
    assert float(mine["kept"]) > 0.5 * float(mine["grown"])  # type: ignore[arg-type]


@linux_glibc
def test_default_takes_back_the_setting_a_tuned_parent_passed_on() -> None:
    """A child of a tuned process that loaded Polars inherits ours behind Polars' own;
    ``default`` there means Polars' setting again, in deed."""
    inherited = {"_RJEM_MALLOC_CONF": "dirty_decay_ms:500,muzzy_decay_ms:-1,muzzy_decay_ms:0",
                 "_CIVICVAULT_RJEM_CALLER": ""}
    plain = _run(_JEMALLOC, "fixed", CIVICVAULT_ALLOCATORS="default", **inherited)
    assert plain["applied"]["jemalloc"] == "default"  # type: ignore[index]
    assert plain["conf"] == "dirty_decay_ms:500,muzzy_decay_ms:-1"  # Polars' alone
    assert float(plain["kept"]) > 0.5 * float(plain["grown"])  # type: ignore[arg-type]


D, M = "dirty_decay_ms:500,muzzy_decay_ms:-1", "muzzy_decay_ms:0"
THP = "dirty_decay_ms:500,muzzy_decay_ms:-1,thp:always,metadata_thp:always"


@pytest.mark.parametrize(("conf", "mark", "setting", "label", "after", "mark_after"), [
    (None, None, "tuned", M, M, ""),  # nothing set
    (None, None, "default", "default", None, None),
    (D, None, "tuned", M, M, ""),  # from a parent that loaded Polars untuned
    (f"{D},{M}", "", "tuned", M, M, ""),  # from a tuned parent, after its Polars
    (f"{D},{D},{M}", "", "tuned", M, M, ""),  # ... and a generation further
    (f"{THP},{D},{M}", "", "default", "default", None, None),
    (f"{D},{M}", "", "default", "default", None, None),
    ("thp:always", None, "tuned", M, f"thp:always,{M}", "thp:always"),  # the caller's
    (f"{D},thp:always,{M}", "thp:always", "default", "default", "thp:always", None),
    ("muzzy_decay_ms:-1", None, "tuned", "caller", "muzzy_decay_ms:-1", None),
    (M, None, "default", "caller", M, None),  # set by the caller, not by us: theirs
    (f"{D},muzzy_decay_ms:250", None, "tuned", "caller", f"{D},muzzy_decay_ms:250", None),
])
def test_jemalloc_setting_tells_the_callers_from_polars_and_from_ours(
        monkeypatch: pytest.MonkeyPatch, conf: str | None, mark: str | None, setting: str,
        label: str, after: str | None, mark_after: str | None) -> None:
    from vault import allocators

    for name, value in (("_RJEM_MALLOC_CONF", conf), ("_CIVICVAULT_RJEM_CALLER", mark)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.delitem(sys.modules, "polars", raising=False)  # as if not loaded yet
    assert allocators._jemalloc(setting == "tuned") == label
    assert os.environ.get("_RJEM_MALLOC_CONF") == after
    assert os.environ.get("_CIVICVAULT_RJEM_CALLER") == mark_after


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


def test_a_bad_setting_refuses_the_ingest_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import polars as pl
    from sqlalchemy import func, select

    from flows.cli import main
    from vault.db import make_engine
    from vault.home import VaultHome
    from vault.tables import T_SOURCE

    for var in [v for v in os.environ if v.startswith("CIVICVAULT_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    assert main(["init"]) == 0
    src = tmp_path / "voters.csv"
    pl.DataFrame({"voter_reg_num": ["100001", "100002"], "last_name": ["Quixley", "Brant"],
                  "party_cd": ["DEM", "REP"]}).write_csv(src)
    monkeypatch.setenv("CIVICVAULT_ALLOCATORS", "Quixley")
    capsys.readouterr()
    assert main(["ingest", str(src), "--dataset", "nc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: CIVICVAULT_ALLOCATORS must be one of tuned, default"
    engine = make_engine(VaultHome.from_env().db_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(T_SOURCE)).scalar_one() == 0
    engine.dispose()
