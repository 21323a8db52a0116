"""What a new user meets first: fast start-up, README commands that exist, an empty token
that is refused, releases that show their numbers, typos that are bad input (exit 2, and
nothing charged), and purposes that land on the ledger."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.cli import LAZY_COMMANDS, main
from flows.release_view import sig
from vault.db import make_engine
from vault.home import VaultHome

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("presidio_analyzer", "spacy", "opendp", "prefect", "sqlalchemy", "polars")


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = ("import sys, flows.cli; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["ingest", "missing.csv", "--dataset", "x"]],
                         ids=["help", "ingest_missing_file"])
def test_fast_paths_load_no_heavy_library(argv: list[str], tmp_path: Path) -> None:
    code = ("import sys, flows.cli; c = flows.cli.main(sys.argv[1:]); "
            f"print(c, [m for m in {HEAVY!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin",
                                             "CIVICVAULT_HOME": str(tmp_path / "h")})
    assert proc.stdout.strip().splitlines()[-1] in ("0 []", "2 []"), proc.stdout + proc.stderr


def test_lazy_command_summaries_match_their_docstrings() -> None:
    from flows.cli.lazy_commands import load

    for spec in LAZY_COMMANDS:
        cmd = load(spec)
        assert (cmd.help or "").split("\n\n")[0].strip() == spec.summary, spec.name


def _readme_commands() -> list[tuple[list[str], list[str]]]:
    """Every ``civicvault ...`` invocation in README.md's code blocks: its command path and
    its options (a line ending in a backslash continues on the next)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    found: list[tuple[list[str], list[str]]] = []
    for line in lines:
        code = line.split("#", 1)[0]
        for m in re.finditer(r"civicvault((?:\s+[a-z][a-z-]*)+)([^|;&]*)", code):
            words = m.group(1).split()
            options = re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", m.group(2))
            found.append((words, options))
    return found


def test_every_command_in_the_readme_answers_help(capsys: pytest.CaptureFixture[str]) -> None:
    """Each command shown in README.md runs ``--help`` with exit 0 and has the options the
    README gives it (``deploy --watch-folder``, ``release --purpose``, ...)."""
    commands = _readme_commands()
    paths = [words for words, _ in commands]
    assert ["deploy"] in paths and ["ledger", "verify"] in paths and ["release"] in paths
    for words, options in commands:
        assert main([*words, "--help"]) == 0, words
        shown = capsys.readouterr().out
        for opt in options:
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", shown), (words, opt)


