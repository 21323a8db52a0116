"""The HTTP API on a real vault: bearer auth, policy, ledger, OpenAPI."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flows.api import create_app
from flows.cli import main
from vault.db import make_engine
from vault.home import VaultHome


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CIVICVAULT_DB_URL", raising=False)
    assert main(["init"]) == 0
    home = VaultHome.from_env()
    return TestClient(create_app(home, make_engine(home.db_url)))


def _admin(tmp_path: Path) -> dict[str, str]:
    token = (tmp_path / "home" / "admin.token").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


def test_openapi_published(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/releases" in spec["paths"] and "/api/ledger/proof/inclusion" in spec["paths"]


def test_missing_and_forged_tokens_refused(client: TestClient) -> None:
    proof = "/api/ledger/proof/inclusion?index=0"
    assert client.get(proof).status_code == 401
    bad = {"Authorization": "Bearer cvt_" + "A" * 43}
    assert client.get(proof, headers=bad).status_code == 401
    # public material is not an access: the checkpoint and verifier key need no token
    assert client.get("/api/ledger/checkpoint").status_code == 200
    assert client.get("/api/ledger/pubkey", headers=bad).status_code == 200


def test_checkpoint_and_proofs_for_admin(client: TestClient, tmp_path: Path) -> None:
    h = _admin(tmp_path)
    note = client.get("/api/ledger/checkpoint", headers=h).text
    origin, size = note.splitlines()[:2]
    assert origin.startswith("civicvault.local/") and int(size) >= 1
    proof = client.get("/api/ledger/proof/inclusion", params={"index": 0}, headers=h).json()
    assert proof["leaf_index"] == 0 and proof["tree_size"] >= 1
    audit = client.get("/api/audit", headers=h).json()
    assert audit["verdict"]["ok"] is True
    assert audit["summary"]["by_action"]["policy.allowed"] >= 1


def test_dashboard_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "civicvault" in page.text


def test_proofs_match_the_cli_shape_and_bad_ranges_are_400(client: TestClient,
                                                           tmp_path: Path) -> None:
    h = _admin(tmp_path)
    proof = client.get("/api/ledger/proof/inclusion", params={"index": 0, "size": 1},
                       headers=h).json()
    assert set(proof) == {"leaf_index", "tree_size", "leaf_hash", "root_hash", "inclusion_path"}
    assert proof["inclusion_path"] == [] and proof["leaf_hash"] == proof["root_hash"]
    cons = client.get("/api/ledger/proof/consistency", params={"old": 1}, headers=h).json()
    assert cons["old_size"] == 1 and cons["new_size"] >= 2 and cons["consistency_path"]
    bad = client.get("/api/ledger/proof/inclusion", params={"index": 99, "size": 2}, headers=h)
    assert bad.status_code == 400 and "detail" in bad.json()


def test_a_path_naming_a_person_is_not_echoed_in_problem_details(
    client: TestClient, tmp_path: Path
) -> None:
    """POST /api/ingest and /api/classify take a server path: a refusal names what was
    wrong, never that path. (problems.safe_detail already replaces a detail that echoes
    the request with fixed advice; now the detail says what to fix and passes it.)"""
    h = _admin(tmp_path)
    missing = tmp_path / "canvass-jane-doe-4417.csv"
    r = client.post("/api/ingest", json={"path": str(missing), "dataset": "turnout"}, headers=h)
    assert 400 <= r.status_code < 500 and "given to ingest" in r.text
    assert "jane-doe-4417" not in r.text
    ragged = tmp_path / "jane-doe-4417.csv"
    ragged.write_text("a,b\n1,2\n3,4,5\n", encoding="utf-8")
    for route, body in (("/api/ingest", {"path": str(ragged), "dataset": "turnout"}),
                        ("/api/classify", {"path": str(ragged)})):
        r = client.post(route, json=body, headers=h)
        assert 400 <= r.status_code < 500 and "the file: line 3" in r.text, r.text
        assert "jane-doe-4417" not in r.text
