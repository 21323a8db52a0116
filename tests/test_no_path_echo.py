"""A path the caller types may name a person (``canvass-jane-doe.csv``); error lines end
up in logs (Prefect, CI, the web service's). So a refusal names the option or argument
and the problem, in one line with exit 2 and no traceback, and never echoes the path;
nor does a ``--json`` document or a terminal line of a command that succeeded.

Every path here carries ``TOKEN``: it must appear in no output. The tests' own names
and the vault home do not carry it (tmp_path is named after the test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import main
from ledger.signer import Signer

TOKEN = "jane-doe-4417"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys: pytest.CaptureFixture[str], *args: str, says: str) -> str:
    """Exit 2, one ``error:`` line on stderr that says ``says``, nothing echoed."""
    code, out, err = run(capsys, *args)
    assert code == 2, (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "Traceback" not in out
    assert TOKEN not in out and TOKEN not in err, (out, err)
    assert says in err, err
    return err


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> Path:
    root = tmp_path / "vault"
    monkeypatch.setenv("CIVICVAULT_HOME", str(root))
    monkeypatch.delenv("CIVICVAULT_DB_URL", raising=False)
    monkeypatch.delenv("CIVICVAULT_TOKEN", raising=False)
    assert main(["init"]) == 0
    capsys.readouterr()
    return root


@pytest.fixture
def typed(tmp_path: Path) -> Path:
    """A folder whose name names a person, for the files a caller types."""
    folder = tmp_path / f"canvass-{TOKEN}"
    folder.mkdir()
    return folder


@pytest.fixture
def vkey(tmp_path: Path) -> Path:
    """A well-formed log verifier key file (its name is not the caller's secret)."""
    path = tmp_path / "log.vkey"
    path.write_text(Signer.generate("log.example/test").vkey() + "\n", encoding="utf-8")
    return path


# -- ingest --------------------------------------------------------------------------------------


def test_ingest_of_a_missing_file_named_after_a_person_does_not_echo_it(
    typed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "h"))
    refused(capsys, "ingest", str(typed / f"{TOKEN}.csv"), "--dataset", "x",
            says="the file or folder given to ingest does not exist")


def test_ingest_of_a_folder_without_data_files_does_not_name_it(
    home: Path, typed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (typed / f"{TOKEN}.xlsx").write_bytes(b"PK\x03\x04")
    refused(capsys, "ingest", str(typed), "--dataset", "x",
            says="the folder given to ingest holds no ingestible file")


def test_service_and_flow_source_files_never_name_the_path(typed: Path) -> None:
    """The same checks in the vault service (HTTP API) and the Prefect flow (its logs)."""
    from flows.ingest import source_files as flow_files
    from vault.errors import BadInput
    from vault.service import source_files as service_files

    for files in (service_files, flow_files):
        with pytest.raises(BadInput) as info:
            files(typed / f"{TOKEN}.csv")
        assert TOKEN not in str(info.value) and "given to ingest" in str(info.value)
    with pytest.raises(BadInput) as info:
        service_files(typed)
    assert TOKEN not in str(info.value)
