"""Policy files: the default loads; every kind of mistake is one message with its line."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import pytest

from policies.errors import PolicyFileError
from policies.load import default_policy_text, load_policy, parse_policy

MINIMAL = """\
version = 1
[roles]
admin = "runs it"
analyst = "asks"

[permissions]
ingest = ["admin"]
budget.show = ["analyst:own", "admin"]
"ledger.pubkey" = ["*"]

[datasets."*"]
columns = ["county", "age"]

[datasets."*".group_by]
county = ["A", "B"]

[datasets."*".bounds]
age = { lower = 18, upper = 110 }

[datasets."*".budget]
per_analyst = 0.1
dataset_cap = 1

[reveal]
purposes = ["legal-hold"]
limit = 2
"""


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[occurrence - 1]


def error_for(text: str) -> PolicyFileError:
    with pytest.raises(PolicyFileError) as info:
        parse_policy(text, "p.toml")
    err = info.value
    assert "\n" not in str(err)
    assert str(err).startswith(f"p.toml:{err.line}: ")
    return err


def test_default_policy_loads_and_is_documented() -> None:
    text = default_policy_text()
    policy = parse_policy(text, "default.toml")
    assert policy.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert set(policy.roles) == {"admin", "ingestor", "steward", "analyst", "compliance"}
    assert text.count("#") > 30  # documented inline
    cols = policy.columns_for("nc_voters")
    assert len(cols["county_desc"].keys or ()) == 100
    assert len(cols["county_id"].keys or ()) == 100
    assert cols["age_band"].keys == ("18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75+")
    assert cols["party_cd"].keys == ("DEM", "REP", "UNA", "LIB", "GRE", "CST")
    assert cols["precinct_abbrv"].groupable and cols["precinct_abbrv"].keys is None
    age = cols["birth_age"]
    assert (age.lower, age.upper, age.groupable) == (18, 110, False)
    assert isinstance(age.lower, int)
    assert policy.budget_default("anything") == Fraction(1)
    assert policy.dataset_cap("anything") == Fraction(10)
    assert policy.pii_handling("direct", "PERSON") == "encrypt"
    assert policy.pii_handling("quasi", "BIRTH_DATE") == "generalize"
    assert policy.pii_handling("harmless", "OTHER") == "keep"
    assert policy.pii_handling("no-such-category", "X") == "encrypt"  # fail closed
    assert "VOTER_ID" in policy.lookup_entities
    assert "legal-hold" in policy.reveal_purposes
    assert policy.reveal.limit == 5


def test_load_policy_from_file_hashes_bytes(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    policy = load_policy(path)
    assert policy.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="cannot read policy file"):
        load_policy(tmp_path / "nope.toml")


def test_budgets_are_exact_fractions_not_floats() -> None:
    policy = parse_policy(MINIMAL.replace("per_analyst = 0.1", "per_analyst = 0.3"))
    assert policy.budget_default("d") == Fraction(3, 10)
    assert policy.budget_default("d") * 10 == 3  # no float drift
    assert policy.dataset_cap("d") == Fraction(1)


def test_dataset_section_extends_and_overrides_star() -> None:
    text = MINIMAL + """
