"""A dataset name a caller typed reaches the ledger only once the vault holds that dataset
(issue 13): a refusal or a not-found on any other name records its length and a SHA-256
prefix (``vocab.dataset(name, known=False)``), in the resource and in the reason, through
the service and through the CLI. A held dataset keeps its name (the control)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from flows.cli import main
from ledger import store as ledger_store
from ledger.errors import BadInput, CivicVaultError, PolicyDenied
from vault import vocab
from vault.db import make_engine
from vault.dp import ReleaseRequest
from vault.home import VaultHome
from vault.service import Vault

TYPED = "Jane_Doe_1984-06-02"  # a valid dataset name that reads like personal data
HELD = "nc"


def run(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(list(argv))
    assert "Traceback" not in err.getvalue()
    return code, err.getvalue()


@dataclass
class Home:
    home: VaultHome
    tmp: Path
    tokens: dict[str, str]

    def raws(self) -> list[bytes]:
        engine = make_engine(self.home.db_url)
        try:
            with engine.connect() as conn:
                return list(ledger_store.iter_entries(conn))
        finally:
            engine.dispose()

    def added(self, act: Callable[[], object]) -> list[bytes]:
        """The entries ``act`` adds (it may raise a CivicVaultError)."""
        before = len(self.raws())
        with contextlib.suppress(CivicVaultError):
            act()
        return self.raws()[before:]

    def as_(self, who: str) -> Vault:
        return Vault.open(self.home, token=self.tokens[who])


@pytest.fixture
def vh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    for var in ("CIVICVAULT_DB_URL", "CIVICVAULT_TOKEN", "CIVICVAULT_WITNESS_HOME",
                "PREFECT_API_URL"):
        monkeypatch.delenv(var, raising=False)
    assert run("init")[0] == 0
    home = VaultHome.from_env()
    csv = tmp_path / "voters.csv"
    csv.write_text("voter_reg_num,county_desc,party_cd,birth_age\n"
                   + "".join(f"{8_200_000 + i},WAKE,{'DEM' if i % 2 else 'REP'},{30 + i}\n"
                             for i in range(30)), encoding="utf-8")
    with Vault.open(home) as admin:
        tokens = {name: admin.principals_add(name, role) for name, role in
                  (("ana", "analyst"), ("sam", "steward"))}
        admin.ingest(csv, HELD)
        admin.budget_set("ana", HELD, Fraction(3))
    return Home(home, tmp_path, tokens)


def _clean(new: list[bytes], *, action: str, resource: str) -> dict[str, Any]:
    assert len(new) == 1, [json.loads(r)["action"] for r in new]
    assert TYPED.encode() not in new[0] and b"Jane" not in new[0]
    entry: dict[str, Any] = json.loads(new[0])
    assert (entry["action"], entry["resource"]) == (action, resource)
    return entry


UNHELD = vocab.dataset(TYPED, known=False)


def test_the_unheld_resource_is_a_fingerprint() -> None:
    assert UNHELD.startswith("dataset/<19 chars, sha256 ") and vocab.is_fingerprint(
        UNHELD.partition("/")[2])
    assert vocab.dataset(TYPED) == f"dataset/{TYPED}"  # a held name stays as it is
    assert vocab.budget("ana", TYPED, known=False) == f"budget/ana/{UNHELD.partition('/')[2]}"


# -- denials ----------------------------------------------------------------------------------


def test_a_denied_erase_names_an_unheld_dataset_by_its_fingerprint(vh: Home) -> None:
    with vh.as_("ana") as ana:
        new = vh.added(lambda: ana.erase(TYPED, {"voter_reg_num": "8200001"}))
        _clean(new, action=vocab.POLICY_DENIED, resource=UNHELD)
        held = vh.added(lambda: ana.erase(HELD, {"voter_reg_num": "8200001"}))
    assert json.loads(held[0])["resource"] == vocab.dataset(HELD)  # the control


def test_a_denied_ingest_and_budget_name_no_unheld_dataset(vh: Home) -> None:
    with vh.as_("ana") as ana:
        with pytest.raises(PolicyDenied) as info:
            ana.ingest(vh.tmp / "voters.csv", TYPED)
        assert TYPED not in str(info.value)
        new = vh.added(lambda: ana.ingest(vh.tmp / "voters.csv", TYPED))
        _clean(new, action=vocab.POLICY_DENIED, resource=UNHELD)
        new = vh.added(lambda: ana.ingest_plan(vh.tmp / "voters.csv", TYPED))  # flows' door
        _clean(new, action=vocab.POLICY_DENIED, resource=UNHELD)
        new = vh.added(lambda: ana.budget_set("ana", TYPED, Fraction(1)))
        _clean(new, action=vocab.POLICY_DENIED,
               resource=vocab.budget("ana", TYPED, known=False))


def test_a_denied_release_names_no_unheld_dataset(vh: Home) -> None:
    request = ReleaseRequest.build(TYPED, ["party_cd"], ["count"], Fraction("0.01"))
    with vh.as_("sam") as steward:  # the policy lets no steward release
        new = vh.added(lambda: steward.release(request))
    _clean(new, action=vocab.POLICY_DENIED, resource=UNHELD)


# -- not found ----------------------------------------------------------------------------------


def test_a_release_on_an_unheld_dataset_is_refused_without_its_name(vh: Home) -> None:
    request = ReleaseRequest.build(TYPED, ["party_cd"], ["count"], Fraction("0.01"))
    with vh.as_("ana") as ana:
        with pytest.raises((BadInput, PolicyDenied)):
            ana.release(request)
        new = vh.added(lambda: ana.release(request))
        entry = _clean(new, action=vocab.POLICY_DENIED, resource=UNHELD)
        assert UNHELD.partition("/")[2] in entry["details"]["reason"]  # the reason names it so
        new = vh.added(lambda: ana.preview(request))
        _clean(new, action=vocab.POLICY_DENIED, resource=UNHELD)


def test_an_allowed_erase_or_budget_on_an_unheld_dataset_writes_nothing(vh: Home) -> None:
    with Vault.open(vh.home) as admin:
        with pytest.raises(BadInput):
            admin.erase(TYPED, {"voter_reg_num": "8200001"})
        assert vh.added(lambda: admin.erase(TYPED, {"voter_reg_num": "8200001"})) == []
        assert vh.added(lambda: admin.budget_set("ana", TYPED, Fraction(1))) == []
    with vh.as_("sam") as steward:
        with pytest.raises(BadInput):
            steward.reveal(TYPED, {"voter_reg_num": "8200001"}, "subject-access-request")
        assert vh.added(lambda: steward.reveal(TYPED, {"voter_reg_num": "8200001"},
                                               "subject-access-request")) == []


# -- the CLI ----------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ("erase", "--dataset", TYPED, "--match", "voter_reg_num=8200001"),
    ("ingest", "{tmp}/voters.csv", "--dataset", TYPED),
    ("budget", "set", "--analyst", "ana", "--dataset", TYPED, "--epsilon", "1"),
    ("release", "--dataset", TYPED, "--by", "party_cd", "--measure", "count",
     "--epsilon", "0.01"),
], ids=["erase", "ingest", "budget_set", "release"])
def test_the_cli_ledgers_no_unheld_dataset_name(vh: Home, argv: tuple[str, ...]) -> None:
    before = len(vh.raws())
    args = [a.replace("{tmp}", str(vh.tmp)) for a in argv]
    code, _ = run("--token", vh.tokens["ana"], *args)
    assert code in (1, 2)
    new = vh.raws()[before:]
    assert len(new) == 1
    assert TYPED.encode() not in new[0] and b"Jane" not in new[0]
    assert json.loads(new[0])["action"] == vocab.POLICY_DENIED


# -- the HTTP API (the same service) ----------------------------------------------------------


@pytest.mark.parametrize(("path", "body"), [
    ("/api/erasures", {"dataset": TYPED, "match": {"voter_reg_num": "8200001"}}),
    ("/api/releases", {"dataset": TYPED, "by": ["party_cd"], "measures": ["count"],
                       "epsilon": "0.01"}),
], ids=["erase", "release"])
def test_the_api_ledgers_no_unheld_dataset_name(vh: Home, path: str,
                                                body: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    from flows.api import create_app

    engine = make_engine(vh.home.db_url)
    try:
        client = TestClient(create_app(vh.home, engine))
        before = len(vh.raws())
        answer = client.post(path, json=body,
                             headers={"Authorization": f"Bearer {vh.tokens['ana']}"})
        assert answer.status_code in (400, 403)
        new = vh.raws()[before:]
        assert len(new) == 1 and TYPED.encode() not in new[0] and b"Jane" not in new[0]
        assert json.loads(new[0])["resource"] == UNHELD
    finally:
        engine.dispose()
