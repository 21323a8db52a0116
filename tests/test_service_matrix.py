"""Every role x every operation through the three doors: the Python service, the CLI and
the HTTP API (FastAPI TestClient). All three must agree: allowed or denied, and the
exact ledger actions each run adds.

One row per operation of the public contract: how the service, the CLI and the API are
asked. ``{role}``/``{ch}`` make names that must not clash between runs (a new principal,
a new dataset, ...); the three doors of one (operation, role) run back to back, so
nothing else changes the vault in between. The CLI-only matrix (``test_authz_matrix``)
stays; this one proves the shells are thin.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flows.api import create_app
from flows.cli import main
from ledger import store as ledger_store
from ledger.errors import BadInput, CivicVaultError
from policies.load import default_policy_text
from vault.db import make_engine
from vault.dp import ReleaseRequest, SegmentRequest
from vault.home import VaultHome
from vault.service import Vault, VerifyReport

ROLES = ("admin", "ingestor", "steward", "analyst", "compliance")
ALL = frozenset(ROLES)
CHANNELS = ("service", "cli", "api")
SECRET_IDS = [f"{9_300_000 + i}" for i in range(40)]
PUBLIC = "public"  # the outcome of public material: no decision, no entry

ServiceCall = Callable[[Vault, "Ctx"], object]
ApiCall = tuple[str, str, dict[str, Any]]  # method, path, request kwargs


@dataclass(frozen=True)
class Ctx:
    role: str
    ch: str
    tmp: Path

    def fill(self, text: str) -> str:
        return text.replace("{role}", self.role).replace("{ch}", self.ch).replace(
            "{tmp}", str(self.tmp))


@dataclass(frozen=True)
class Op:
    name: str
    allowed: frozenset[str]
    service: ServiceCall
    cli: tuple[str, ...]
    api: ApiCall


def _release_request() -> ReleaseRequest:
    return ReleaseRequest.build("seed", ["party_cd"], ["count"], Fraction("0.01"))


OPS: tuple[Op, ...] = (
    Op("ingest", frozenset({"ingestor", "admin"}),
       lambda v, c: v.ingest(c.tmp / "voters.csv", c.fill("m_{role}_{ch}")),
       ("ingest", "{tmp}/voters.csv", "--dataset", "m_{role}_{ch}", "--json"),
       ("POST", "/api/ingest", {"json": {"path": "{tmp}/voters.csv",
                                         "dataset": "m_{role}_{ch}"}})),
    Op("classify", frozenset({"ingestor", "steward", "admin"}),
       lambda v, c: v.classify(c.tmp / "voters.csv"),
       ("classify", "{tmp}/voters.csv", "--json"),
       ("POST", "/api/classify", {"json": {"path": "{tmp}/voters.csv"}})),
    Op("release", frozenset({"analyst"}),
       lambda v, c: v.release(_release_request()),
       ("release", "--dataset", "seed", "--by", "party_cd", "--measure", "count",
        "--epsilon", "0.01", "--json"),
       ("POST", "/api/releases", {"json": {"dataset": "seed", "by": ["party_cd"],
                                           "measures": ["count"], "epsilon": "0.01"}})),
    Op("release.preview", frozenset({"analyst"}),
       lambda v, c: v.preview(_release_request()),
       ("release", "--dataset", "seed", "--by", "party_cd", "--measure", "count",
        "--epsilon", "0.01", "--preview", "--json"),
       ("POST", "/api/releases", {"json": {"dataset": "seed", "by": ["party_cd"],
                                           "measures": ["count"], "epsilon": "0.01",
                                           "preview": True}})),
    Op("segment", frozenset({"analyst"}),
       lambda v, c: v.segment(SegmentRequest("seed", ("birth_age",), 2, Fraction("0.01"))),
       ("segment", "--dataset", "seed", "--features", "birth_age", "--k", "2",
        "--epsilon", "0.01", "--json"),
       ("POST", "/api/segments", {"json": {"dataset": "seed", "features": ["birth_age"],
                                           "k": 2, "epsilon": "0.01"}})),
    Op("link.build", frozenset({"admin", "steward"}),
       lambda v, c: v.link_build("nc_voter_history", purpose="match-quality"),
       ("link", "build", "nc_voter_history", "--purpose", "match-quality", "--json"),
       ("POST", "/api/links/nc_voter_history/build", {"json": {"purpose": "match-quality"}})),
    Op("link.report", frozenset({"analyst"}),
       lambda v, c: v.link_report("nc_voter_history", None, Fraction("0.01"),
                                  purpose="match-quality"),
       ("link", "report", "nc_voter_history", "--epsilon", "0.01", "--purpose",
        "match-quality", "--json"),
       ("POST", "/api/links/nc_voter_history/report",
        {"json": {"epsilon": "0.01", "purpose": "match-quality"}})),
    Op("budget.set", frozenset({"admin", "steward"}),
       lambda v, c: v.budget_set("analyst-1", "seed", Fraction(1)),
       ("budget", "set", "--analyst", "analyst-1", "--dataset", "seed", "--epsilon", "1"),
       ("PUT", "/api/budgets", {"json": {"analyst": "analyst-1", "dataset": "seed",
                                         "epsilon": "1"}})),
    Op("budget.show", frozenset({"analyst", "compliance", "admin"}),
       lambda v, c: v.budget_show(),
       ("budget", "show", "--json"),
       ("GET", "/api/budgets", {})),
    Op("budget.show.other", frozenset({"compliance", "admin"}),
       lambda v, c: v.budget_show("someone-else"),
       ("budget", "show", "--analyst", "someone-else", "--json"),
       ("GET", "/api/budgets", {"params": {"analyst": "someone-else"}})),
    Op("erase", frozenset({"steward", "admin"}),
       lambda v, c: v.erase("seed", {"voter_reg_num": "1"}),
       ("erase", "--dataset", "seed", "--match", "voter_reg_num=1", "--json"),
       ("POST", "/api/erasures", {"json": {"dataset": "seed",
                                           "match": {"voter_reg_num": "1"}}})),
    Op("reveal", frozenset({"steward"}),
       lambda v, c: v.reveal("seed", {"voter_reg_num": SECRET_IDS[5]}, "legal-hold"),
       ("reveal", "--dataset", "seed", "--match", f"voter_reg_num={SECRET_IDS[5]}",
        "--purpose", "legal-hold", "--json"),
       ("POST", "/api/reveals", {"json": {"dataset": "seed",
                                          "match": {"voter_reg_num": SECRET_IDS[5]},
                                          "purpose": "legal-hold"}})),
    Op("keys.rotate", frozenset({"admin"}),
       lambda v, c: v.keys_rotate(reencrypt=True),
       ("keys", "rotate", "--json"),
       ("POST", "/api/keys/rotate", {})),
    Op("principals.add", frozenset({"admin"}),
       lambda v, c: v.principals_add(c.fill("new-{role}-{ch}"), "analyst"),
       ("principals", "add", "new-{role}-{ch}", "--role", "analyst", "--json"),
       ("POST", "/api/principals", {"json": {"name": "new-{role}-{ch}", "role": "analyst"}})),
    Op("principals.list", frozenset({"admin", "compliance"}),
       lambda v, c: v.principals_list(),
       ("principals", "list", "--json"),
       ("GET", "/api/principals", {})),
    Op("principals.revoke", frozenset({"admin"}),
       lambda v, c: v.principals_revoke(c.fill("victim-{role}-{ch}")),
       ("principals", "revoke", "victim-{role}-{ch}"),
       ("POST", "/api/principals/victim-{role}-{ch}/revoke", {})),
    Op("policy.show", ALL,
       lambda v, c: v.policy_show(),
       ("policy", "show", "--json"),
       ("GET", "/api/policy", {})),
    Op("policy.apply", frozenset({"admin"}),
       lambda v, c: v.policy_apply(c.tmp / "policy.toml"),
       ("policy", "apply", "{tmp}/policy.toml"),
       ("PUT", "/api/policy", {"content": "@policy", "headers": {
           "Content-Type": "text/plain"}})),
    Op("ledger.annotate", frozenset({"compliance", "admin"}),
       lambda v, c: v.annotate([("note.test", c.fill("matrix/{role}"), None)]),
       ("ledger", "annotate", "--action", "note.test", "--resource", "matrix/{role}"),
       ("POST", "/api/ledger/annotations", {"json": {"action": "note.test",
                                                     "resource": "matrix/{role}"}})),
    Op("ledger.verify", frozenset({"compliance", "steward", "admin"}),
       lambda v, c: v.verify(VerifyReport(mode="fast")),
       ("ledger", "verify", "--fast", "--json"),
       ("POST", "/api/ledger/verify", {"params": {"fast": "true"}})),
    Op("ledger.export", frozenset({"compliance", "steward", "admin"}),
       lambda v, c: list(v.export()),
       ("ledger", "export"),
       ("GET", "/api/ledger/export", {})),
    Op("ledger.prove", frozenset({"compliance", "steward", "admin"}),
       lambda v, c: v.prove(0),
       ("ledger", "prove", "--index", "0", "--json"),
       ("GET", "/api/ledger/proof/inclusion", {"params": {"index": 0}})),
    Op("ledger.consistency", frozenset({"compliance", "steward", "admin"}),
       lambda v, c: v.consistency(1),
       ("ledger", "consistency", "--old", "1", "--json"),
       ("GET", "/api/ledger/proof/consistency", {"params": {"old": 1}})),
    Op("audit.report", frozenset({"compliance", "admin"}),
       lambda v, c: v.audit(),
       ("audit", "report", "--out", "{tmp}/audit-{role}-{ch}.html"),
       ("GET", "/api/audit", {})),
    Op("ledger.checkpoint", frozenset({PUBLIC}),
       lambda v, c: v.checkpoint(),
       ("ledger", "checkpoint"),
       ("GET", "/api/ledger/checkpoint", {"public": True})),
    Op("ledger.pubkey", frozenset({PUBLIC}),
       lambda v, c: v.pubkey(),
       ("ledger", "pubkey"),
       ("GET", "/api/ledger/pubkey", {"public": True})),
)


@dataclass
class Fixture:
    tmp: Path
    home: VaultHome
    tokens: dict[str, str]
    client: TestClient

    def cli(self, argv: list[str], token: str) -> tuple[int, str]:
        raw = io.BytesIO()  # `ledger export` writes bytes to sys.stdout.buffer
        out = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        err = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--token", token, *argv])
        out.flush()
        assert "Traceback" not in err.getvalue()
        return code, err.getvalue()

    def entries(self) -> list[dict[str, Any]]:
        engine = make_engine(self.home.db_url)
        try:
            with engine.connect() as conn:
                return [json.loads(e) for e in ledger_store.iter_entries(conn)]
        finally:
            engine.dispose()


def _voters_csv(path: Path) -> None:
    parties = ["DEM", "REP", "UNA", "LIB"]
    counties = ["CHATHAM", "WAKE", "DURHAM"]
    lines = ["voter_reg_num,first_name,last_name,county_desc,party_cd,birth_age"]
    for i in range(40):
        lines.append(f"{SECRET_IDS[i]},Qwilla,Zyxquor{i:03d},{counties[i % 3]},"
                     f"{parties[i % 4]},{20 + (i * 7) % 70}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _linked_csvs(tmp: Path) -> None:
    voters = ["ncid,first_name,last_name,county_desc,party_cd,birth_age"]
    history = ["ncid,election_desc,voting_method"]
    for i in range(30):
        ncid = f"BN{700_000 + i}"
        voters.append(f"{ncid},Qwilla,Zyxquor{i:03d},WAKE,{['DEM', 'REP', 'UNA'][i % 3]},"
                      f"{20 + (i * 7) % 70}")
        for year in range(i % 3):
            history.append(f"{ncid},11/0{year + 1}/2018 GENERAL,ABSENTEE")
    (tmp / "nc_voters.csv").write_text("\n".join(voters) + "\n", encoding="utf-8")
    (tmp / "nc_history.csv").write_text("\n".join(history) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    tmp = tmp_path_factory.mktemp("svcmatrix")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIVICVAULT_HOME", str(tmp / "home"))
        for var in ("CIVICVAULT_DB_URL", "CIVICVAULT_TOKEN", "CIVICVAULT_KEK",
                    "PREFECT_API_URL"):
            mp.delenv(var, raising=False)
        home = VaultHome.from_env()
        assert main(["init"]) == 0
        admin = Vault.open(home)
        tokens = {role: admin.principals_add(f"{role}-1", role) for role in ROLES}
        for role in ROLES:
            for ch in CHANNELS:
                admin.principals_add(f"victim-{role}-{ch}", "analyst")
        _voters_csv(tmp / "voters.csv")
        (tmp / "policy.toml").write_text(default_policy_text(), encoding="utf-8")
        admin.ingest(tmp / "voters.csv", "seed")
        _linked_csvs(tmp)  # the default policy's link nc_voters <-> nc_history
        admin.ingest(tmp / "nc_voters.csv", "nc_voters")
        admin.ingest(tmp / "nc_history.csv", "nc_history")
        admin.link_build("nc_voter_history", purpose="match-quality")
        admin.close()
        engine = make_engine(home.db_url)
        client = TestClient(create_app(home, engine))
        yield Fixture(tmp, home, tokens, client)
        client.close()
        engine.dispose()


def _outcome_service(fx: Fixture, op: Op, ctx: Ctx) -> str:
    public = op.allowed == {PUBLIC}
    vault = Vault.open(fx.home, token=None if public else fx.tokens[ctx.role],
                       anonymous=public)
    try:
        op.service(vault, ctx)
    except BadInput as exc:
        return f"bad input: {exc}"
    except CivicVaultError as exc:
        assert exc.exit_code == 1, exc
        return "denied"
    finally:
        vault.close()
    return "allowed"


def _outcome_cli(fx: Fixture, op: Op, ctx: Ctx) -> str:
    code, err = fx.cli([ctx.fill(a) for a in op.cli], fx.tokens[ctx.role])
    return {0: "allowed", 1: "denied"}.get(code, f"exit {code}: {err.strip()}")


def _outcome_api(fx: Fixture, op: Op, ctx: Ctx) -> str:
    method, path, kwargs = op.api
    kwargs = dict(kwargs)
    headers = dict(kwargs.pop("headers", {}))
    if not kwargs.pop("public", False):
        headers["Authorization"] = f"Bearer {fx.tokens[ctx.role]}"
    if kwargs.get("content") == "@policy":
        kwargs["content"] = (fx.tmp / "policy.toml").read_bytes()
    if "json" in kwargs:
        kwargs["json"] = json.loads(ctx.fill(json.dumps(kwargs["json"])))
    response = fx.client.request(method, ctx.fill(path), headers=headers, **kwargs)
    if response.status_code == 200:
        return "allowed"
    if response.status_code == 403:
        kind = response.json()["type"].rsplit("/", 1)[-1]
        assert kind in ("policy-denied", "budget-exhausted"), response.text
        return "denied"
    return f"HTTP {response.status_code}: {response.text}"


def _shape(resource: str, ch: str | None) -> str:
    """A resource with the names made for this run and the vault's own row ids taken out
    (a name made for this run that the vault does not hold is on the ledger as its
    fingerprint: its hash differs between the doors, its length does not)."""
    if ch:
        resource = re.sub(r"sha256 [0-9a-f]{16}>", "sha256 {ch}>", resource.replace(ch, "{ch}"))
    return re.sub(r"\d+", "#", resource)


DOORS = {"service": _outcome_service, "cli": _outcome_cli, "api": _outcome_api}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("op", OPS, ids=[o.name for o in OPS])
def test_service_cli_and_api_agree(fx: Fixture, op: Op, role: str) -> None:
    seen: dict[str, tuple[str, list[tuple[str, str, str]]]] = {}
    for ch in CHANNELS:
        ctx = Ctx(role, ch, fx.tmp)
        before = len(fx.entries())
        outcome = DOORS[ch](fx, op, ctx)
        own = ch if "{ch}" in str((op.cli, op.api)) else None  # names made for this run
        added = [(e["action"], e["actor"], _shape(str(e["resource"]), own))
                 for e in fx.entries()[before:]]
        seen[ch] = (outcome, added)
    expected = ("allowed" if PUBLIC in op.allowed or role in op.allowed else "denied")
    for ch, (outcome, _) in seen.items():
        assert outcome == expected, f"{ch}: {role} {op.name}: {outcome}"
    assert seen["cli"] == seen["service"], seen
    assert seen["api"] == seen["service"], seen
    actions = [a for a, _, _ in seen["service"][1]]
    if op.allowed == {PUBLIC}:
        assert actions == []  # public material: no decision, no entry
    elif expected == "allowed":
        assert any(e[:2] == ("policy.allowed", f"{role}-1") for e in seen["service"][1])
    else:
        assert any("denied" in a for a in actions) and "policy.allowed" not in actions


def test_every_policy_action_has_a_row() -> None:
    """A new operation of the policy needs its row here (service, CLI and API)."""
    from policies.model import ACTIONS

    ops = {o.name.split(".other")[0].split(".preview")[0] for o in OPS}
    assert set(ACTIONS) <= ops, sorted(set(ACTIONS) - ops)
