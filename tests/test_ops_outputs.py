"""Output files (issue 21): never over an existing file without --force, never inside the
vault home, and a bad output path is exit 2 before any budget is charged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.cli import main
from vault.db import make_engine
from vault.home import VaultHome

VOTERS_RULES = """
[datasets.voters]
columns = ["county", "party", "age"]

[datasets.voters.group_by]
county = ["WAKE", "CHATHAM", "ORANGE"]

[datasets.voters.bounds]
age = { lower = 18, upper = 100 }

[datasets.voters.budget]
per_analyst = 10.0
dataset_cap = 50.0
"""


@pytest.fixture
def vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[VaultHome, str]]:
    from vault_helpers import store, voters

    from policies.load import default_policy_text
    from vault.keyring import Keyring
    from vault.keys import provider_for
    from vault.principals import add_principal
    from vault.setup import init_home

    home = VaultHome(tmp_path / "home")
    monkeypatch.setenv("CIVICVAULT_HOME", str(home.root))
    for var in ("CIVICVAULT_DB_URL", "CIVICVAULT_TOKEN", "CIVICVAULT_KEK"):
        monkeypatch.delenv(var, raising=False)
    init_home(home)
    policy_file = tmp_path / "policy.toml"  # applied, so that `ledger verify` vouches for it
    policy_file.write_text(default_policy_text() + VOTERS_RULES, encoding="utf-8")
    assert main(["policy", "apply", str(policy_file)]) == 0
    engine = make_engine(home.db_url)
    try:
        store(engine, Keyring(provider_for(home)), voters(300))
        with engine.begin() as conn:
            token = add_principal(conn, "alice", "analyst")
    finally:
        engine.dispose()
    yield home, token


def _spent(token: str, capsys: pytest.CaptureFixture[str]) -> float:
    capsys.readouterr()
    assert main(["--token", token, "budget", "show", "--json"]) == 0
    budgets = json.loads(capsys.readouterr().out)["budgets"]
    return float(sum(b["epsilon_spent"] for b in budgets))


def _release(token: str, *extra: str) -> int:
    return main(["--token", token, "release", "--dataset", "voters", "--by", "county",
                 "--measure", "count", "--epsilon", "0.5", "--json", *extra])


def _refused(capsys: pytest.CaptureFixture[str], code: int, *words: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    # no path: what a caller types for an output may name a person (and ends up in logs)
    assert "/" not in err and "r.json" not in err and "c.svg" not in err, err
    for w in words:
        assert w in err, err


def test_release_out_at_the_kek_is_refused_and_nothing_charged(
        vault: tuple[VaultHome, str], capsys: pytest.CaptureFixture[str]) -> None:
    home, token = vault
    kek = home.kek_path.read_bytes()
    _refused(capsys, _release(token, "--out", str(home.kek_path)), "inside the vault home")
    _refused(capsys, _release(token, "--out", str(home.kek_path), "--force"),
             "inside the vault home")  # --force never opens the vault home
    sneaky = home.root.parent / "elsewhere" / ".." / "home" / "r.json"
    (home.root.parent / "elsewhere").mkdir()
    _refused(capsys, _release(token, "--out", str(sneaky)), "inside the vault home")
    link = home.root.parent / "link.json"
    link.symlink_to(home.root / "new.json")  # a symlink pointing into the home
    _refused(capsys, _release(token, "--out", str(link), "--force"), "inside the vault home")
    _refused(capsys, _release(token, "--chart", str(home.root / "c.svg")),
             "inside the vault home")
    assert home.kek_path.read_bytes() == kek
    assert not (home.root / "new.json").exists() and not (home.root / "c.svg").exists()
    assert _spent(token, capsys) == 0.0
    assert main(["ledger", "verify"]) == 0


def test_existing_out_needs_force_and_bad_paths_cost_nothing(
        vault: tuple[VaultHome, str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _, token = vault
    out = tmp_path / "r.json"
    out.write_text("keep me")
    _refused(capsys, _release(token, "--out", str(out)), "already exists", "--force")
    assert out.read_text() == "keep me"
    _refused(capsys, _release(token, "--out", str(tmp_path / "nope" / "r.json")),
             "does not exist")
    (tmp_path / "adir.json").mkdir()
    _refused(capsys, _release(token, "--out", str(tmp_path / "adir.json"), "--force"), "folder")
    _refused(capsys, _release(token, "--out", str(tmp_path / "r.txt")), "must end in")
    sidecar = tmp_path / "t.csv.meta.json"  # a CSV's sidecar is an output too
    sidecar.write_text("keep me")
    _refused(capsys, _release(token, "--out", str(tmp_path / "t.csv")), "its .meta.json file",
             "already exists")
    assert not (tmp_path / "t.csv").exists() and sidecar.read_text() == "keep me"
    chart = tmp_path / "c.svg"
    chart.write_text("keep me")
    _refused(capsys, _release(token, "--chart", str(chart)), "already exists")
    assert _spent(token, capsys) == 0.0
    # with --force the files are replaced whole, once the release is charged
    assert _release(token, "--out", str(out), "--chart", str(chart), "--force") == 0
    assert json.loads(out.read_text())["rows"] and chart.read_text().startswith("<?xml")
    assert _spent(token, capsys) == 0.5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left over


def test_segment_out_and_chart_are_checked_before_the_charge(
        vault: tuple[VaultHome, str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    home, token = vault
    seg = ["--token", token, "segment", "--dataset", "voters", "--features", "age", "--k", "2",
           "--epsilon", "1", "--json"]
    existing = tmp_path / "s.json"
    existing.write_text("keep me")
    _refused(capsys, main([*seg, "--out", str(existing)]), "already exists")
    _refused(capsys, main([*seg, "--chart", str(home.root / "policy.svg")]), "vault home")
    _refused(capsys, main([*seg, "--k", "1_0"]), "--k")
    assert existing.read_text() == "keep me" and _spent(token, capsys) == 0.0
    assert main([*seg, "--out", str(tmp_path / "s.csv")]) == 0
    assert (tmp_path / "s.csv").exists() and (tmp_path / "s.csv.meta.json").exists()


def test_audit_report_never_overwrites_without_force(
        vault: tuple[VaultHome, str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    home, _ = vault
    report = tmp_path / "audit.html"
    report.write_text("keep me")
    _refused(capsys, main(["audit", "report", "--out", str(report)]), "already exists")
    assert report.read_text() == "keep me"
    identity = home.identity_path.read_bytes()
    _refused(capsys, main(["audit", "report", "--out", str(home.root / "x.html"), "--force"]),
             "inside the vault home")
    assert home.identity_path.read_bytes() == identity
    assert main(["audit", "report", "--out", str(report), "--force"]) == 0
    assert "<html" in report.read_text().lower()
