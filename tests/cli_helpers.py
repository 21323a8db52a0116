"""The CLI in-process, as ``civicvault ...`` runs it: a fresh vault home, one command."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of one command."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def initialised_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> Path:
    """``civicvault init`` in ``tmp_path/vault``, whatever the caller's environment says."""
    root = tmp_path / "vault"
    monkeypatch.setenv("CIVICVAULT_HOME", str(root))
    monkeypatch.delenv("CIVICVAULT_DB_URL", raising=False)
    monkeypatch.delenv("CIVICVAULT_TOKEN", raising=False)
    assert main(["init"]) == 0
    capsys.readouterr()
    return root
