"""Key rotation any number of times in a row (issue 21): releases, erasure and the ledger
keep working, and KEK versions match the rotations that succeeded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import select, update

from flows.cli import main
from ledger import store as ledger_store
from vault.db import make_engine
from vault.home import VaultHome
from vault.keys import FileKeyProvider
from vault.schema import DataKey

T_KEY = DataKey.__table__  # type: ignore[attr-defined]

NC_RULES = """
[datasets.nc]
columns = ["party_cd", "county_desc"]

[datasets.nc.group_by]
party_cd = ["DEM", "REP", "UNA", "LIB"]

[datasets.nc.budget]
per_analyst = 10.0
dataset_cap = 50.0
"""


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


@pytest.fixture
def vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[VaultHome, str]]:
    """An initialised vault, 40 voters ingested into 'nc', an analyst; yields (home, token)."""
    from policies.load import default_policy_text
    from vault.principals import add_principal

    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CIVICVAULT_DB_URL", raising=False)
    monkeypatch.delenv("CIVICVAULT_TOKEN", raising=False)
    monkeypatch.delenv("CIVICVAULT_KEK", raising=False)
    assert main(["init"]) == 0
    home = VaultHome.from_env()
    policy_file = tmp_path / "policy.toml"  # applied, so that `ledger verify` vouches for it
    policy_file.write_text(default_policy_text() + NC_RULES, encoding="utf-8")
    assert main(["policy", "apply", str(policy_file)]) == 0
    assert main(["ingest", str(_voter_file(tmp_path / "voters.csv")), "--dataset", "nc"]) == 0
    engine = make_engine(home.db_url)
    with engine.begin() as conn:
        token = add_principal(conn, "alice", "analyst")
    engine.dispose()
    capsys.readouterr()
    yield home, token


def _last_json(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return dict(json.loads(out.strip().splitlines()[-1]))


def _release(token: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["--token", token, "release", "--dataset", "nc", "--by", "party_cd",
                 "--measure", "count", "--epsilon", "0.5", "--json"]) == 0
    return _last_json(capsys)


def _rotated_entries(home: VaultHome) -> list[dict[str, object]]:
    engine = make_engine(home.db_url)
    with engine.connect() as conn:
        entries = [json.loads(raw) for raw in ledger_store.iter_entries(conn)]
    engine.dispose()
    return [e for e in entries if e["action"] == "keys.rotated"]


def test_five_rotations_in_a_row_then_release_and_erasure_work(
        vault: tuple[VaultHome, str], capsys: pytest.CaptureFixture[str]) -> None:
    home, token = vault
    for n in range(1, 6):
        assert main(["keys", "rotate", "--json"]) == 0, f"rotation {n}"
        report = _last_json(capsys)
        assert report["kek_version"] == n + 1
        doc = _release(token, capsys)  # data under the rotated keys still opens
        assert {r["party_cd"] for r in doc["rows"]} == {"DEM", "REP", "UNA", "LIB"}  # type: ignore[attr-defined]
    provider = FileKeyProvider(home.kek_path)
    assert provider.versions() == [1, 2, 3, 4, 5, 6] and provider.current_version() == 6
    assert [e["details"]["kek_version"] for e in _rotated_entries(home)] == [2, 3, 4, 5, 6]  # type: ignore[index]
    engine = make_engine(home.db_url)
    with engine.connect() as conn:
        live = conn.execute(select(T_KEY.c.kek_version).where(T_KEY.c.state != "destroyed")).all()
        destroyed = conn.execute(select(T_KEY.c.id).where(T_KEY.c.state == "destroyed")).all()
    engine.dispose()
    assert live and {int(r.kek_version) for r in live} == {6}
    assert destroyed  # earlier rotations destroyed retired keys; later ones skipped them
    assert main(["erase", "--dataset", "nc", "--match", "voter_reg_num=100007", "--json"]) == 0
    assert _last_json(capsys)["subjects_erased"] == 1
    assert main(["keys", "rotate", "--json"]) == 0  # and once more after the erasure
    assert _last_json(capsys)["kek_version"] == 7
    assert main(["ledger", "verify", "--json"]) == 0
    assert _last_json(capsys)["verified"] is True


def test_failed_rotation_adds_no_kek_version(vault: tuple[VaultHome, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    home, _ = vault
    engine = make_engine(home.db_url)
    with engine.begin() as conn:  # a live data key whose wrapped bytes were damaged
        key_id, wrapped = conn.execute(select(T_KEY.c.id, T_KEY.c.wrapped)
                                       .where(T_KEY.c.state == "active").limit(1)).one()
        bad = bytes(wrapped[:-1]) + bytes([wrapped[-1] ^ 1])
        conn.execute(update(T_KEY).where(T_KEY.c.id == key_id).values(wrapped=bad))
    engine.dispose()
    for _ in range(3):
        assert main(["keys", "rotate"]) == 2
        err = capsys.readouterr().err
        assert "does not unwrap" in err and "Traceback" not in err
    assert FileKeyProvider(home.kek_path).versions() == [1]
    assert _rotated_entries(home) == []

