"""The authorisation matrix through the CLI: every role x every operation.

Allowed runs exit 0; denied runs exit 1 and leave a ``*denied*`` ledger entry
naming the principal; forged and revoked tokens are refused; no analyst-run
command ever prints a row-level value.

Driven by ``ROWS``: one row per operation (argv template, roles allowed). A
command that does not exist yet is skipped with the reason, so adding the row
before the command is harmless. ``{role}`` and ``{tmp}`` in argv are filled in.
"""

from __future__ import annotations

import contextlib
import io
import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flows.cli import main
from ledger import store as ledger_store
from policies.load import default_policy_text
from vault.db import make_engine
from vault.home import VaultHome

ROLES = ("admin", "ingestor", "steward", "analyst", "compliance")
ALL = frozenset(ROLES)

# Values that only exist as row-level data in the seeded file (never in any output).
SECRET_NAMES = [f"Zyxquor{i:03d}" for i in range(60)]
SECRET_IDS = [f"{9_100_000 + i}" for i in range(60)]


@dataclass(frozen=True)
class Row:
    op: str
    argv: tuple[str, ...]
    allowed: frozenset[str]
    note: str = ""
    pending: str = ""  # why the command does not enforce this row yet (skipped)
    tags: tuple[str, ...] = field(default=())


ROWS: tuple[Row, ...] = (
    Row("ingest", ("ingest", "{tmp}/voters.csv", "--dataset", "m_{role}", "--json"),
        frozenset({"ingestor", "admin"})),
    Row("classify", ("classify", "{tmp}/voters.csv", "--json"),
        frozenset({"ingestor", "steward", "admin"})),
    Row("release", ("release", "--dataset", "seed", "--by", "party_cd", "--measure", "count",
                    "--epsilon", "0.01", "--json"), frozenset({"analyst"})),
    Row("segment", ("segment", "--dataset", "seed", "--features", "birth_age", "--k", "2",
                    "--epsilon", "0.01", "--json"), frozenset({"analyst"})),
    Row("budget.set", ("budget", "set", "--analyst", "analyst-1", "--dataset", "seed",
                       "--epsilon", "1"), frozenset({"admin", "steward"})),
    Row("budget.show", ("budget", "show", "--json"), frozenset({"analyst", "compliance", "admin"}),
        note="an analyst sees its own budgets"),
    Row("budget.show.other", ("budget", "show", "--analyst", "someone-else", "--json"),
        frozenset({"compliance", "admin"}), note="analysts: own only"),
    Row("erase", ("erase", "--dataset", "seed", "--match", "voter_reg_num=1"),
        frozenset({"steward", "admin"})),
    Row("keys.rotate", ("keys", "rotate", "--json"), frozenset({"admin"})),
    Row("principals.add", ("principals", "add", "new-{role}", "--role", "analyst", "--json"),
        frozenset({"admin"})),
    Row("principals.revoke", ("principals", "revoke", "victim-{role}"), frozenset({"admin"})),
    Row("principals.list", ("principals", "list", "--json"), frozenset({"admin", "compliance"})),
    Row("policy.show", ("policy", "show", "--json"), ALL),
    Row("policy.apply", ("policy", "apply", "{tmp}/policy.toml"), frozenset({"admin"})),
    Row("ledger.verify", ("ledger", "verify", "--json"),
        frozenset({"compliance", "steward", "admin"})),
    Row("ledger.export", ("ledger", "export"), frozenset({"compliance", "steward", "admin"})),
    Row("ledger.prove", ("ledger", "prove", "--index", "0", "--json"),
        frozenset({"compliance", "steward", "admin"})),
    Row("ledger.consistency", ("ledger", "consistency", "--old", "1", "--json"),
        frozenset({"compliance", "steward", "admin"})),
    Row("ledger.checkpoint", ("ledger", "checkpoint"), ALL, tags=("public",),
        note="public material: no access decision, no ledger entry"),
    Row("ledger.pubkey", ("ledger", "pubkey"), ALL, tags=("public",)),
    Row("ledger.annotate", ("ledger", "annotate", "--action", "note.test", "--resource",
                            "matrix/{role}"), frozenset({"compliance", "admin"})),
    Row("audit.report", ("audit", "report", "--out", "{tmp}/audit-{role}.html"),
        frozenset({"compliance", "admin"})),
    Row("reveal", ("reveal", "--dataset", "seed", "--match", f"voter_reg_num={SECRET_IDS[5]}",
                   "--purpose", "legal-hold", "--json"), frozenset({"steward"})),
)


