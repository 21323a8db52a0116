"""Storage faults (issue 21): disk full, read-only home, a database locked by another writer.

Each ends as one line on stderr naming the cause with a hint, exit 2, and the vault
still verifies afterwards. The disk-full and read-only cases run the real command in a
private mount namespace (``unshare -m``: a tiny tmpfs, a read-only bind mount), so
nothing leaks to the machine; they skip where that is not permitted (not root).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import text

from flows.cli import main
from vault.db import make_engine
from vault.errors import StorageFull, StorageLocked, StorageReadOnly, storage_fault
from vault.home import VaultHome

CLI = [sys.executable, "-c", "from flows.cli import run; run()"]


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICVAULT_")}
    env["CIVICVAULT_HOME"] = str(home)
    return env


def _can_unshare() -> str | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "needs root and unshare(1) for a private mount namespace"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return None if probe.returncode == 0 else "unshare -m is not permitted here"


needs_mounts = pytest.mark.skipif(_can_unshare() is not None,
                                  reason=_can_unshare() or "mount namespaces available")


def _voters(path: Path, n: int) -> Path:
    pl.DataFrame({
        "voter_reg_num": [f"{100000 + i}" for i in range(n)],
        "last_name": [f"Quixley{i}" for i in range(n)],
        "party_cd": ["DEM", "REP", "UNA"] * (n // 3),
        "county_desc": ["CHATHAM"] * n,
    }).write_csv(path)
    return path


def _one_line_exit_2(result: subprocess.CompletedProcess[str], cause: str) -> None:
    err = result.stderr.strip()
    assert result.returncode == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"error: {cause}:") and "(hint: " in err
    assert "Quixley" not in err + result.stdout


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[VaultHome]:
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    for var in ("CIVICVAULT_DB_URL", "CIVICVAULT_TOKEN", "CIVICVAULT_KEK",
                "CIVICVAULT_LOCK_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    assert main(["init"]) == 0
    yield VaultHome.from_env()


def test_database_locked_by_another_writer_is_one_line_exit_2(
        home: VaultHome, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CIVICVAULT_LOCK_TIMEOUT", "0.3")
    other = sqlite3.connect(home.db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        capsys.readouterr()
        assert main(["ledger", "annotate", "--action", "test.locked", "--resource", "r"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: storage locked:") and "CIVICVAULT_LOCK_TIMEOUT" in err
        assert len(err.splitlines()) == 1
    finally:
        other.rollback()
        other.close()
    assert main(["ledger", "annotate", "--action", "test.locked", "--resource", "r"]) == 0
    assert main(["ledger", "verify"]) == 0


def test_lock_timeout_is_parsed_strictly(home: VaultHome, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CIVICVAULT_LOCK_TIMEOUT", " 1_0 ")
    assert main(["ledger", "verify"]) == 2
    assert "CIVICVAULT_LOCK_TIMEOUT" in capsys.readouterr().err


@needs_mounts
def test_read_only_home_is_one_line_exit_2(home: VaultHome) -> None:
    env = _clean_env(home.root)
    script = ('mount --bind "$CIVICVAULT_HOME" "$CIVICVAULT_HOME" && '
              'mount -o remount,ro,bind "$CIVICVAULT_HOME" && exec "$@"')
    ro = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *CLI, "ledger", "annotate",
                         "--action", "test.ro", "--resource", "r"],
                        capture_output=True, text=True, env=env, timeout=120, check=False)
    _one_line_exit_2(ro, "storage read-only")
    after = subprocess.run([*CLI, "ledger", "verify", "--json"], capture_output=True, text=True,
                           env=env, timeout=120, check=False)
    assert after.returncode == 0, after.stderr


def _mount_trial(tmp_path: Path, rows: int, *, home_inside: bool
                 ) -> tuple[Path, Path, dict[str, str], Path]:
    """A folder for a tmpfs, a vault home (inside it or beside it), the CLI's clean
    environment for that home, and a voter file of ``rows`` rows."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    home = mount / "home" if home_inside else tmp_path / "home"
    return mount, home, _clean_env(home), _voters(tmp_path / "voters.csv", rows)


def _unshared(script: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str],
                                                         list[str]]:
    """``script`` in a mount namespace of its own, the CLI as its arguments; with its
    standard error's lines."""
    run = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *CLI],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    return run, run.stderr.strip().splitlines()


@needs_mounts
def test_disk_full_is_one_line_exit_2_and_nothing_partial(tmp_path: Path) -> None:
    disk, _, env, source = _mount_trial(tmp_path, 3000, home_inside=True)
    script = f"""
set -e
mount -t tmpfs -o size=4m tmpfs "{disk}"
"$@" init >/dev/null
avail=$(df -k --output=avail "{disk}" | tail -1)
dd if=/dev/zero of="{disk}/filler" bs=1k count=$((avail - 64)) 2>/dev/null
set +e
"$@" ingest "{source}" --dataset nc
echo "ingest-rc=$?" >&2
rm "{disk}/filler"
"$@" ledger verify --json >/dev/null
echo "verify-rc=$?" >&2
"""
    run, lines = _unshared(script, env)
    assert lines[-2:] == ["ingest-rc=2", "verify-rc=0"], run.stderr
    fault = [ln for ln in lines if ln.startswith("error:")]
    assert len(fault) == 1 and fault[0].startswith("error: storage full:") and "(hint: " in fault[0]
    assert "Traceback" not in run.stderr and "Quixley" not in run.stderr + run.stdout


