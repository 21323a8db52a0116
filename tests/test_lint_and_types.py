"""ruff and mypy --strict are part of the one test command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["flows", "vault", "ledger", "policies"]


def _tool(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    found = str(exe) if exe.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def test_ruff_clean() -> None:
    proc = subprocess.run([_tool("ruff"), "check", *PACKAGES, "tests", "bench"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


def test_mypy_strict_clean() -> None:
    proc = subprocess.run([_tool("mypy"), "--strict", *[f"{p}" for p in PACKAGES]], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


def test_mypy_strict_clean_bench() -> None:
    """The benchmark scripts too: their figures go into docs/BENCHMARKS.md, and a script that
    no longer fits the code it measures fails here, not when someone reruns it (bench/
    release.py's policy stand-in had lost step with the release's policy protocol)."""
    proc = subprocess.run([_tool("mypy"), "--strict", "--explicit-package-bases",
                           "--cache-dir", ".mypy_cache/bench", "bench"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
