"""init / ingest / erase / keys rotate / ledger verify through the CLI, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import select, update

from flows.cli import main
from vault.db import make_engine
from vault.home import VaultHome
from vault.store import T_COLUMN


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> VaultHome:
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CIVICVAULT_DB_URL", raising=False)
    monkeypatch.delenv("CIVICVAULT_TOKEN", raising=False)
    assert main(["init"]) == 0
    return VaultHome.from_env()


def _voter_file(path: Path, n: int = 40) -> Path:
    pl.DataFrame({
        "voter_reg_num": [f"{100000 + i}" for i in range(n)],
        "last_name": [f"Quixley{i}" for i in range(n)],
        "first_name": ["Ann"] * n,
        "party_cd": ["DEM", "REP", "UNA", "LIB"] * (n // 4),
        "birth_year": [str(1950 + i % 50) for i in range(n)],
        "county_desc": ["CHATHAM"] * n,
    }).write_csv(path)
    return path


def _json(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out = capsys.readouterr().out.strip().splitlines()
    return dict(json.loads(out[-1]))


def test_the_progress_bar_says_when_the_rows_are_stored_and_indexes_are_built(
        home: VaultHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large load builds its deferred indexes after its last batch, with the bar full:
    the bar says so instead of sitting at 100% (seconds to minutes on a vault of millions)."""
    import io
    import re

    from rich.console import Console

    import flows.cli.vault as cli_vault

    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # the in-process path, with a bar
    screen = io.StringIO()
    monkeypatch.setattr(cli_vault, "console", Console(file=screen, force_terminal=True,
                                                      width=160))
    assert main(["ingest", str(_voter_file(tmp_path / "a.csv")), "--dataset", "nc"]) == 0
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # colours, cursor
    assert cli_vault.FINISHING in shown
    assert "dataset nc: 40 rows added" in shown


def test_init_twice_is_bad_input(home: VaultHome) -> None:
    assert main(["init"]) == 2


def test_ingest_reingest_erase_verify(home: VaultHome, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    f = _voter_file(tmp_path / "voters.csv")
    assert main(["ingest", str(f), "--dataset", "nc", "--json"]) == 0
    first = _json(capsys)
    assert first["rows_added"] == 40 and first["batches"] == 1
    assert main(["ingest", str(f), "--dataset", "nc", "--json"]) == 0
    again = _json(capsys)
    assert again["rows_added"] == 0 and again["duplicates_skipped"] == 40
    assert main(["erase", "--dataset", "nc", "--match", "voter_reg_num=100007", "--json"]) == 0
    assert _json(capsys)["subjects_erased"] == 1
    assert main(["keys", "rotate", "--json"]) == 0
    assert _json(capsys)["kek_version"] == 2
    assert main(["ledger", "verify", "--json"]) == 0
    verdict = _json(capsys)
    assert verdict["verified"] is True and verdict["vault"] == {"batches": 1, "records": 40}
    ledger_bytes = b"".join(p.read_bytes() for p in home.root.rglob("*") if p.is_file())
    assert b"Quixley" not in ledger_bytes


def test_erased_voter_in_a_later_file_is_not_added_back(home: VaultHome, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(_voter_file(tmp_path / "a.csv")), "--dataset", "nc"]) == 0
    capsys.readouterr()
    assert main(["erase", "--dataset", "nc", "--match", "voter_reg_num=100007", "--json"]) == 0
    assert _json(capsys)["subjects_erased"] == 1
    later = _voter_file(tmp_path / "b.csv", n=44)  # the same 40 voters (one erased) + 4 new
    assert main(["ingest", str(later), "--dataset", "nc", "--json"]) == 0
    report = _json(capsys)
    assert (report["rows_added"], report["duplicates_skipped"], report["erased_suppressed"]) \
        == (4, 39, 1)
    assert main(["ingest", str(_voter_file(tmp_path / "c.csv", n=48)), "--dataset", "nc"]) == 0
    assert "1 rows of erased subjects not added back" in capsys.readouterr().out
    assert main(["ledger", "verify", "--json"]) == 0


def test_ledger_verify_catches_tampered_ciphertext(home: VaultHome, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    f = _voter_file(tmp_path / "voters.csv")
    assert main(["ingest", str(f), "--dataset", "nc", "--json"]) == 0
    engine = make_engine(home.db_url)
    with engine.begin() as conn:
        row = conn.execute(select(T_COLUMN.c.batch_id, T_COLUMN.c.column, T_COLUMN.c.sealed)
                           .where(T_COLUMN.c.column == "party_cd")).one()
        tampered = bytes(row.sealed[:-1]) + bytes([row.sealed[-1] ^ 0x01])
        conn.execute(update(T_COLUMN).where(T_COLUMN.c.column == "party_cd")
                     .values(sealed=tampered))
    engine.dispose()
    capsys.readouterr()
    assert main(["ledger", "verify", "--json"]) == 1
    out = _json(capsys)
    assert out["verified"] is False and out["vault_batch"] == str(row.batch_id)


def test_bad_input_exits_2_and_writes_nothing(home: VaultHome, tmp_path: Path) -> None:
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n")
    assert main(["ingest", str(ragged), "--dataset", "nc"]) == 2
    assert main(["ingest", str(tmp_path / "missing.csv"), "--dataset", "nc"]) == 2
    assert main(["erase", "--dataset", "nope", "--match", "x=1"]) == 2
    assert main(["erase", "--dataset", "nc", "--match", "novalue"]) == 2
    engine = make_engine(home.db_url)
    with engine.connect() as conn:
        from vault.store import T_DATASET

        assert conn.execute(select(T_DATASET.c.id)).first() is None
    engine.dispose()
