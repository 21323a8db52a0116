"""``civicvault ledger verify --export FILE --checkpoint FILE --vkey FILE`` as an outsider
runs it (issue 13): a fresh process in an empty folder, no ``CIVICVAULT_HOME``, no token,
a database URL that points nowhere. It needs only the three files: it opens no vault
(nothing is created, no database is contacted, SQLAlchemy is never imported) and answers
0 for a good export, 1 for a tampered one or the wrong key, 2 for a missing file."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import main
from ledger.signer import Signer

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import sys, flows.cli; code = flows.cli.main(sys.argv[1:]); "
         "print('loaded:', sorted(m for m in ('sqlalchemy', 'psycopg', 'polars', 'prefect') "
         "if m in sys.modules)); sys.exit(code)")


def run(*argv: str) -> tuple[int, str]:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(list(argv))
    out.flush()
    return code, raw.getvalue().decode("utf-8")


@pytest.fixture
def published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A vault's export, checkpoint and verifier key, copied to a folder of their own."""
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    for var in ("CIVICVAULT_DB_URL", "CIVICVAULT_TOKEN", "CIVICVAULT_WITNESS_HOME"):
        monkeypatch.delenv(var, raising=False)
    assert run("init")[0] == 0
    assert run("ledger", "annotate", "--action", "note.a", "--resource", "r")[0] == 0
    files = tmp_path / "published"
    files.mkdir()
    for name, argv in (("cp", ("ledger", "checkpoint")), ("export", ("ledger", "export")),
                       ("vkey", ("ledger", "pubkey"))):
        code, text = run(*argv)
        assert code == 0
        (files / name).write_text(text, encoding="utf-8")
    return files


def _outsider(files: Path, tmp_path: Path, *extra: str) -> tuple[int, str, str, Path]:
    cwd = tmp_path / "outsider"
    cwd.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd),
           "CIVICVAULT_DB_URL": "postgresql+psycopg://nobody@127.0.0.1:9/nowhere"}
    argv = ["ledger", "verify", "--export", str(files / "export"), "--checkpoint",
            str(files / "cp"), "--vkey", str(files / "vkey"), *extra]
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True,
                          text=True, cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)},
                          timeout=300)
    return proc.returncode, proc.stdout, proc.stderr, cwd


def test_an_outsider_verifies_with_three_files_and_no_vault(published: Path,
                                                            tmp_path: Path) -> None:
    code, out, err, cwd = _outsider(published, tmp_path, "--json")
    assert code == 0, err
    report = json.loads(out.splitlines()[0])
    assert report["verified"] is True and report["checkpoint"]["size"] <= report["size"]
    assert out.splitlines()[-1] == "loaded: []"  # no database layer at all
    assert list(cwd.iterdir()) == []  # no ./.civicvault, nothing written


def test_an_outsider_is_told_about_tampering_a_wrong_key_and_a_missing_file(
        published: Path, tmp_path: Path) -> None:
    good = (published / "export").read_text(encoding="utf-8")
    lines = good.splitlines(keepends=True)
    (published / "export").write_text(
        "".join([lines[0], lines[1].replace('"resource":"', '"resource":"x', 1), *lines[2:]]),
        encoding="utf-8")
    code, _, err, _ = _outsider(published, tmp_path)
    assert code == 1 and "Traceback" not in err
    (published / "export").write_text(good, encoding="utf-8")
    assert _outsider(published, tmp_path)[0] == 0

    vkey = (published / "vkey").read_text(encoding="utf-8")
    other = Signer.generate(vkey.partition("+")[0]).vkey()  # same log name, another key
    (published / "vkey").write_text(other + "\n", encoding="utf-8")
    code, _, err, _ = _outsider(published, tmp_path)
    assert code == 1 and "Traceback" not in err
    (published / "vkey").write_text(vkey, encoding="utf-8")

    (published / "cp").unlink()
    code, _, err, _ = _outsider(published, tmp_path)
    assert code == 2 and "checkpoint" in err and "Traceback" not in err
