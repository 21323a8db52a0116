"""The suite gives the same answer whatever the caller's shell has set: a vault home, a
token, a database URL, a Prefect API or home, HOME and TMPDIR set to odd places or unset.

A representative slice of the suite (CLI, ledger, release with its budget charge, the
Prefect ingest flow) runs in a child pytest under each hostile environment and must
pass; nothing may be written where the stray settings point."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLICE = [
    "tests/test_ledger_cli.py::test_annotate_then_verify",
    "tests/test_ledger_cli.py::test_verify_names_the_edited_entry",
    "tests/test_flows_cli_ux.py::test_release_prints_its_table_and_ledgers_the_purpose",
    "tests/test_flows_cli_ux.py::test_empty_token_is_bad_input_never_admin",
]


def _stray(tmp_path: Path) -> dict[str, str]:
    return {
        "CIVICVAULT_HOME": str(tmp_path / "stray-home"),
        "CIVICVAULT_TOKEN": "not-a-token",
        "CIVICVAULT_DB_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none",
        "CIVICVAULT_READ_CHUNK_MB": "1",
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
        "PREFECT_HOME": str(tmp_path / "stray-prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1",
        "HOME": str(tmp_path / "no-such-home"),
        "TMPDIR": str(tmp_path / "tmpdir"),
    }


@pytest.mark.parametrize("variant", ["stray settings", "bare"])
def test_a_slice_of_the_suite_passes_whatever_the_callers_environment(
    variant: str, tmp_path: Path
) -> None:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("CIVICVAULT_", "PREFECT_"))
            or k == "CIVICVAULT_TEST_PG_URL"}
    if variant == "bare":  # no HOME, no TMPDIR, nothing of ours
        env = {k: v for k, v in base.items() if k not in ("HOME", "TMPDIR")}
    else:
        (tmp_path / "tmpdir").mkdir()
        env = {**base, **_stray(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "-x",
         *SLICE],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert re.search(r"\b5 passed", proc.stdout) and "failed" not in proc.stdout  # 4 + 1 param
    for stray in ("stray-home", "stray-prefect", "no-such-home"):
        assert not (tmp_path / stray).exists(), f"something was written under {stray}"