[datasets.nc]
columns = ["party"]
[datasets.nc.group_by]
party = ["DEM", "REP"]
age = "dp"
[datasets.nc.budget]
per_analyst = 0.25
"""
    policy = parse_policy(text)
    nc = policy.columns_for("nc")
    assert set(nc) == {"county", "age", "party"}
    assert nc["age"].groupable and nc["age"].keys is None and nc["age"].upper == 110
    assert policy.budget_default("nc") == Fraction(1, 4)
    assert policy.dataset_cap("nc") == Fraction(1)  # inherited from "*"
    assert set(policy.columns_for("other")) == {"county", "age"}


def test_entity_rule_cannot_keep_direct_identifiers_in_plaintext() -> None:
    policy = parse_policy(MINIMAL + '[pii.entities]\nPERSON = "keep"\n')
    assert policy.pii_handling("direct", "PERSON") == "encrypt"
    assert policy.pii_handling("harmless", "PERSON") == "keep"


# -- one message, right line, per kind of mistake -------------------------------------------

CASES = [
    # (id, replace this, with this, expected message part, line of this text in the result)
    ("toml-syntax", 'admin = "runs it"', 'admin = "runs it', "TOML syntax error", 'admin = "runs'),
    ("unknown-role", 'ingest = ["admin"]', 'ingest = ["admin", "wizard"]', "unknown role 'wizard'",
     "wizard"),
    ("unknown-action", 'ingest = ["admin"]', 'ingestt = ["admin"]', "unknown action 'ingestt'",
     "ingestt"),
    ("unknown-dotted-action", '"ledger.pubkey"', '"ledger.pubkye"', "unknown action", "pubkye"),
    ("unknown-scope", '"analyst:own"', '"analyst:all"', "unknown scope", "analyst:all"),
    ("bad-bounds", "lower = 18, upper = 110", "lower = 110, upper = 18", "bad bounds",
     "lower = 110"),
    ("equal-bounds", "lower = 18, upper = 110", "lower = 18, upper = 18", "bad bounds",
     "upper = 18 "),
    ("negative-budget", "per_analyst = 0.1", "per_analyst = -0.1", "negative budget",
     "per_analyst"),
    ("unknown-group-column", 'county = ["A", "B"]', 'countyy = ["A", "B"]',
     "unknown column 'countyy'", "countyy"),
    ("unknown-bounds-column", "age = { lower", "agee = { lower", "unknown column 'agee'",
     "agee"),
    ("unknown-top-key", "version = 1", "version = 1\nextra = true", "unknown key 'extra'",
     "extra"),
    ("unknown-nested-key", "limit = 2", "limit = 2\nlimits = 3", "unknown key 'limits'",
     "limits"),
    ("unknown-inline-key", "upper = 110 }", "upper = 110, step = 1 }", "unknown key 'step'",
     "step"),
    ("unknown-budget-key", "dataset_cap = 1", "dataset_cap = 1\ncap = 2", "unknown key 'cap'",
     "cap = 2"),
    ("unknown-handling", "[reveal]", '[pii.categories]\ndirect = "shred"\n[reveal]',
     "unknown handling", "shred"),
    ("keep-direct", "[reveal]", '[pii.categories]\ndirect = "keep"\n[reveal]',
     "may not be kept", 'direct = "keep"'),
    ("bad-purpose", '["legal-hold"]', '["legal-hold", "Just Because"]', "not a valid purpose",
     "Just Because"),
    ("negative-limit", "limit = 2", "limit = -2", "at least 0", "limit = -2"),
    ("wrong-type", 'columns = ["county", "age"]', 'columns = "county"', "must be an array",
     'columns = "county"'),
    ("duplicate-key", 'county = ["A", "B"]', 'county = ["A", "B", "A"]', "repeats",
     'county = ["A", "B", "A"]'),
]


@pytest.mark.parametrize(("old", "new", "message", "needle"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_policy_file_error_names_the_line(old: str, new: str, message: str, needle: str) -> None:
    assert old in MINIMAL
    text = MINIMAL.replace(old, new, 1)
    err = error_for(text)
    assert message in str(err)
    assert err.line == line_of(text, needle), str(err)


def test_unknown_role_in_multiline_array_points_at_the_item() -> None:
    text = MINIMAL.replace('ingest = ["admin"]', 'ingest = [\n  "admin",\n  "wizard",\n]')
    err = error_for(text)
    assert err.line == line_of(text, '"wizard"')


def test_unknown_column_in_a_dataset_section_after_star() -> None:
    text = MINIMAL + '\n[datasets.nc.bounds]\n"turn out" = { lower = 0, upper = 1 }\n'
    err = error_for(text)
    assert "unknown column 'turn out'" in str(err)
    assert err.line == line_of(text, "turn out")


def test_unknown_table_header_points_at_header() -> None:
    text = MINIMAL + "\n[datasets.nc.groupby]\nparty = []\n"
    err = error_for(text)
    assert "unknown key 'groupby'" in str(err)
    assert err.line == line_of(text, "[datasets.nc.groupby]")


def test_syntax_error_at_end_of_file_has_a_line() -> None:
    text = MINIMAL + "[reveal2\n"
    err = error_for(text)
    assert err.line is not None and err.line >= len(MINIMAL.splitlines())


def test_messages_never_echo_values() -> None:
    secret = "555-12-3456"
    text = MINIMAL.replace("per_analyst = 0.1", f'per_analyst = "{secret}"')
    err = error_for(text)
    assert secret not in str(err)


def test_missing_roles_and_permissions() -> None:
    assert "no [roles]" in str(error_for("version = 1\n"))
    assert "no [permissions]" in str(error_for('[roles]\na = "x"\n'))


def test_error_is_bad_input_exit_2() -> None:
    err = error_for(MINIMAL.replace("version = 1", "version = 2"))
    assert err.exit_code == 2
    assert err.line == 1


def test_locator_finds_every_key_and_item_of_the_default_policy() -> None:
    import tomllib

    from policies.load import _Locator

    text = default_policy_text()
    lines = text.splitlines()
    locator = _Locator(text)

    def walk(node: object, loc: tuple[str | int, ...]) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                path = (*loc, key)
                line = locator.lines.get(path)
                assert line is not None, path
                assert key.strip('"') in lines[line - 1] or "[" in lines[line - 1], path
                walk(child, path)
        elif isinstance(node, list):
            for i, child in enumerate(node):
                line = locator.lines.get((*loc, i))
                assert line is not None, (*loc, i)
                if isinstance(child, str):
                    assert f'"{child}"' in lines[line - 1], (*loc, i)

    walk(tomllib.loads(text), ())


def test_locator_handles_multiline_strings_and_quoted_keys() -> None:
    from policies.load import _Locator

    text = (
        'description = """\nline one\n[not a table]\nkey = "not a key"\n"""\n'
        "[roles]\n"
        "'lit.eral' = 'x'\n"
        '"esc\\"aped" = "y" # comment [x]\n'
        "arr = [ # c\n  'a',\n  \"b\", # c\n]\n"
        "[[things]]\nname = 1\n[[things]]\nname = 2\n"
    )
    loc = _Locator(text)
    assert loc.line_of(("description",)) == 1
    assert loc.line_of(("roles",)) == 6
    assert loc.line_of(("roles", "lit.eral")) == 7
    assert loc.line_of(("roles", 'esc"aped')) == 8
    assert loc.line_of(("roles", "arr", 1)) == 11
    assert loc.line_of(("things", 1, "name")) == 16
    assert loc.line_of(("roles", "missing", "deeper")) == 6  # nearest known ancestor
