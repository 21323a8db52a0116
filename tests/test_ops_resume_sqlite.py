"""SQLite crash resume of a first load (issue 17): ``kill -9`` an ingest into an empty
vault once some batches are committed, rerun it, and the rerun builds the blind index's
key and subject index before it writes, then stores exactly the missing batches.

A first load on SQLite drops ``ux_vault_blind_key`` and ``ix_vault_blind_subject`` and
builds them once at its end (``vault.store``, migration 0012); a process killed midway
leaves committed batches without them. Modelled on ``test_ops_resume_pg.py``: a real
vault home, a real subprocess, a real ``SIGKILL``.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows import demo_data
from tests.vault_helpers import INGEST_CHILD
from vault.home import VaultHome

pytestmark = pytest.mark.slow

ROWS, BATCH = 40_000, 2_000
KEY, BY_SUBJECT = "ux_vault_blind_key", "ix_vault_blind_subject"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICVAULT_")}
    env.update(CIVICVAULT_HOME=str(home))
    return env


def _indexes(db: Path) -> set[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                          "AND tbl_name = 'vault_blind_index'")}


def _one(db: Path, sql: str) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(con.execute(sql).fetchone()[0])
    finally:
        con.close()


def test_kill_9_mid_first_load_then_the_rerun_keys_the_blind_index(tmp_path: Path) -> None:
    source = tmp_path / "voters.csv"
    demo_data.generate(ROWS, seed=5).drop("canvass_notes").write_csv(source)
    home = tmp_path / "home"
    env = _env(home)
    cli = [sys.executable, "-c", "from flows.cli import run; run()"]
    subprocess.run([*cli, "init"], env=env, check=True, capture_output=True, timeout=300)
    db = VaultHome(home).db_path
    assert {KEY, BY_SUBJECT} <= _indexes(db)  # a fresh vault has both
    proc = subprocess.Popen([sys.executable, "-c", INGEST_CHILD, str(source), str(BATCH)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            if _one(db, "SELECT count(*) FROM vault_batches") >= 2:
                os.killpg(proc.pid, signal.SIGKILL)  # kill -9, mid-ingest
                break
            time.sleep(0.01)
        proc.wait(timeout=60)
        stored = _one(db, "SELECT count(*) FROM vault_batches")
        if stored >= ROWS // BATCH:
            pytest.skip("the ingest finished before it could be killed (machine too fast)")
        assert proc.returncode == -signal.SIGKILL
        # what the kill left: committed batches, their digests, neither index
        assert _one(db, "SELECT count(*) FROM vault_blind_index") > 0
        assert not {KEY, BY_SUBJECT} & _indexes(db)

        rerun = subprocess.run([sys.executable, "-c", INGEST_CHILD, str(source), str(BATCH)],
                               env=env, capture_output=True, text=True, timeout=600, check=False)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        added, batches = map(int, rerun.stdout.split())
        assert added == ROWS - stored * BATCH and batches == ROWS // BATCH - stored
        assert _one(db, "SELECT count(*) FROM vault_subjects") == ROWS
        assert {KEY, BY_SUBJECT} <= _indexes(db)  # the resumed ingest built them
        assert _one(db, 'SELECT count(*) FROM (SELECT 1 FROM vault_blind_index GROUP BY '
                        'dataset_id, "column", digest, subject_id HAVING count(*) > 1)') == 0
        # the same file again: every row a duplicate (found through the key), nothing added
        again = subprocess.run([sys.executable, "-c", INGEST_CHILD, str(source), str(BATCH)],
                               env=env, capture_output=True, text=True, timeout=600, check=False)
        assert again.returncode == 0, again.stderr[-2000:]
        assert again.stdout.split()[0] == "0"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    verify = subprocess.run([*cli, "ledger", "verify", "--json"], env=env, capture_output=True,
                            text=True, timeout=600, check=False)
    assert verify.returncode == 0, verify.stderr