@dataclass
class Vault:
    tmp: Path
    home: VaultHome
    tokens: dict[str, str]
    outputs: dict[tuple[str, str], str] = field(default_factory=dict)

    def run(self, argv: list[str], token: str | None = None) -> tuple[int, str, str]:
        full = (["--token", token] if token is not None else []) + argv
        raw = io.BytesIO()  # commands such as `ledger export` write bytes to sys.stdout.buffer
        out = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        err = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(full)
        out.flush()
        return code, raw.getvalue().decode("utf-8"), err.getvalue()

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
    for i in range(60):
        lines.append(f"{SECRET_IDS[i]},Qwilla,{SECRET_NAMES[i]},{counties[i % 3]},"
                     f"{parties[i % 4]},{20 + (i * 7) % 70}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _command_exists(vault: Vault, argv: tuple[str, ...]) -> bool:
    words = [a for a in argv if not a.startswith("-") and "{" not in a][:2]
    code, _, _ = vault.run([*words[:1], "--help"])
    if code != 0:
        return False
    if len(words) > 1 and argv[1] == words[1]:
        code, _, _ = vault.run([words[0], words[1], "--help"])
    return code == 0


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    tmp = tmp_path_factory.mktemp("authz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIVICVAULT_HOME", str(tmp / "home"))
        mp.delenv("CIVICVAULT_DB_URL", raising=False)
        mp.delenv("CIVICVAULT_TOKEN", raising=False)
        mp.delenv("CIVICVAULT_KEK", raising=False)
        v = Vault(tmp=tmp, home=VaultHome.from_env(), tokens={})
        code, _, err = v.run(["init"])
        assert code == 0, err
        for role in ROLES:
            code, out, err = v.run(["principals", "add", f"{role}-1", "--role", role, "--json"])
            assert code == 0, err
            doc = json.loads(out)
            assert (doc["name"], doc["role"]) == (f"{role}-1", role)
            v.tokens[role] = doc["token"]
            code, _, err = v.run(["principals", "add", f"victim-{role}", "--role", "analyst"])
            assert code == 0, err
        _voters_csv(tmp / "voters.csv")
        (tmp / "policy.toml").write_text(default_policy_text(), encoding="utf-8")
        code, _, err = v.run(["ingest", str(tmp / "voters.csv"), "--dataset", "seed", "--json"])
        assert code == 0, err
        yield v


def _fill(argv: tuple[str, ...], role: str, tmp: Path) -> list[str]:
    return [a.replace("{role}", role).replace("{tmp}", str(tmp)) for a in argv]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("row", ROWS, ids=[r.op for r in ROWS])
def test_matrix(vault: Vault, row: Row, role: str) -> None:
    if row.pending:
        pytest.skip(f"pending: {row.pending}")
    if not _command_exists(vault, row.argv):
        pytest.skip(f"command '{' '.join(row.argv[:2])}' does not exist yet")
    argv = _fill(row.argv, role, vault.tmp)
    before = len(vault.entries())
    code, out, err = vault.run(argv, vault.tokens[role])
    vault.outputs[(row.op, role)] = out + err
    new = vault.entries()[before:]
    if "public" in row.tags:
        assert code == 0, f"{row.op} is public: {err.strip()}"
        assert not [e for e in new if e["action"].startswith("policy.")], new
    elif role in row.allowed:
        assert code == 0, f"{role} should be allowed to {row.op}: {err.strip()}"
        assert any(e["action"] == "policy.allowed" and e["actor"] == f"{role}-1"
                   and e["details"]["op"] == row.op.split(".other")[0] for e in new)
    else:
        assert code == 1, f"{role} should be denied {row.op}: exit {code}: {err.strip()}"
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
        assert any("denied" in e["action"] and e["actor"] == f"{role}-1" for e in new), new
        assert not any(e["action"] == "policy.allowed" and e["actor"] == f"{role}-1"
                       for e in new)


def test_analyst_never_sees_a_row_level_value(vault: Vault) -> None:
    token = vault.tokens["analyst"]
    seen: list[str] = [text for (op, role), text in vault.outputs.items() if role == "analyst"]
    for row in ROWS:
        if row.pending or not _command_exists(vault, row.argv):
            continue
        _, out, err = vault.run(_fill(row.argv, "analyst-extra", vault.tmp), token)
        seen.append(out + err)
    blob = "\n".join(seen)
    assert blob  # something was run
    for value in (*SECRET_NAMES, *SECRET_IDS, "Qwilla"):
        assert value not in blob


@pytest.mark.parametrize("token", [
    "cvt_" + "A" * 43,
    "cvt_not-a-token",
    "garbage",
])
def test_forged_token_refused(vault: Vault, token: str) -> None:
    for argv in (["policy", "show", "--json"], ["principals", "list"], ["budget", "show"]):
        code, out, err = vault.run(argv, token)
        assert code == 1, err
        assert out == ""
        assert err.startswith("error: ") and "token" in err
        assert token not in err


def test_revoked_token_refused_and_ledgered(vault: Vault) -> None:
    code, out, _ = vault.run(["principals", "add", "short-lived", "--role", "compliance",
                              "--json"])
    assert code == 0
    token = json.loads(out)["token"]
    assert vault.run(["policy", "show", "--json"], token)[0] == 0
    assert vault.run(["principals", "revoke", "short-lived"])[0] == 0
    before = len(vault.entries())
    code, out, err = vault.run(["policy", "show", "--json"], token)
    assert code == 1 and out == "" and "revoked" in err
    assert any("denied" in e["action"] and e["actor"] == "short-lived"
               for e in vault.entries()[before:])
    listed = json.loads(vault.run(["principals", "list", "--json"])[1])["principals"]
    assert any(p["name"] == "short-lived" and p["revoked"] for p in listed)
    assert all("token" not in p for p in listed)


def test_steward_reveal_opens_one_subject_and_ledgers_ids_only(vault: Vault,
                                                               tmp_path: Path) -> None:
    before = len(vault.entries())
    opened = tmp_path / "opened.json"
    code, out, err = vault.run(
        ["reveal", "--dataset", "seed", "--match", f"voter_reg_num={SECRET_IDS[7]}",
         "--purpose", "subject-access-request", "--json", "--out", str(opened)],
        vault.tokens["steward"])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["purpose"] == "subject-access-request"
    [subject] = doc["subjects"]
    assert subject["records"] >= 1 and subject["fields"]
    assert SECRET_NAMES[7] not in out and SECRET_IDS[7] not in out  # --json: no value
    assert doc["out"] is True and str(opened) not in out  # nor the path typed for --out
    [written] = json.loads(opened.read_text())["subjects"]
    assert SECRET_NAMES[7] in json.dumps(written["records"])
    assert SECRET_NAMES[8] not in opened.read_text()
    new = vault.entries()[before:]
    assert [e["action"] for e in new] == ["policy.allowed", "vault.reveal"]
    assert all(e["purpose"] == "subject-access-request" for e in new)
    assert SECRET_NAMES[7] not in json.dumps(new) and SECRET_IDS[7] not in json.dumps(new)


def test_reveal_with_a_made_up_purpose_is_denied(vault: Vault) -> None:
    code, out, err = vault.run(
        ["reveal", "--dataset", "seed", "--match", f"voter_reg_num={SECRET_IDS[7]}",
         "--purpose", "curious", "--json"], vault.tokens["steward"])
    assert code == 1 and out == "" and "purpose" in err


def test_reveal_never_prints_values_to_the_terminal_and_writes_them_0600_with_out(
    vault: Vault, tmp_path: Path
) -> None:
    """Plain output gives two counts and the ledger entry, never a value nor anything
    typed; ``--out`` writes the records to a new file only the owner can read (checked
    before the reveal: a bad path costs no reveal)."""
    code, out, err = vault.run(
        ["reveal", "--dataset", "seed", "--match", f"voter_reg_num={SECRET_IDS[9]}",
         "--purpose", "subject-access-request"], vault.tokens["steward"])
    assert code == 0, err
    assert "record(s) opened" in out and "--out FILE" in out
    assert SECRET_NAMES[9] not in out + err and SECRET_IDS[9] not in out + err
    target = tmp_path / "opened.json"
    before = len(vault.entries())
    code, out, err = vault.run(
        ["reveal", "--dataset", "seed", "--match", f"voter_reg_num={SECRET_IDS[9]}",
         "--purpose", "subject-access-request", "--out", str(tmp_path / "no" / "x.json")],
        vault.tokens["steward"])
    assert code == 2 and len(vault.entries()) == before  # bad path: nothing opened
    code, out, err = vault.run(
        ["reveal", "--dataset", "seed", "--match", f"voter_reg_num={SECRET_IDS[9]}",
         "--purpose", "subject-access-request", "--out", str(target)], vault.tokens["steward"])
    assert code == 0, err
    # nothing typed is echoed, the --out path included (it may name the person)
    assert SECRET_NAMES[9] not in out and str(target) not in out and "--out file" in out
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    [subject] = json.loads(target.read_text())["subjects"]
    assert SECRET_NAMES[9] in json.dumps(subject["records"])
