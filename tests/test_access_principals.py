"""Principals and authentication on both databases: tokens hashed, forged and revoked refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from ledger import store as ledger_store
from policies.errors import Unauthenticated
from policies.load import default_policy_text
from vault import principals
from vault.access import authenticate
from vault.errors import BadInput
from vault.home import VaultHome, write_secret_file
from vault.principals import T_PRINCIPALS


@pytest.fixture
def home(tmp_path: Path, engine: Engine) -> VaultHome:
    url = engine.url.render_as_string(hide_password=False)
    home = VaultHome(root=tmp_path / "home", db_url_override=url)
    home.root.mkdir()
    home.policy_path.write_text(default_policy_text(), encoding="utf-8")
    return home


STATE = ("principal.added", "principal.revoked")  # what the table holds, for verification


def actions(engine: Engine) -> list[tuple[str, str]]:
    """The access decisions on the ledger (not the principals' state entries)."""
    with engine.connect() as conn:
        return [(e["action"], e["actor"]) for e in map(json.loads, ledger_store.iter_entries(conn))
                if e["action"] not in STATE]


def test_token_is_256_bit_urlsafe_and_stored_only_as_its_hash(engine: Engine) -> None:
    with engine.begin() as conn:
        token = principals.add_principal(conn, "alice", "analyst")
    assert token.startswith("cvt_") and len(token) == 4 + 43
    assert principals.is_well_formed(token)
    with engine.connect() as conn:
        row = conn.execute(select(T_PRINCIPALS)).one()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(tuple(row))
    with engine.begin() as conn:
        other = principals.add_principal(conn, "bob", "analyst")
    assert other != token


def test_authenticate_finds_the_principal(engine: Engine, home: VaultHome) -> None:
    with engine.begin() as conn:
        token = principals.add_principal(conn, "alice", "analyst")
    p = authenticate(engine, home, token)
    assert (p.id, p.role) == ("alice", "analyst")
    assert authenticate(engine, home, f"  {token}\n") == p  # pasted with whitespace


def test_admin_token_file_is_the_default(engine: Engine, home: VaultHome) -> None:
    with pytest.raises(Unauthenticated, match="no token given"):
        authenticate(engine, home, None)
    with engine.begin() as conn:
        token = principals.add_principal(conn, "admin", "admin")
    write_secret_file(home.admin_token_path, (token + "\n").encode())
    p = authenticate(engine, home, None)
    assert (p.id, p.role) == ("admin", "admin")


@pytest.mark.parametrize(
    "forged",
    [
        "cvt_" + "A" * 43,  # well formed, never issued
        "cvt_short",  # malformed
        "",  # empty
        "Bearer cvt_" + "A" * 43,  # wrong shape
    ],
)
def test_forged_token_refused(engine: Engine, home: VaultHome, forged: str) -> None:
    with engine.begin() as conn:
        principals.add_principal(conn, "alice", "analyst")
    with pytest.raises(Unauthenticated) as info:
        authenticate(engine, home, forged)
    assert forged[4:] not in str(info.value) or not forged[4:]
    assert actions(engine) == []  # guesses are not ledgered (no one to attribute them to)


def test_token_hash_presented_as_token_is_refused(engine: Engine, home: VaultHome) -> None:
    with engine.begin() as conn:
        principals.add_principal(conn, "alice", "analyst")
        stored = conn.execute(select(T_PRINCIPALS.c.token_hash)).scalar_one()
    with pytest.raises(Unauthenticated):
        authenticate(engine, home, stored)
    with pytest.raises(Unauthenticated):
        authenticate(engine, home, "cvt_" + stored[:43])


def test_revoked_token_refused_and_ledgered(engine: Engine, home: VaultHome) -> None:
    with engine.begin() as conn:
        token = principals.add_principal(conn, "alice", "analyst")
    with engine.begin() as conn:
        rec = principals.revoke_principal(conn, "alice")
    assert rec.revoked is not None and not rec.active
    with pytest.raises(Unauthenticated, match="revoked"):
        authenticate(engine, home, token)
    assert actions(engine) == [("auth.denied", "alice")]


def test_revoking_twice_or_unknown_is_bad_input(engine: Engine) -> None:
    with engine.begin() as conn:
        principals.add_principal(conn, "alice", "analyst")
        principals.revoke_principal(conn, "alice")
    with engine.begin() as conn, pytest.raises(BadInput, match="already revoked"):
        principals.revoke_principal(conn, "alice")
    with engine.begin() as conn, pytest.raises(BadInput, match="no principal"):
        principals.revoke_principal(conn, "nobody")


def test_names_are_validated_and_never_reused(engine: Engine) -> None:
    for bad in ("", "Alice", "-x", "a b", "a" * 65, "ali/ce", "é"):
        with engine.begin() as conn, pytest.raises(BadInput, match="invalid principal name"):
            principals.add_principal(conn, bad, "analyst")
    with engine.begin() as conn:
        principals.add_principal(conn, "alice", "analyst")
        principals.revoke_principal(conn, "alice")
    with engine.begin() as conn, pytest.raises(BadInput, match="already exists"):
        principals.add_principal(conn, "alice", "admin")


def test_list_principals(engine: Engine) -> None:
    with engine.begin() as conn:
        principals.add_principal(conn, "bob", "steward")
        principals.add_principal(conn, "alice", "analyst")
        principals.revoke_principal(conn, "bob")
    with engine.connect() as conn:
        listed = principals.list_principals(conn)
    assert [(p.name, p.role, p.active) for p in listed] == [
        ("alice", "analyst", True),
        ("bob", "steward", False),
    ]
    assert set(listed[0].to_json()) == {"name", "role", "created", "revoked"}