@pytest.fixture
def vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A vault with 600 stored voters (default policy + test rules) and analyst alice."""
    from dp_helpers import ALICE
    from test_dp_cli import VOTERS_RULES
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
    yield {"alice": token, "home": str(home.root)}


def _ledger(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["ledger", "export"]) == 0
    return [json.loads(x) for x in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("value", ["", "   "], ids=["empty", "blank"])
def test_empty_token_is_bad_input_never_admin(
    vault: dict[str, str], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CIVICVAULT_TOKEN", value)
    assert main(["principals", "list"]) == 2
    assert "empty" in capsys.readouterr().err
    monkeypatch.delenv("CIVICVAULT_TOKEN")
    assert main(["--token", value, "principals", "list"]) == 2


def test_flow_runtime_refuses_an_empty_token_too(
    vault: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.flow_runtime import principal_for
    from ledger.errors import BadInput

    monkeypatch.setenv("CIVICVAULT_TOKEN", "")
    with pytest.raises(BadInput):
        principal_for(VaultHome(Path(vault["home"])))


def test_release_prints_its_table_and_ledgers_the_purpose(
    vault: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--token", vault["alice"], "release", "--dataset", "voters", "--by", "county",
                 "--measure", "count", "--measure", "mean:age", "--epsilon", "0.5", "--plot",
                 "--purpose", "gotv-planning"])
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"^county\s+count \(±[\d,.]+\)\s+mean_age", out, re.M)
    for county in ("WAKE", "CHATHAM", "ORANGE"):
        assert re.search(rf"^{county}\s+-?[\d,]+\s+[\d.]+$", out, re.M), county
        assert re.search(rf"^{county}\s+█*┄*\s", out, re.M)  # the inline chart
    assert not re.search(r"\d\.\d{5,}", out)  # no 16-digit accuracy
    entries = _ledger(capsys)
    release = [e for e in entries if e["action"] == "release.dp"]
    allowed = [e for e in entries if e["action"] == "policy.allowed"
               and e["resource"] == "dataset/voters" and e["actor"] == "alice"]
    assert release[-1]["purpose"] == "gotv-planning"
    assert allowed[-1]["purpose"] == "gotv-planning"


def test_release_to_an_out_file_named_after_a_person_does_not_echo_its_path(
    vault: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "turnout-jane-doe-4417.csv"  # a typed path may name a person
    code = main(["--token", vault["alice"], "release", "--dataset", "voters", "--by", "county",
                 "--measure", "count", "--epsilon", "0.5", "--out", str(out)])
    shown = capsys.readouterr()
    assert code == 0, shown.err
    assert out.exists() and "wrote the --out file" in shown.out
    assert "jane-doe-4417" not in shown.out + shown.err


@pytest.mark.parametrize(
    ("args", "listed"),
    [(["--by", "countyy", "--measure", "count"], "group-by columns: county"),
     (["--by", "county", "--measure", "mean:agee"], "sum/mean columns: age")],
    ids=["by", "measure"])
def test_unknown_column_is_bad_input_listing_allowed_ones_and_charges_nothing(
    vault: dict[str, str], capsys: pytest.CaptureFixture[str], args: list[str], listed: str
) -> None:
    code = main(["--token", vault["alice"], "release", "--dataset", "voters", *args,
                 "--epsilon", "0.5"])
    err = capsys.readouterr().err
    assert code == 2 and listed in err and err.count("\n") == 1
    assert "countyy" not in err and "agee" not in err  # typed input is not echoed
    assert main(["--token", vault["alice"], "budget", "show", "--json"]) == 0
    budgets = json.loads(capsys.readouterr().out)["budgets"]
    assert all(b["epsilon_spent"] == 0 for b in budgets)


def test_bad_purpose_is_refused_before_anything(
    vault: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--token", vault["alice"], "release", "--dataset", "voters", "--by", "county",
                 "--measure", "count", "--epsilon", "0.5", "--purpose", "call Jane <x@y.z>"])
    err = capsys.readouterr().err
    assert code == 2 and "Jane" not in err


def test_budget_set_refuses_an_unknown_dataset(
    vault: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["budget", "set", "--analyst", "alice", "--dataset", "votres",
                 "--epsilon", "1"]) == 2
    assert "no dataset" in capsys.readouterr().err
    assert main(["budget", "set", "--analyst", "alice", "--dataset", "voters",
                 "--epsilon", "1"]) == 0


def test_erase_records_its_purpose(
    vault: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["erase", "--dataset", "voters", "--match", "voter_id=nobody",
                 "--purpose", "subject-request"]) in (0, 2)
    erases = [e for e in _ledger(capsys) if e["action"] == "policy.allowed"
              and str(e["resource"]).startswith("dataset/voters") and e.get("purpose")]
    assert erases and erases[-1]["purpose"] == "subject-request"


def test_spreadsheet_gets_a_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sheet = tmp_path / "voters.xlsx"
    sheet.write_bytes(b"PK\x03\x04 not really a workbook")
    assert main(["ingest", str(sheet), "--dataset", "x"]) == 2
    assert "save the sheet as CSV" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "text"), [
    (599.6458297114493, "600"), (65906.61, "65,900"), (1920.3, "1,920"), (0.012345, "0.0123"),
    (3, "3"), (4200, "4,200"), (-3.3, "-3.3"), (110.0, "110")])
def test_numbers_print_with_three_significant_digits_and_no_exponent(
    value: float, text: str
) -> None:
    assert sig(value) == text


def test_ctrl_c_is_one_line_and_exit_130_however_it_surfaces(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C landing while Prefect sets up a task run surfaces as Prefect's own
    ``ValueError("Task run is not set")``, raised while handling the interrupt."""
    import typer
    from prefect.exceptions import TerminationSignal

    import flows.cli as cli

    def command(**_: object) -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ValueError("Task run is not set")  # noqa: B904 (as Prefect does)

    def terminated(**_: object) -> None:  # SIGTERM under Prefect's own handler, and an
        try:  # error while the engine reported the crash (fresh clone, 1 suite in 3)
            raise TerminationSignal(signal=signal.SIGTERM)
        except TerminationSignal:
            raise ValueError("I/O operation on closed file")  # noqa: B904

    def unhandled(**_: object) -> None:  # the same signal, reaching the CLI itself
        raise TerminationSignal(signal=signal.SIGTERM)

    def broken(**_: object) -> None:
        raise ValueError("a bug")

    typer_app = typer.Typer()

    @typer_app.command()
    def sleeper() -> None:  # Ctrl-C in a command: typer's main returns 130
        raise KeyboardInterrupt

    ctrl_c = typer.main.get_command(typer_app).main

    capsys.readouterr()
    for raising in (command, ctrl_c, terminated, unhandled):
        monkeypatch.setattr(cli, "lazy_click_app", lambda *_, r=raising: r)
        assert main([]) == 130
        assert capsys.readouterr().err == "error: interrupted\n"
    monkeypatch.setattr(cli, "lazy_click_app", lambda *_: broken)  # no interrupt: a bug
    assert main(["demo"]) == 1
    assert capsys.readouterr().err.startswith("error: internal error (ValueError)")


PERSON = "jane.doe@example.org"


@pytest.mark.parametrize("args", [
    ["demo", PERSON],                       # an extra argument: Click quoted it back
    ["demo", f"--{PERSON}"],                # an unknown option
    [PERSON],                               # an unknown command
    ["erase", PERSON, "--dataset", "voters"],  # the value without its --match
    ["release", "--dataset", "voters", f"--by={PERSON}", "--nope"],
    ["audit", "report", "--format", PERSON],
], ids=["extra-argument", "unknown-option", "unknown-command", "erase-without-match",
        "option-value", "choice"])
def test_a_usage_error_never_quotes_back_what_the_caller_typed(
        capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    """Anything typed can be a person's name or email, and error lines end up in logs:
    a usage error says what is wrong, in one line, exit 2, without the typed text."""
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert PERSON not in err and PERSON not in out, err
    assert "jane" not in err.lower(), err
