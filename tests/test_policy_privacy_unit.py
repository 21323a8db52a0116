"""Policy: privacy unit, delta budgets and the vault-wide cap parse exactly or fail on a line."""

from __future__ import annotations

from fractions import Fraction

import pytest

from policies.errors import PolicyFileError
from policies.load import default_policy_text, parse_policy


def test_default_policy_delta_and_unit() -> None:
    p = parse_policy(default_policy_text())
    unit = p.privacy_unit("nc")
    assert (unit.rows_per_person, unit.max_people, unit.person_key) == (1, 2**25, ())
    assert p.delta_per_release("nc") == Fraction(1, 10**9)  # <= 1e-7 and <= 1/(10 n)
    assert p.delta_default("nc") == Fraction(1, 10**8)
    assert p.analyst_caps() == (Fraction(3), Fraction(3, 10**8))


def test_delta_per_release_never_above_one_tenth_over_n() -> None:
    p = parse_policy(default_policy_text() + """
[datasets.small.budget]
delta_per_release = 0.001

[datasets.small.privacy_unit]
person_key = ["Voter File VANID"]
rows_per_person = 3
max_people = 1000
""")
    assert p.delta_per_release("small") == Fraction(1, 10_000)  # 1 / (10 * 1000)
    unit = p.privacy_unit("small")
    assert (unit.person_key, unit.rows_per_person) == (("Voter File VANID",), 3)
    assert p.privacy_unit("other").rows_per_person == 1  # "*" still holds elsewhere


@pytest.mark.parametrize(("tail", "message"), [
    ("[datasets.x.budget]\nper_analyst_delta = 2\n", "is a delta"),
    ("[datasets.x.budget]\ndelta_per_release = 0\n", "must be > 0"),
    ("[datasets.x.privacy_unit]\nrows_per_person = 0\n", "at least 1"),
    ("[datasets.x.privacy_unit]\nperson = 'id'\n", "unknown key 'person'"),
    ("[datasets.x.budget]\ndataset_cap_delta = -1e-9\n", "negative"),
])
def test_bad_privacy_settings_fail_on_their_line(tail: str, message: str) -> None:
    text = default_policy_text() + "\n" + tail
    with pytest.raises(PolicyFileError, match=message) as info:
        parse_policy(text, "p.toml")
    assert info.value.line is not None and info.value.line > text.count("\n") - 3


def test_negative_vault_wide_cap_fails_on_its_line() -> None:
    text = default_policy_text().replace("analyst_cap = 3.0", "analyst_cap = -1")
    with pytest.raises(PolicyFileError, match="negative") as info:
        parse_policy(text, "p.toml")
    assert info.value.line == text.splitlines().index("analyst_cap = -1") + 1
