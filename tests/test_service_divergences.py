"""The divergences of issue 13, each held shut by the one vault service.

- ``budget show`` by an analyst: the CLI and ``GET /api/budgets`` go through the same
  ``Vault.budget_show``, so they answer the same rows, decide the same and ledger the
  same resource (before: CLI exit 0, API 403 + ``policy.denied`` on another name).
- Saved checkpoints: the CLI, the API, the audit flow and the audit report read and
  write one store; whoever saved the newest, everyone uses it, and nobody signs or
  saves a tree that does not extend it.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flows.api import create_app
from flows.cli import main
from ledger import store as ledger_store
from ledger.errors import BadInput
from vault import vocab
from vault.db import make_engine
from vault.home import VaultHome
from vault.service import Vault


def run(*argv: str) -> tuple[int, str, str]:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    err = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    out.flush()
    assert "Traceback" not in err.getvalue()
    return code, raw.getvalue().decode("utf-8"), err.getvalue()


@dataclass
class Home:
    home: VaultHome
    tmp: Path

    def entries(self) -> list[dict[str, Any]]:
        engine = make_engine(self.home.db_url)
        try:
            with engine.connect() as conn:
                return [json.loads(e) for e in ledger_store.iter_entries(conn)]
        finally:
            engine.dispose()

    def client(self) -> TestClient:
        return TestClient(create_app(self.home, make_engine(self.home.db_url)))


@pytest.fixture
def vh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    for var in ("CIVICVAULT_DB_URL", "CIVICVAULT_TOKEN", "CIVICVAULT_WITNESS_HOME",
                "PREFECT_API_URL"):
        monkeypatch.delenv(var, raising=False)
    assert run("init")[0] == 0
    return Home(VaultHome.from_env(), tmp_path)


# -- budgets over HTTP ------------------------------------------------------------------------


def _seed_budgets(vh: Home) -> dict[str, str]:
    csv = vh.tmp / "voters.csv"
    csv.write_text("voter_reg_num,county_desc,party_cd,birth_age\n"
                   + "".join(f"{8_100_000 + i},WAKE,{'DEM' if i % 2 else 'REP'},{30 + i}\n"
                             for i in range(30)), encoding="utf-8")
    with Vault.open(vh.home) as admin:
        tokens = {name: admin.principals_add(name, role) for name, role in
                  (("ana", "analyst"), ("bob", "analyst"), ("cora", "compliance"))}
        admin.ingest(csv, "nc")
        admin.budget_set("ana", "nc", Fraction(3))
        admin.budget_set("bob", "nc", Fraction(1))
    return tokens


def test_analyst_budgets_over_http_agree_with_the_cli(vh: Home) -> None:
    tokens = _seed_budgets(vh)
    client = vh.client()

    before = len(vh.entries())
    code, out, err = run("--token", tokens["ana"], "budget", "show", "--json")
    assert code == 0, err
    cli_entries = vh.entries()[before:]
    before = len(vh.entries())
    response = client.get("/api/budgets", headers={"Authorization": f"Bearer {tokens['ana']}"})
    api_entries = vh.entries()[before:]

    assert response.status_code == 200, response.text  # was 403 + policy.denied
    assert response.json() == json.loads(out)
    assert [b["analyst"] for b in response.json()["budgets"]] == ["ana"]  # own only
    strip = [(e["action"], e["actor"], e["resource"]) for e in cli_entries]
    assert strip == [(e["action"], e["actor"], e["resource"]) for e in api_entries]
    assert strip == [(vocab.POLICY_ALLOWED, "ana", vocab.budget("ana"))]


def test_analyst_asking_for_another_analysts_budget_is_denied_by_both(vh: Home) -> None:
    tokens = _seed_budgets(vh)
    client = vh.client()
    before = len(vh.entries())
    code, out, err = run("--token", tokens["ana"], "budget", "show", "--analyst", "bob")
    assert code == 1 and out == "" and "denied" in err
    cli_entries = vh.entries()[before:]
    before = len(vh.entries())
    response = client.get("/api/budgets", params={"analyst": "bob"},
                          headers={"Authorization": f"Bearer {tokens['ana']}"})
    assert response.status_code == 403  # before: silently answered ana's own rows
    api_entries = vh.entries()[before:]
    assert [(e["action"], e["resource"]) for e in cli_entries] == \
        [(e["action"], e["resource"]) for e in api_entries] == \
        [(vocab.POLICY_DENIED, vocab.budget("bob"))]


def test_compliance_sees_every_analysts_budget_on_both(vh: Home) -> None:
    tokens = _seed_budgets(vh)
    code, out, _ = run("--token", tokens["cora"], "budget", "show", "--json")
    response = vh.client().get("/api/budgets",
                               headers={"Authorization": f"Bearer {tokens['cora']}"})
    assert code == 0 and response.status_code == 200
    assert response.json() == json.loads(out)
    assert sorted(b["analyst"] for b in response.json()["budgets"]) == ["ana", "bob"]


# -- one checkpoint store ---------------------------------------------------------------------


def _newest(vh: Home) -> Any:
    from vault.transparency import checkpoint_store

    latest = checkpoint_store(vh.home).latest()
    assert latest is not None
    return latest


def _grow(n: int) -> None:
    for i in range(n):
        assert run("ledger", "annotate", "--action", "note.grow", "--resource", f"r/{i}")[0] == 0


def _forge_a_rollback(vh: Home) -> Path:
    """A correctly signed checkpoint of a larger tree than the ledger holds (as if the
    ledger had been truncated after it was published): the one store must stop there."""
    from ledger.checkpoint import sign_checkpoint
    from ledger.signer import Signer

    size = len(vh.entries()) + 50
    note = sign_checkpoint([Signer.load(vh.home.signing_key_path)], vh.home.identity(), size,
                           b"\x07" * 32)
    path = vh.home.checkpoints_dir / f"{size:012d}-99991231T235959Z.checkpoint"
    path.write_text(note, encoding="utf-8")
    return path


def test_api_signs_and_saves_through_the_one_store_and_refuses_a_rollback(vh: Home) -> None:
    assert run("ledger", "checkpoint")[0] == 0
    cli_size = _newest(vh).size
    _grow(3)
    client = vh.client()
    note = client.get("/api/ledger/checkpoint").text
    newest = _newest(vh)
    assert newest.note == note  # signed and saved, in the same store
    assert newest.size == len(vh.entries()) > cli_size
    assert run("ledger", "checkpoint")[1] == note  # the CLI serves the API's checkpoint

    forged = _forge_a_rollback(vh)
    files = set(vh.home.checkpoints_dir.iterdir())
    _grow(1)
    response = vh.client().get("/api/ledger/checkpoint")
    assert response.status_code != 200 and "Traceback" not in response.text
    assert response.json()["type"].endswith("/ledger-tampered")
    assert set(vh.home.checkpoints_dir.iterdir()) == files  # nothing signed, nothing saved
    assert run("ledger", "checkpoint")[0] == 1
    assert forged.exists()


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    from flows import prefect_env

    prefect_env.configure()
    from prefect.testing.utilities import prefect_test_harness

    from flows.flow_runtime import dispose_engines

    with prefect_test_harness(server_startup_timeout=120):
        yield
    dispose_engines()


@pytest.mark.prefect
def test_cli_audit_flow_report_and_verify_use_the_newest_checkpoint(
        vh: Home, prefect_harness: None) -> None:
    """The issue's case: the CLI saved a smaller tree, the audit flow a larger one; the
    report and ``ledger verify`` must both use the audit flow's, and the API extends it."""
    from flows.audit import audit, previous_checkpoint

    _grow(2)
    assert run("ledger", "checkpoint")[0] == 0
    cli_saved = _newest(vh)
    _grow(5)
    result = audit(home=str(vh.home.root))
    assert result["verdict"] == "OK" and result["previous_size"] == cli_saved.size
    flow_saved = _newest(vh)
    assert flow_saved.path.name == result["checkpoint"]
    assert flow_saved.size == result["checkpoint_size"] > cli_saved.size

    report = vh.tmp / "report.html"
    code, out, err = run("audit", "report", "--out", str(report), "--json")
    assert code == 0, err
    root_b64 = flow_saved.note.split("\n")[2]
    assert root_b64 in report.read_text(encoding="utf-8")  # the flow's, not the CLI's
    assert cli_saved.note.split("\n")[2] not in report.read_text(encoding="utf-8")
    code, out, err = run("ledger", "verify", "--fast", "--json")
    assert code == 0, err
    assert json.loads(out)["checkpoint"]["size"] == flow_saved.size

    note = vh.client().get("/api/ledger/checkpoint").text  # extends the flow's checkpoint
    assert _newest(vh).note == note and _newest(vh).size > flow_saved.size
    prev = previous_checkpoint(vh.home)
    assert prev is not None and prev[0] == _newest(vh).path

    _forge_a_rollback(vh)
    _grow(1)
    from ledger.errors import LedgerTampered

    with pytest.raises(LedgerTampered):
        audit(home=str(vh.home.root))  # the audit flow refuses to sign it too


