"""Every decision on the ledger: allowed in the operation's own transaction, denied committed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from ledger import store as ledger_store
from policies.errors import PolicyDenied, PolicyFileError, Unauthenticated
from policies.load import default_policy_text
from vault import principals
from vault.access import Principal, access, authenticate, installed_policy
from vault.home import VaultHome

ROLES = ("admin", "ingestor", "steward", "analyst", "compliance")


class Boom(Exception):
    pass


@pytest.fixture
def home(tmp_path: Path, engine: Engine) -> VaultHome:
    url = engine.url.render_as_string(hide_password=False)
    home = VaultHome(root=tmp_path / "home", db_url_override=url)
    home.root.mkdir()
    home.policy_path.write_text(default_policy_text(), encoding="utf-8")
    return home


@pytest.fixture
def people(engine: Engine, home: VaultHome) -> dict[str, Principal]:
    """One principal per role, named after it, authenticated by its token."""
    with engine.begin() as conn:
        tokens = {r: principals.add_principal(conn, f"{r}-1", r) for r in ROLES}
    return {r: authenticate(engine, home, t) for r, t in tokens.items()}


def entries(engine: Engine) -> list[dict[str, Any]]:
    """The access decisions on the ledger (not the principals' state entries)."""
    with engine.connect() as conn:
        return [e for e in map(json.loads, ledger_store.iter_entries(conn))
                if e["action"] not in ("principal.added", "principal.revoked")]


def test_allowed_entry_commits_with_the_operation(
    engine: Engine, home: VaultHome, people: dict[str, Principal]
) -> None:
    with access(engine, home, people["admin"], "erase", "dataset/nc") as conn:
        conn.execute(text("CREATE TABLE op_marker (x INTEGER)"))
    [entry] = entries(engine)
    assert entry["action"] == "policy.allowed"
    assert entry["actor"] == "admin-1"
    assert entry["resource"] == "dataset/nc"
    assert entry["details"] == {"op": "erase", "role": "admin"}


def test_allowed_entry_rolls_back_with_a_failed_operation(
    engine: Engine, home: VaultHome, people: dict[str, Principal]
) -> None:
    with pytest.raises(Boom), access(engine, home, people["admin"], "erase", "dataset/nc"):
        raise Boom
    assert entries(engine) == []


def test_allowed_entry_is_in_the_yielded_transaction(
    engine: Engine, home: VaultHome, people: dict[str, Principal]
) -> None:
    with access(engine, home, people["steward"], "ledger.verify", "ledger") as conn:
        inside = [a for a in (json.loads(e)["action"] for e in ledger_store.iter_entries(conn))
                  if a != "principal.added"]
    assert inside == ["policy.allowed"]


def test_denied_entry_committed_even_though_the_operation_fails(
    engine: Engine, home: VaultHome, people: dict[str, Principal]
) -> None:
    ran = False
    with pytest.raises(PolicyDenied) as info:  # noqa: SIM117 - the body must not run
        with access(engine, home, people["analyst"], "erase", "dataset/nc"):
            ran = True
    assert not ran
    message = str(info.value)
    assert "\n" not in message
    assert "analyst-1" in message and "erase" in message and "dataset/nc" in message
    assert info.value.exit_code == 1
    [entry] = entries(engine)
    assert entry["action"] == "policy.denied"
    assert entry["actor"] == "analyst-1"
    assert entry["details"]["op"] == "erase"
    assert entry["details"]["role"] == "analyst"
    assert "may not erase" in entry["details"]["reason"]


def test_analyst_cannot_read_another_analysts_budget(
    engine: Engine, home: VaultHome, people: dict[str, Principal]
) -> None:
    analyst = people["analyst"]
    with access(engine, home, analyst, "budget.show", "budget:analyst-1/nc"):
        pass
    with pytest.raises(PolicyDenied, match="own"), \
            access(engine, home, analyst, "budget.show", "budget:someone/nc"):
        pass
    assert [e["action"] for e in entries(engine)] == ["policy.allowed", "policy.denied"]


def test_principal_revoked_after_authenticating_is_refused(
    engine: Engine, home: VaultHome, people: dict[str, Principal]
) -> None:
    with engine.begin() as conn:
        principals.revoke_principal(conn, "compliance-1")
    with pytest.raises(Unauthenticated), \
            access(engine, home, people["compliance"], "ledger.verify", "ledger"):
        pass
    assert [(e["action"], e["details"]["reason"]) for e in entries(engine)] == [
        ("auth.denied", "revoked")]


def test_reveal_needs_purpose_and_unapproved_purpose_is_not_ledgered(
    engine: Engine, home: VaultHome, people: dict[str, Principal]
) -> None:
    steward = people["steward"]
    with pytest.raises(PolicyDenied, match="purpose"), \
            access(engine, home, steward, "reveal", "subject/nc/7",
                   purpose="because Jane Roe asked"):
        pass
    with access(engine, home, steward, "reveal", "subject/nc/7", purpose="legal-hold"):
        pass
    denied, allowed = entries(engine)
    assert denied["action"] == "policy.denied" and "purpose" not in denied
    assert "Jane" not in json.dumps(denied)
    assert allowed["action"] == "policy.allowed" and allowed["purpose"] == "legal-hold"


def test_reveal_rate_limit(
    engine: Engine, home: VaultHome, people: dict[str, Principal]
) -> None:
    home.policy_path.write_text(
        default_policy_text().replace("limit = 5", "limit = 2"), encoding="utf-8")
    steward = people["steward"]
    for i in range(2):
        with access(engine, home, steward, "reveal", f"subject/nc/{i}", purpose="legal-hold"):
            pass
    with pytest.raises(PolicyDenied, match="rate limit"), \
            access(engine, home, steward, "reveal", "subject/nc/9", purpose="legal-hold"):
        pass
    # a failed reveal is not counted: its transaction (and count) rolled back
    assert [e["action"] for e in entries(engine)] == ["policy.allowed"] * 2 + ["policy.denied"]


def test_failed_reveal_does_not_use_up_the_limit(
    engine: Engine, home: VaultHome, people: dict[str, Principal]
) -> None:
    home.policy_path.write_text(
        default_policy_text().replace("limit = 5", "limit = 1"), encoding="utf-8")
    steward = people["steward"]
    with pytest.raises(Boom), \
            access(engine, home, steward, "reveal", "subject/nc/1", purpose="legal-hold"):
        raise Boom
    with access(engine, home, steward, "reveal", "subject/nc/1", purpose="legal-hold"):
        pass


def test_policy_change_takes_effect_without_restart(
    engine: Engine, home: VaultHome, people: dict[str, Principal]
) -> None:
    first = installed_policy(home)
    assert installed_policy(home) is first  # cached
    home.policy_path.write_text(
        default_policy_text().replace('erase = ["steward", "admin"]', 'erase = ["steward"]'),
        encoding="utf-8")
    with pytest.raises(PolicyDenied), access(engine, home, people["admin"], "erase", "d/x"):
        pass
    assert installed_policy(home) is not first


def test_missing_or_broken_installed_policy_fails_closed(
    engine: Engine, home: VaultHome, people: dict[str, Principal]
) -> None:
    home.policy_path.write_text("[roles\n", encoding="utf-8")
    with pytest.raises(PolicyFileError) as info, \
            access(engine, home, people["admin"], "policy.show", "policy"):
        pass
    assert info.value.line == 1
    home.policy_path.unlink()
    with pytest.raises(PolicyFileError, match="no policy installed"), \
            access(engine, home, people["admin"], "policy.show", "policy"):
        pass
    assert entries(engine) == []


def test_racing_reveals_never_exceed_the_limit(
    engine: Engine, home: VaultHome, people: dict[str, Principal]
) -> None:
    import threading

    home.policy_path.write_text(
        default_policy_text().replace("limit = 5", "limit = 3"), encoding="utf-8")
    steward = people["steward"]
    results: list[str] = []
    start = threading.Barrier(10)

    def attempt(i: int) -> None:
        start.wait()
        try:
            with access(engine, home, steward, "reveal", f"subject/nc/{i}",
                        purpose="legal-hold"):
                pass
            results.append("ok")
        except PolicyDenied:
            results.append("denied")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == ["denied"] * 7 + ["ok"] * 3
    assert sorted(e["action"] for e in entries(engine)) == (
        ["policy.allowed"] * 3 + ["policy.denied"] * 7)
