"""The public commands: release, budget set|show, segment, on a real initialised vault."""

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
party = "dp"

[datasets.voters.bounds]
age = { lower = 18, upper = 100 }

[datasets.voters.budget]
per_analyst = 1.0
dataset_cap = 5.0
"""


@pytest.fixture
def vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """An initialised vault with 600 stored voters and an analyst; yields the tokens."""
    from dp_helpers import ALICE
    from vault_helpers import store, voters

    from policies.load import default_policy_text
    from vault.keyring import Keyring
    from vault.keys import provider_for
    from vault.principals import add_principal
    from vault.setup import init_home

    home = VaultHome(tmp_path / "home")
    monkeypatch.setenv("CIVICVAULT_HOME", str(home.root))
    monkeypatch.delenv("CIVICVAULT_DB_URL", raising=False)
    monkeypatch.delenv("CIVICVAULT_TOKEN", raising=False)
    init_home(home)
    home.policy_path.write_text(default_policy_text() + VOTERS_RULES, encoding="utf-8")
    engine = make_engine(home.db_url)
    try:
        store(engine, Keyring(provider_for(home)), voters(600))
        with engine.begin() as conn:
            token = add_principal(conn, ALICE.id, ALICE.role)
    finally:
        engine.dispose()
    yield {"alice": token, "admin": home.admin_token_path.read_text().strip()}


def _run(
    capsys: pytest.CaptureFixture[str], tokens: dict[str, str], who: str, *args: str
) -> tuple[int, str, str]:
    code = main(["--token", tokens[who], *args])
    out, err = capsys.readouterr()
    assert "Person Number" not in out + err  # no row-level value leaves, ever
    assert "Traceback" not in err
    return code, out, err


def test_release_json_preview_budget_and_files(
    vault: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = _run(
        capsys,
        vault,
        "alice",
        "release",
        "--dataset",
        "voters",
        "--by",
        "county",
        "--measure",
        "count",
        "--epsilon",
        "0.1",
        "--preview",
        "--json",
    )
    assert code == 0
    assert json.loads(out)["accuracy"]["measures"]["count"]["scale"] == pytest.approx(10.0)

    code, out, _ = _run(
        capsys,
        vault,
        "alice",
        "release",
        "--dataset",
        "voters",
        "--by",
        "county",
        "--measure",
        "count",
        "--measure",
        "mean:age",
        "--epsilon",
        "0.5",
        "--out",
        str(tmp_path / "r.csv"),
        "--chart",
        str(tmp_path / "r.svg"),
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert {r["county"] for r in doc["rows"]} == {"WAKE", "CHATHAM", "ORANGE"}
    assert all(set(r) == {"county", "count", "mean_age"} for r in doc["rows"])
    assert sum(r["count"] for r in doc["rows"]) == pytest.approx(600, abs=60)
    assert doc["epsilon"] == 0.5 and "accuracy" in doc
    assert (tmp_path / "r.csv").exists() and (tmp_path / "r.svg").exists()

    code, out, err = _run(capsys, vault, "alice", "budget", "show", "--json")
    assert code == 0, err
    assert json.loads(out) == {
        "budgets": [
            {
                "analyst": "alice",
                "dataset": "voters",
                "epsilon_total": 1.0,
                "epsilon_spent": 0.5,
                "epsilon_remaining": 0.5,
                "delta_total": 1e-8,  # the default policy's per_analyst_delta
                "delta_spent": 0.0,
                "delta_remaining": 1e-8,
            }
        ]
    }

    # over budget: exit 1, one clear line, nothing released
    code, out, err = _run(
        capsys,
        vault,
        "alice",
        "release",
        "--dataset",
        "voters",
        "--by",
        "county",
        "--measure",
        "count",
        "--epsilon",
        "0.6",
        "--json",
    )
    assert code == 1 and out == ""
    assert err.startswith("error: privacy budget exhausted") and err.count("\n") == 1

    code, _, _ = _run(
        capsys,
        vault,
        "admin",
        "budget",
        "set",
        "--analyst",
        "alice",
        "--dataset",
        "voters",
        "--epsilon",
        "2",
    )
    assert code == 0
    code, out, _ = _run(capsys, vault, "admin", "budget", "show", "--analyst", "alice", "--json")
    assert json.loads(out)["budgets"][0]["epsilon_total"] == 2.0
    code, _, err = _run(
        capsys,
        vault,
        "admin",
        "budget",
        "set",
        "--analyst",
        "ghost",
        "--dataset",
        "voters",
        "--epsilon",
        "2",
    )
    assert code == 2 and "unknown analyst 'ghost'" in err
    code, out, _ = _run(capsys, vault, "admin", "ledger", "export")
    if code == 0:  # the ledger commands exist: the new total is on the ledger
        entries = [json.loads(x) for x in out.splitlines()]
        sets = [e for e in entries if e["action"] == "budget.set"]
        assert [e["details"]["epsilon_total"] for e in sets] == ["2"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--by", "name", "--measure", "count"], 1, "may not be used to group"),
        (["--by", "county", "--measure", "sum:phone"], 1, "no policy bounds"),
        (["--by", "party", "--measure", "count"], 2, "needs --delta"),
        (["--by", "county", "--measure", "median:age"], 2, "bad measure"),
        (["--by", "county", "--measure", "count", "--out", "x.xlsx"], 2, "--out must end"),
    ],
    ids=["disallowed_column", "no_bounds", "dp_keys_without_delta", "bad_measure", "bad_out"],
)
def test_refusals_exit_with_one_line(
    vault: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    got, out, err = _run(
        capsys, vault, "alice", "release", "--dataset", "voters", *args, "--epsilon", "0.1"
    )
    assert (got, out) == (code, "")
    assert message in err and err.count("\n") == 1


def test_unknown_dataset_is_exit_2(
    vault: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(
        capsys,
        vault,
        "alice",
        "release",
        "--dataset",
        "nope",
        "--by",
        "county_desc",
        "--measure",
        "count",
        "--epsilon",
        "0.1",
    )
    assert code == 2 and "unknown dataset 'nope'" in err


def test_key_release_and_segments(
    vault: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        capsys,
        vault,
        "alice",
        "release",
        "--dataset",
        "voters",
        "--by",
        "party",
        "--measure",
        "count",
        "--epsilon",
        "0.3",
        "--delta",
        "1e-9",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["suppressed"]["threshold"] > 0
    assert {r["party"] for r in doc["rows"]} <= {"DEM"}

    code, out, _ = _run(
        capsys,
        vault,
        "alice",
        "segment",
        "--dataset",
        "voters",
        "--features",
        "age",
        "--k",
        "2",
        "--epsilon",
        "0.5",
        "--json",
    )
    assert code == 0
    segs = json.loads(out)["segments"]
    assert len(segs) == 2 and all(18 <= s["centroid"][0] <= 100 for s in segs)
    assert all(isinstance(s["size"], int) for s in segs)
