"""The workbench's JSON endpoints and pages on a real SQLite vault (FastAPI TestClient):
security headers, paging, filters, exports with proofs, downloads read back."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import polars as pl
import pytest
import rfc8785
from fastapi.testclient import TestClient

from flows.api import create_app
from ledger import merkle
from tests.web_helpers import WebVault, build
from vault.db import make_engine


@pytest.fixture(scope="module")
def wv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebVault, TestClient]]:
    tmp = tmp_path_factory.mktemp("webapi")
    with pytest.MonkeyPatch.context() as mp:
        found = build(tmp, mp)
        engine = make_engine(found.home.db_url)
        client = TestClient(create_app(found.home, engine))
        yield found, client
        client.close()
        engine.dispose()


def _h(wv: tuple[WebVault, TestClient], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {wv[0].tokens[role]}"}


def _release(wv: tuple[WebVault, TestClient]) -> dict[str, Any]:
    body = {"dataset": "voters", "by": ["party_cd"], "measures": ["count"], "epsilon": "0.5"}
    r = wv[1].post("/api/web/releases", json=body, headers=_h(wv, "analyst"))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_every_response_carries_the_security_headers(wv: tuple[WebVault, TestClient]) -> None:
    client = wv[1]
    for path in ("/", "/web/analyst", "/web/static/common.js", "/api/web/me",
                 "/api/ledger/checkpoint", "/healthz"):
        r = client.get(path, headers=_h(wv, "analyst"))
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp, path
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    assert client.get("/api/web/me", headers=_h(wv, "analyst")).headers[
        "cache-control"] == "no-store"
    # the public checkpoint keeps its own short cache
    assert "max-age" in client.get("/api/ledger/checkpoint").headers["cache-control"]


def test_pages_have_no_inline_script_and_load_nothing_from_outside(
        wv: tuple[WebVault, TestClient]) -> None:
    for page in ("/", "/web/analyst", "/web/compliance", "/web/steward"):
        html = wv[1].get(page).text
        assert "<script>" not in html and "http://" not in html and "https://" not in html
        assert " style=" not in html and "onclick" not in html


def test_catalog_shows_what_the_policy_allows(wv: tuple[WebVault, TestClient]) -> None:
    r = wv[1].get("/api/web/catalog", headers=_h(wv, "analyst")).json()
    [ds] = [d for d in r["datasets"] if d["dataset"] == "voters"]
    party = next(g for g in ds["group_by"] if g["column"] == "party_cd")
    assert "DEM" in party["keys"]
    assert "mean:birth_age" in ds["measures"] and ds["bounds"]["birth_age"] == [18, 110]


def test_preview_is_free_and_release_charts_the_released_values(
        wv: tuple[WebVault, TestClient]) -> None:
    client = wv[1]
    before = client.get("/api/web/budgets", headers=_h(wv, "analyst")).json()["budgets"]
    body = {"dataset": "voters", "by": ["party_cd"], "measures": ["count"], "epsilon": "0.5"}
    p = client.post("/api/web/preview", json=body, headers=_h(wv, "analyst")).json()
    assert p["cost"]["epsilon"] == "0.5" and p["accuracy"]["measures"]["count"]["accuracy"] > 0
    same = client.get("/api/web/budgets", headers=_h(wv, "analyst")).json()["budgets"]
    assert same == before  # a preview spends nothing
    out = _release(wv)
    svg = out["chart_svg"]
    assert svg.startswith("<svg") and "<script" not in svg
    for row in out["table"]:
        assert row["text"] in svg and row["low"] < row["value"] < row["high"]
    mine = client.get("/api/web/releases/mine", headers=_h(wv, "analyst")).json()["releases"]
    assert mine[0]["seq"] == out["seq"] and mine[0]["actor"] == "analyst-1"


def test_downloads_read_back_with_their_accuracy(wv: tuple[WebVault, TestClient]) -> None:
    out = _release(wv)
    seq, rows = out["seq"], out["result"]["rows"]
    get = wv[1].get
    url = f"/api/web/releases/{seq}/download"
    csv = pl.read_csv(io.BytesIO(get(url, params={"format": "csv"},
                                     headers=_h(wv, "analyst")).content))
    assert csv["count"].to_list() == [r["count"] for r in rows]
    assert (csv["count_accuracy"] > 0).all() and csv["confidence"][0] == 0.95
    pq = get(url, params={"format": "parquet"}, headers=_h(wv, "analyst")).content
    assert pl.read_parquet(io.BytesIO(pq))["count"].to_list() == [r["count"] for r in rows]
    meta = pl.read_parquet_metadata(io.BytesIO(pq))
    assert json.loads(meta["civicvault.release"])["accuracy"]["measures"]["count"]
    doc = get(url, params={"format": "json"}, headers=_h(wv, "analyst")).json()
    assert doc["rows"] == rows and doc["accuracy"]["confidence"] == 0.95
    # only the analyst who released it can download it
    other = get(url, params={"format": "csv"}, headers=_h(wv, "compliance"))
    assert other.status_code == 400


def test_compliance_pages_filter_and_export_with_proofs(
        wv: tuple[WebVault, TestClient]) -> None:
    client, h = wv[1], _h(wv, "compliance")
    _release(wv)
    # a denial to find: the analyst may not read the ledger
    assert client.get("/api/web/ledger/entries", headers=_h(wv, "analyst")).status_code == 403
    first = client.get("/api/web/ledger/entries", params={"limit": 5}, headers=h).json()
    assert len(first["entries"]) == 5 and first["total"] == first["size"]
    assert first["total_capped"] is False  # no filter: the exact number indexed
    seqs = [e["seq"] for e in first["entries"]]
    assert seqs == sorted(seqs, reverse=True)
    second = client.get("/api/web/ledger/entries",
                        params={"limit": 5, "before": first["next_before"]}, headers=h).json()
    assert second["entries"][0]["seq"] == seqs[-1] - 1
    denied = client.get("/api/web/ledger/entries", params={"section": "denials"},
                        headers=h).json()
    assert denied["entries"] and all(e["action"] == "policy.denied"
                                     for e in denied["entries"])
    assert any((e["details"] or {}).get("reason") for e in denied["entries"])
    by = client.get("/api/web/ledger/entries", params={"principal": "analyst-1",
                                                       "action": "release.dp"},
                    headers=h).json()
    assert by["total"] >= 1 and {e["actor"] for e in by["entries"]} == {"analyst-1"}
    # a release says who, dataset, group-by, measures, epsilon and its accuracy
    d = by["entries"][0]["details"]
    assert d["by"] == ["party_cd"] and d["measures"] == ["count"] and d["epsilon"] == "0.5"
    assert float(d["accuracy"]["count"]) > 0 and d["confidence"] == "0.95"
    future = client.get("/api/web/ledger/entries", params={"since": "2999-01-01"},
                        headers=h).json()
    assert future["total"] == 0 and future["entries"] == []
    bad = client.get("/api/web/ledger/entries", params={"since": "yesterday"}, headers=h)
    assert bad.status_code == 400 and "yesterday" not in bad.text
    lines = client.get("/api/web/ledger/export", params={"format": "jsonl",
                                                         "section": "releases"},
                       headers=h).text.splitlines()
    assert lines
    for line in lines:
        doc = json.loads(line)
        raw = rfc8785.dumps(doc["entry"])  # the leaf bytes are the entry's RFC 8785 JSON
        proof = doc["proof"]
        assert merkle.leaf_hash(raw).hex() == proof["leaf_hash"]
        root = merkle.root_from_inclusion_proof(
            proof["leaf_index"], proof["tree_size"], bytes.fromhex(proof["leaf_hash"]),
            [bytes.fromhex(p) for p in proof["inclusion_path"]])
        assert root.hex() == proof["root_hash"]
    csv = client.get("/api/web/ledger/export", params={"format": "csv",
                                                       "section": "releases"}, headers=h)
    frame = pl.read_csv(io.BytesIO(csv.content))
    assert frame.height == len(lines) and "inclusion_path" in frame.columns


def test_health_names_the_checkpoint_and_the_verdict(wv: tuple[WebVault, TestClient]) -> None:
    client = wv[1]
    assert client.get("/api/ledger/checkpoint").status_code == 200  # saves one
    h = client.get("/api/web/ledger/health", params={"refresh": True},
                   headers=_h(wv, "compliance")).json()
    cp, v = h["checkpoint"], h["verification"]
    assert cp["name"] == "latest signed checkpoint" and v["name"].startswith("verification")
    assert v["ok"] is True and v["verified_size"] >= cp["size"] == v["checkpoint_size"]
    import base64

    assert base64.b64decode(cp["root_base64"]).hex() == cp["root_hex"]
    assert base64.b64decode(v["root_base64"]).hex() == v["root_hex"]
    charts = client.get("/api/web/ledger/charts", headers=_h(wv, "compliance")).json()
    assert "analyst-1" in charts["timeline_actor_svg"]
    assert "release.dp" in charts["timeline_action_svg"]
    assert charts["spend"] and charts["spend"][-1]["cumulative"] > 0


def test_policy_view_diffs_against_the_replaced_policy(wv: tuple[WebVault, TestClient]) -> None:
    client = wv[1]
    text = (wv[0].home.policy_path).read_text("utf-8")
    changed = text.replace("limit = 5", "limit = 4")
    assert changed != text
    r = client.put("/api/policy", content=changed.encode(),
                   headers={**_h(wv, "admin"), "Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    p = client.get("/api/web/policy", headers=_h(wv, "steward")).json()
    assert p["previous_sha256"] == r.json()["previous"]
    assert "-limit = 5" in p["diff"] and "+limit = 4" in p["diff"]


def test_csv_export_does_not_hand_a_spreadsheet_a_formula(
        wv: tuple[WebVault, TestClient]) -> None:
    client, h = wv[1], _h(wv, "compliance")
    note = {"action": "note.review", "resource": "ledger", "purpose": "=HYPERLINK(1)"}
    assert client.post("/api/ledger/annotations", json=note, headers=h).status_code == 200
    params = {"format": "csv", "action": "note.review"}
    frame = pl.read_csv(io.BytesIO(client.get("/api/web/ledger/export", params=params,
                                              headers=h).content))
    assert frame["purpose"].to_list() == ["'=HYPERLINK(1)"]
    lines = client.get("/api/web/ledger/export", params={**params, "format": "jsonl"},
                       headers=h).text.splitlines()
    assert json.loads(lines[0])["entry"]["purpose"] == "=HYPERLINK(1)"  # exact in JSONL


def test_two_measures_are_charted_in_two_panels(wv: tuple[WebVault, TestClient]) -> None:
    body = {"dataset": "voters", "by": ["party_cd"], "measures": ["count", "mean:birth_age"],
            "epsilon": "0.2"}
    r = wv[1].post("/api/web/releases", json=body, headers=_h(wv, "analyst"))
    assert r.status_code == 200, r.text
    out = r.json()
    measures = {row["measure"] for row in out["table"]}
    assert measures == {"count", "mean_birth_age"}
    for row in out["table"]:  # every released value, of both measures, is drawn
        assert row["text"] in out["chart_svg"] and row["error"] > 0


def test_a_hundred_groups_chart_the_top_forty_and_say_so(
        wv: tuple[WebVault, TestClient]) -> None:
    body = {"dataset": "voters", "by": ["county_desc"], "measures": ["count"],
            "epsilon": "0.1"}
    out = wv[1].post("/api/web/releases", json=body, headers=_h(wv, "analyst")).json()
    assert len(out["table"]) == 100  # the policy's public county keys: all in the table
    assert "(top 40 by count)" in out["chart_svg"]
    top = sorted(out["table"], key=lambda r: -r["value"])[0]
    assert top["group"] in out["chart_svg"]