@needs_mounts
def test_a_temp_folder_too_small_for_the_identity_pass_is_refused_up_front(
        tmp_path: Path) -> None:
    """TMPDIR on a 256 KiB tmpfs: the identity pass of 6,000 rows would need ~384 KiB
    there, so the ingest is refused before anything is stored, naming the setting to change;
    the same file then goes in with room, and once stored is not refused for that folder."""
    tiny, home, env, source = _mount_trial(tmp_path, 6000, home_inside=False)
    script = f"""
"$@" init >/dev/null || exit 9
mount -t tmpfs -o size=256k tmpfs "{tiny}"
TMPDIR="{tiny}" "$@" ingest "{source}" --dataset nc
echo "ingest-rc=$?" >&2
"""
    run, lines = _unshared(script, env)
    assert lines[-1] == "ingest-rc=2", run.stderr
    assert lines[:-1] == ["error: the temp folder (TMPDIR) has 0.2 MiB free; the identity "
                          "pass of 6,000 rows needs about 0.4 MiB there: point TMPDIR at a "
                          "disk with room"], run.stderr
    engine = make_engine(VaultHome(root=home).db_url)
    with engine.connect() as conn:  # refused before the source was registered
        assert conn.execute(text("SELECT count(*) FROM vault_sources")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM vault_batches")).scalar_one() == 0
    engine.dispose()
    ok = subprocess.run([*CLI, "ingest", str(source), "--dataset", "nc"], capture_output=True,
                        text=True, env=env, timeout=300, check=False)
    assert ok.returncode == 0, ok.stderr
    # stored already: no identity pass to make room for, so the small folder is no reason
    again, lines = _unshared(script.replace('"$@" init >/dev/null || exit 9', ""), env)
    assert lines == ["ingest-rc=0"] and "Traceback" not in again.stdout, again.stderr


def test_the_identity_pass_temp_need_counts_every_weaker_kind() -> None:
    from vault.errors import BadInput
    from vault.identity import IdentityPlan, check_temp_space, temp_bytes

    one = IdentityPlan(levels=(("voter_id", ("voter_reg_num",)),))
    three = IdentityPlan(levels=(("voter_id", ("v",)), ("email", ("e",)), ("phone", ("p",))))
    assert temp_bytes(1000, IdentityPlan(levels=())) == temp_bytes(1000, one) == 64_000
    assert temp_bytes(1000, three) == 1000 * (16 + 80)
    with pytest.raises(BadInput, match=r"needs about 89,407\.0 GiB there"):
        check_temp_space(10**12, three)  # no temp folder here has 87 TiB free
    check_temp_space(1000, three)


def test_the_fault_map_reads_error_codes_not_messages() -> None:
    """OS errnos and SQLite result codes name the cause (PostgreSQL: see the next test)."""
    import errno

    assert isinstance(storage_fault(OSError(errno.ENOSPC, "x")), StorageFull)
    assert isinstance(storage_fault(OSError(errno.EROFS, "x")), StorageReadOnly)
    assert storage_fault(OSError(errno.ENOENT, "x")) is None
    assert storage_fault(ValueError("database is locked")) is None
    full = sqlite3.OperationalError("whatever the text")
    full.sqlite_errorcode = 13  # type: ignore[attr-defined]
    assert isinstance(storage_fault(full), StorageFull)
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = full
    assert isinstance(storage_fault(wrapped), StorageFull)
    fault = storage_fault(OSError(errno.ENOSPC, "/secret/path/Quixley"))
    assert fault is not None and "Quixley" not in str(fault)


@pytest.mark.postgres
def test_postgres_lock_held_by_another_writer_and_read_only_server(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from vault.db import migrate
    from vault.store import VAULT_WRITE_LOCK, lock_vault

    engine = make_engine(pg_url)
    migrate(engine)
    engine.dispose()
    monkeypatch.setenv("CIVICVAULT_LOCK_TIMEOUT", "0.2")
    holder = make_engine(pg_url)
    waiter = make_engine(pg_url)
    try:
        with holder.connect() as held:
            held.execute(text("SELECT pg_advisory_lock(:k)"), {"k": VAULT_WRITE_LOCK})
            with pytest.raises(StorageLocked), waiter.begin() as conn:
                lock_vault(conn)
            held.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": VAULT_WRITE_LOCK})
        with waiter.begin() as conn:
            conn.execute(text("SET TRANSACTION READ ONLY"))
            with pytest.raises(StorageReadOnly):
                conn.execute(text("CREATE TEMP TABLE t_ro (x int)"))
    finally:
        holder.dispose()
        waiter.dispose()
