"""What goes into the ledger is bounded and clean (issue 13).

Caller-typed names that the policy does not know are recorded as a length and a
SHA-256 prefix, never verbatim; every entry is capped (4 KiB unless the vault's own
state digests ask for more) at the one place entries are placed, and an entry over
its cap is refused with nothing written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from dp_helpers import ALICE, policy, source, vault_home
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from flows.api import create_app
from flows.cli import main
from ledger import store as ledger_store
from ledger.entry import MAX_ENTRY_BYTES, MAX_STATE_ENTRY_BYTES, EntryDraft
from ledger.errors import BadInput, EntryTooLarge
from vault.db import make_engine, migrate
from vault.dp import ReleaseRequest, run_release
from vault.home import VaultHome

HUGE_BY = [f"Jane Doe {i:05d}" for i in range(10_000)]  # valid column names, and PII-like


def _raws(engine: Engine, start: int = 0) -> list[bytes]:
    with engine.connect() as conn:
        return list(ledger_store.iter_entries(conn, start))


def _size(engine: Engine) -> int:
    with engine.connect() as conn:
        return ledger_store.size(conn)


def _assert_one_clean_entry(new: list[bytes]) -> None:
    assert len(new) == 1, [json.loads(r)["action"] for r in new]
    raw = new[0]
    assert len(raw) <= MAX_ENTRY_BYTES, len(raw)
    assert b"Jane" not in raw and b"Doe" not in raw
    entry = json.loads(raw)
    assert entry["action"] == "policy.denied"
    assert "10000 items" in json.dumps(entry["details"]["by"])


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    eng = make_engine(sqlite_url)
    migrate(eng)
    yield eng
    eng.dispose()


def test_denied_release_with_a_huge_by_list_adds_one_small_entry(
        sqlite_engine: Engine, tmp_path: Path) -> None:
    home = vault_home(sqlite_engine, tmp_path)
    before = _size(sqlite_engine)
    request = ReleaseRequest.build("voters", HUGE_BY, ["count"], Fraction(1))
    with pytest.raises(Exception) as info:
        run_release(sqlite_engine, home, ALICE, request, source=source(), policy=policy())
    assert "Jane" not in str(info.value)
    _assert_one_clean_entry(_raws(sqlite_engine, before))


def test_unknown_column_is_fingerprinted_known_one_kept(
        sqlite_engine: Engine, tmp_path: Path) -> None:
    home = vault_home(sqlite_engine, tmp_path)
    before = _size(sqlite_engine)
    request = ReleaseRequest.build("voters", ["county", "Jane Doe"], ["count", "sum:Jane"],
                                   Fraction(1))
    with pytest.raises(Exception) as info:
        run_release(sqlite_engine, home, ALICE, request, source=source(), policy=policy())
    assert "Jane" not in str(info.value)
    [raw] = _raws(sqlite_engine, before)
    assert b"Jane" not in raw
    details = json.loads(raw)["details"]
    assert details["by"][0] == "county" and "sha256" in details["by"][1]
    assert details["measures"][0] == "count" and details["measures"][1].startswith("sum:<4 chars")


def test_entry_over_the_cap_is_refused_and_nothing_is_written(sqlite_engine: Engine) -> None:
    before = _size(sqlite_engine)
    big = EntryDraft(actor="a", action="note.big", resource="r", details={"x": "0" * 5000})
    small = EntryDraft(actor="a", action="note.small", resource="r")
    with pytest.raises(EntryTooLarge) as info, sqlite_engine.begin() as conn:
        ledger_store.append(conn, [small, big])
    assert info.value.exit_code == 2 and "note.big" in str(info.value)
    assert "0000" not in str(info.value)
    assert _size(sqlite_engine) == before
    with ledger_store.GroupCommitter(sqlite_engine) as committer:
        with pytest.raises(EntryTooLarge):
            committer.append(big)
        committer.append(small)  # the group goes on
    assert _size(sqlite_engine) == before + 1
    # the vault's own state digests may ask for a larger cap, never past the hard one
    state = EntryDraft(actor="a", action="note.state", resource="r", details={"x": "0" * 5000},
                       max_bytes=MAX_STATE_ENTRY_BYTES)
    with sqlite_engine.begin() as conn:
        ledger_store.append(conn, [state])
    with pytest.raises(BadInput):
        EntryDraft(actor="a", action="note.x", resource="r", max_bytes=MAX_STATE_ENTRY_BYTES + 1)


def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> VaultHome:
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CIVICVAULT_DB_URL", raising=False)
    assert main(["init"]) == 0
    return VaultHome.from_env()


def test_huge_by_over_http_adds_one_small_entry(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    home = _home(tmp_path, monkeypatch)
    engine = make_engine(home.db_url)
    token = (tmp_path / "home" / "admin.token").read_text().strip()
    client = TestClient(create_app(home, engine))
    before = _size(engine)
    answer = client.post("/api/releases", headers={"Authorization": f"Bearer {token}"},
                         json={"dataset": "voters", "by": HUGE_BY, "measures": ["count"],
                               "epsilon": "1"})
    assert answer.status_code in (400, 403) and "Jane" not in answer.text
    _assert_one_clean_entry(_raws(engine, before))
    engine.dispose()


def test_huge_by_on_the_cli_adds_at_most_one_small_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = _home(tmp_path, monkeypatch)
    engine = make_engine(home.db_url)
    before = _size(engine)
    capsys.readouterr()
    code = main(["release", "--dataset", "voters", "--by", ",".join(HUGE_BY),
                 "--measure", "count", "--epsilon", "1"])
    err = capsys.readouterr().err
    assert code in (1, 2) and "Jane" not in err
    new = _raws(engine, before)
    assert len(new) <= 1
    if new:
        _assert_one_clean_entry(new)
    engine.dispose()
