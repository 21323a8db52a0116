"""``civicvault policy`` and ``principals`` through the CLI: check, apply, show, add, revoke."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.cli import main
from ledger import store as ledger_store
from policies.load import default_policy_text
from vault.db import make_engine
from vault.home import VaultHome


def run(argv: list[str], token: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main((["--token", token] if token else []) + argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[VaultHome]:
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CIVICVAULT_DB_URL", raising=False)
    monkeypatch.delenv("CIVICVAULT_TOKEN", raising=False)
    monkeypatch.delenv("CIVICVAULT_KEK", raising=False)
    code, _, err = run(["init"])
    assert code == 0, err
    yield VaultHome.from_env()


def entries(home: VaultHome) -> list[dict[str, Any]]:
    engine = make_engine(home.db_url)
    try:
        with engine.connect() as conn:
            return [json.loads(e) for e in ledger_store.iter_entries(conn)]
    finally:
        engine.dispose()


def test_policy_check_needs_no_vault_and_reports_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "no-vault-here"))
    good = tmp_path / "good.toml"
    good.write_text(default_policy_text(), encoding="utf-8")
    code, out, err = run(["policy", "check", str(good), "--json"])
    assert code == 0, err
    assert json.loads(out)["sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()
    bad = tmp_path / "bad.toml"
    text = default_policy_text().replace('erase = ["steward", "admin"]',
                                         'erase = ["steward", "admn"]')
    bad.write_text(text, encoding="utf-8")
    code, out, err = run(["policy", "check", str(bad)])
    line = next(i for i, s in enumerate(text.splitlines(), 1) if '"admn"' in s)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert f"FILE:{line}: unknown role 'admn'" in err  # the argument, not the path typed
    assert "bad.toml" not in err
    assert "did you mean 'admin'" in err


def test_policy_check_missing_file_is_exit_2(tmp_path: Path) -> None:
    code, _, err = run(["policy", "check", str(tmp_path / "missing.toml")])
    assert code == 2 and err.startswith("error: ")


def test_policy_show_json(home: VaultHome) -> None:
    code, out, err = run(["policy", "show", "--json"])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["permissions"]["ingest"] == ["ingestor", "admin"]
    assert doc["permissions"]["budget.show"] == ["analyst:own", "compliance", "admin"]
    assert doc["datasets"]["*"]["per_analyst"] == "1"
    assert doc["sha256"] == hashlib.sha256(home.policy_path.read_bytes()).hexdigest()
    code, out, _ = run(["policy", "show"])
    assert code == 0 and "ingest" in out and "reveal purposes" in out


def test_policy_apply_installs_and_ledgers_the_file_hash(home: VaultHome, tmp_path: Path) -> None:
    new = tmp_path / "new.toml"
    new.write_text(default_policy_text().replace("per_analyst = 1.0", "per_analyst = 0.5"),
                   encoding="utf-8")
    old_hash = hashlib.sha256(home.policy_path.read_bytes()).hexdigest()
    code, out, err = run(["policy", "apply", str(new), "--json"])
    assert code == 0, err
    new_hash = hashlib.sha256(new.read_bytes()).hexdigest()
    assert json.loads(out) == {"applied": True, "sha256": new_hash, "previous": old_hash}
    assert home.policy_path.read_bytes() == new.read_bytes()
    last = entries(home)[-2:]
    assert [e["action"] for e in last] == ["policy.allowed", "policy.applied"]
    assert last[1]["data_hash"] == new_hash
    assert last[1]["details"]["previous"] == old_hash
    code, out, _ = run(["policy", "show", "--json"])
    assert json.loads(out)["datasets"]["*"]["per_analyst"] == "0.5"


def test_policy_apply_of_a_bad_file_changes_nothing(home: VaultHome, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(default_policy_text().replace("dataset_cap = 10.0", "dataset_cap = -1"),
                   encoding="utf-8")
    before_bytes, before_entries = home.policy_path.read_bytes(), len(entries(home))
    code, _, err = run(["policy", "apply", str(bad)])
    assert code == 2 and "negative budget" in err and "FILE:" in err and "bad.toml" not in err
    assert home.policy_path.read_bytes() == before_bytes
    assert len(entries(home)) == before_entries  # the allowed entry rolled back with the op


def test_policy_apply_refuses_to_strand_principals(home: VaultHome, tmp_path: Path) -> None:
    assert run(["principals", "add", "carol", "--role", "compliance"])[0] == 0
    text = default_policy_text().replace(
        'compliance = "Audits access: verifies and exports the ledger, writes audit reports."\n',
        "").replace(', "compliance"', "").replace('"compliance", ', "")
    new = tmp_path / "no-compliance.toml"
    new.write_text(text, encoding="utf-8")
    assert run(["policy", "check", str(new)])[0] == 0
    code, _, err = run(["policy", "apply", str(new)])
    assert code == 2 and "compliance" in err
    assert run(["principals", "revoke", "carol"])[0] == 0
    assert run(["policy", "apply", str(new)])[0] == 0


def test_policy_apply_denied_for_non_admin(home: VaultHome, tmp_path: Path) -> None:
    code, out, _ = run(["principals", "add", "sam", "--role", "steward", "--json"])
    token = json.loads(out)["token"]
    new = tmp_path / "p.toml"
    new.write_text(default_policy_text(), encoding="utf-8")
    code, _, err = run(["policy", "apply", str(new)], token)
    assert code == 1 and "denied" in err
    last = entries(home)[-1]
    assert (last["action"], last["actor"], last["details"]["op"]) == (
        "policy.denied", "sam", "policy.apply")


def test_principals_add_prints_token_once(home: VaultHome) -> None:
    code, out, err = run(["principals", "add", "alice", "--role", "analyst", "--json"])
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"name", "role", "token"}
    assert doc["token"].startswith("cvt_")
    code, out, _ = run(["principals", "list", "--json"])
    assert doc["token"] not in out
    assert doc["token"] not in json.dumps(entries(home))
    # the token works
    assert run(["policy", "show", "--json"], doc["token"])[0] == 0


def test_principals_add_validates_role_and_name(home: VaultHome) -> None:
    code, _, err = run(["principals", "add", "alice", "--role", "wizard"])
    assert code == 2 and "unknown role 'wizard'" in err
    code, _, err = run(["principals", "add", "Alice Smith", "--role", "analyst"])
    assert code == 2 and "invalid principal name" in err and "Smith" not in err
    code, _, err = run(["principals", "add", "admin", "--role", "analyst"])
    assert code == 2 and "already exists" in err


def test_admin_cannot_revoke_itself(home: VaultHome) -> None:
    code, _, err = run(["principals", "revoke", "admin"])
    assert code == 2 and "itself" in err
    assert run(["policy", "show", "--json"])[0] == 0


def test_every_command_answers_help() -> None:
    for argv in (["principals"], ["principals", "add"], ["principals", "list"],
                 ["principals", "revoke"], ["policy"], ["policy", "show"], ["policy", "check"],
                 ["policy", "apply"], ["reveal"]):
        code, out, _ = run([*argv, "--help"])
        assert code == 0 and "Usage" in out, argv


def test_principals_add_plain_output_is_just_the_token(home: VaultHome) -> None:
    code, out, err = run(["principals", "add", "bob", "--role", "analyst"])
    assert code == 0
    token = out.strip()
    assert out == token + "\n" and token.startswith("cvt_")
    assert "bob" in err
    assert run(["policy", "show", "--json"], token)[0] == 0
