"""The benchmark scripts still run: docs/BENCHMARKS.md's figures come from them, and anyone
must be able to rerun one. Each runs here at a tiny size (SQLite only, in a temporary
directory, a clean environment); mypy checks their types (test_lint_and_types), this
checks that they run against the code as it is now. bench/release.py had stopped
running for a day before this test (its policy stand-in lacked a method a release reads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "TMPDIR": str(tmp_path), "DO_NOT_TRACK": "1", "PYTHONHASHSEED": "0"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.mark.parametrize(("script", "args", "expect"), [
    ("bench/vault.py", ["--rows", "3000", "--runs", "1", "--pg", ""],
     "civicvault seal+store, SQLite"),
    ("bench/sqlite_index_build.py", ["--voters", "3000", "--runs", "1"], "column codes"),
    ("bench/release.py", ["--rows", "2000", "--runs", "1", "--full", "--store"],
     '"end_to_end_s"'),
    ("bench/ingest_timeline.py", ["--rows", "3000", "--replay"], "the same statements alone"),
    ("bench/later_load.py", ["--vault", "3000", "--loads", "1000", "--runs", "1", "--db",
                             "sqlite"], "rule faster"),
], ids=lambda v: v if isinstance(v, str) and v.startswith("bench/") else None)
def test_a_bench_script_runs_at_a_tiny_size(tmp_path: Path, script: str, args: list[str],
                                            expect: str) -> None:
    proc = _run(tmp_path, script, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert expect in proc.stdout, proc.stdout[-3000:]
    assert "Traceback" not in proc.stderr


def test_ingest_costs_times_each_knock_out_against_the_full_load(tmp_path: Path) -> None:
    """Every variant asked for is timed, with the baseline and the full load beside it."""
    proc = _run(tmp_path, "bench/ingest_costs.py", "--rows", "3000", "--runs", "1",
                "--only", "no-fingerprint", "identity-lookups-only", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    rows = {r["variant"]: r for r in doc["variants"]}
    assert list(rows) == ["baseline", "full", "no-fingerprint", "identity-lookups-only"]
    assert all(r["wall_s"] > 0 and r["cpu_s"] > 0 for r in rows.values())
    assert rows["baseline"]["x_baseline"] == 1.0
    assert rows["full"]["saved_s"] == 0.0
    assert not list(tmp_path.glob("cvcosts-*")), "its temporary directory was left behind"


def test_the_vault_bench_times_its_measurements_in_rounds(tmp_path: Path) -> None:
    """Every round times the baseline and the load once each, and the ratios are the
    rounds' own as well as the medians'; the load runs with the allocators the CLI has."""
    proc = _run(tmp_path, "bench/vault.py", "--rows", "2000", "--runs", "2", "--pg", "",
                "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    # vault imported before Polars, as by the CLI: its allocator settings all apply
    assert doc["allocators"] == {"jemalloc": "muzzy_decay_ms:0",
                                 "glibc_mmap_threshold": 4 << 20}
    rows = {r["measurement"]: r for r in doc["measurements"]}
    base = rows["baseline: polars + AES-GCM/row + HMAC/row + sqlite3 executemany"]
    load = rows["civicvault seal+store, SQLite (WAL, synchronous=FULL)"]
    assert len(base["runs"]) == len(load["runs"]) == 2
    by_round = sorted(w / b for w, b in zip(load["runs"], base["runs"], strict=True))
    assert load["x_baseline_by_round"] == pytest.approx(sum(by_round) / 2, rel=0.02)
    assert load["x_baseline"] == pytest.approx(
        (sum(load["runs"]) / 2) / (sum(base["runs"]) / 2), rel=0.02)
    assert not list(tmp_path.glob("cvbench-*")), "its temporary directory was left behind"


@pytest.mark.postgres
def test_the_unindexed_verification_bench_times_three_ways_and_drops_its_database(
        tmp_path: Path, pg_server: str) -> None:
    """bench/verify_unindexed.py: verification with the subject index, without it (one
    pass) and without it bucket by bucket, every round; its database is gone after."""
    from sqlalchemy import create_engine, text

    admin = create_engine(pg_server)

    def databases() -> set[str]:
        with admin.connect() as conn:
            return set(conn.execute(text("SELECT datname FROM pg_database WHERE datname "
                                         "LIKE 'cv_bench_verify_%'")).scalars())

    try:
        before = databases()
        proc = _run(tmp_path, "bench/verify_unindexed.py", "--rows", "2000", "--runs", "2",
                    "--pg", pg_server, "--json")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert databases() <= before
    finally:
        admin.dispose()
    rows = {r["measurement"]: r for r in json.loads(proc.stdout)["measurements"]}
    assert list(rows) == ["indexed", "one pass", "bucket by bucket"]
    assert all(len(r["runs"]) == 2 and r["median_s"] > 0 for r in rows.values())
    assert rows["indexed"]["x_indexed"] == 1.0


def test_the_scan_bench_times_the_c_and_numpy_paths(tmp_path: Path) -> None:
    """bench/scan.py: the scan and a whole ingest, each with vault/_textscan.c and with
    NumPy, in fresh processes; every row read both ways."""
    proc = _run(tmp_path, "bench/scan.py", "--rows", "3000", "--runs", "2", "--ingest", "1",
                "--tmp", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    rows = {r["measurement"]: r for r in got["results"]}
    assert list(rows) == ["scan", "ingest"] and got["columns"] == 70
    assert rows["scan"]["rounds"] == 2 and rows["ingest"]["rounds"] == 1
    assert all(r["rows"] == 3000 and r["c_seconds"] > 0 and r["numpy_seconds"] > 0
               for r in rows.values())
    assert list(tmp_path.glob("cvscan-*")) == []  # the file and the vaults are gone


@pytest.mark.parametrize("args", [
    ["bench/scan.py", "--rows", "0"],
    ["bench/verify_unindexed.py", "--rows", "0"],
    ["bench/vault.py", "--runs", "0"],
    ["bench/ingest_costs.py", "--rows", "0"],
    ["bench/ingest_costs.py", "--only", "no-such-piece"],
    ["bench/resume.py", "--rows", "10", "--runs", "1"],
    ["bench/sqlite_index_build.py", "--voters", "0"],
    ["bench/later_load.py", "--loads", "0"],
    ["bench/allocators.py", "--shape", "vault", "--rows", "0"],
], ids=lambda a: " ".join(a[:2]))
def test_a_bench_script_refuses_bad_sizes_with_exit_2(tmp_path: Path, args: list[str]) -> None:
    proc = _run(tmp_path, *args, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert ": error: " in proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr


def test_the_allocator_bench_runs_each_setting_it_names(tmp_path: Path) -> None:
    """bench/allocators.py on bench/vault.py's rows: every setting is what its child
    process applied (so the table compares what it says), and nothing is left behind."""
    proc = _run(tmp_path, "bench/allocators.py", "--shape", "vault", "--rows", "3000",
                "--rounds", "1", "--tmp", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {r["mode"]: r for r in map(json.loads, proc.stdout.splitlines()[:2])}
    assert {m: r["allocators"] for m, r in runs.items()} == {
        "tuned": {"jemalloc": "muzzy_decay_ms:0", "glibc_mmap_threshold": 4 << 20},
        "default": {"jemalloc": "default", "glibc_mmap_threshold": "default"}}
    assert all(r["seconds"] > 0 and r["minor_faults"] > 0 for r in runs.values())
    assert "| tuned |" in proc.stdout and "shape=vault rows=3,000" in proc.stdout
    assert not list(tmp_path.glob("cvalloc-*")), "its temporary directory was left behind"