# -- the service on both databases ------------------------------------------------------------


def test_one_transaction_operations_on_sqlite_and_postgresql(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rotation, erasure, reveal, budgets and policy apply commit their decision with their
    change on both backends (lock order: ledger, then vault), and the vault still verifies."""
    from policies.load import default_policy_text
    from vault.service import VerifyReport

    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CIVICVAULT_DB_URL", db_url)
    monkeypatch.delenv("CIVICVAULT_TOKEN", raising=False)
    assert run("init")[0] == 0
    csv = tmp_path / "voters.csv"
    csv.write_text("voter_reg_num,county_desc,party_cd,birth_age\n"
                   + "".join(f"{8_200_000 + i},WAKE,DEM,{30 + i}\n" for i in range(20)),
                   encoding="utf-8")
    policy = tmp_path / "policy.toml"
    policy.write_text(default_policy_text(), encoding="utf-8")
    with Vault.open(tmp_path / "home") as admin:
        steward = admin.acting_as(admin.principals_add("stew", "steward"))
        admin.ingest(csv, "nc")
        admin.budget_set("stew", "nc", Fraction(1))
        rotated = admin.keys_rotate(reencrypt=True)
        assert rotated["kek_version"] >= 2 and rotated["batches_resealed"] >= 1
        done = steward.reveal("nc", {"voter_reg_num": "8200003"}, "legal-hold")
        assert len(done.subjects) == 1
        report, seq = steward.erase("nc", {"voter_reg_num": "8200003"})
        assert report.subjects_erased == 1 and seq is not None
        admin.policy_apply(policy)
        with pytest.raises(BadInput):
            admin.principals_revoke("admin")  # itself: rolled back with its decision
        found = admin.verify(VerifyReport(mode="full"))
        assert found.state.erased_subjects == 1
        log = [json.loads(raw) for chunk in admin.export() for raw in chunk]
    entries = [e["action"] for e in log]
    rotation = entries.index(vocab.KEYS_ROTATED)
    decision = max(i for i in range(rotation) if entries[i] == vocab.POLICY_ALLOWED)
    assert log[decision]["details"]["op"] == "keys.rotate"  # the decision, then the change:
    assert set(entries[decision + 1:rotation]) <= {vocab.KEYS_CREATED}  # one transaction
    assert entries.count(vocab.VAULT_REVEAL) == entries.count(vocab.VAULT_ERASE) == 1
