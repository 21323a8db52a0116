"""RFC 8785: our fast path agrees with the reference encoder wherever it is taken."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import canonical_bytes, encode_plain, is_plain
from ledger.entry import Entry, EntryDraft
from ledger.errors import BadInput

SAFE = 2**53 - 1
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-SAFE, SAFE),
    st.text(st.characters(blacklist_categories=("Cs",))),
)
any_keys = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
values = st.recursive(
    scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_keys, inner, max_size=4),
    max_leaves=20,
)
plain_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(plain_values)
def test_fast_path_equals_rfc8785(value: Any) -> None:
    assert is_plain(value)
    assert encode_plain(value) == rfc8785.dumps(value)
    assert canonical_bytes(value) == rfc8785.dumps(value)
    assert json.loads(canonical_bytes(value)) == value


@settings(max_examples=300, deadline=None)
@given(values)
def test_canonical_bytes_equals_rfc8785_for_any_value(value: Any) -> None:
    assert canonical_bytes(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("value", [
    {"\u00e9": 1, "e": 2},            # non-ASCII key: UTF-16 order decides
    {"\U0001f600": 1, "\ufb01": 2},   # astral vs BMP: code-point and UTF-16 orders differ
    {"x": 1.5e300, "y": -0.0},        # floats: ECMAScript number formatting
    {"n": 2**53 - 1},
])
def test_fallback_cases_match_reference(value: Any) -> None:
    assert canonical_bytes(value) == rfc8785.dumps(value)


def test_non_plain_values_take_the_reference_path() -> None:
    assert not is_plain({"\u00e9": 1})
    assert not is_plain({"x": 1.0})
    assert not is_plain({"n": 2**53})
    assert not is_plain((1, 2))


def test_unencodable_values_are_bad_input() -> None:
    with pytest.raises(BadInput):
        canonical_bytes({"n": 2**64})
    with pytest.raises(BadInput):
        canonical_bytes({"x": float("nan")})


def test_entry_bytes_are_canonical_and_carry_the_contract_fields() -> None:
    draft = EntryDraft(actor="admin", action="vault.ingest.batch", resource="dataset/nc",
                       purpose="nightly", data_hash="ab" * 32,
                       details={"rows": 3, "ratio": 0.5, "caf\u00e9": "x"})
    entry = Entry.place(draft, seq=7, prev="00" * 32, time="2026-01-01T00:00:00.000000Z")
    doc = json.loads(entry.raw)
    assert entry.raw == rfc8785.dumps(doc)
    assert set(doc) == {"seq", "prev", "time", "actor", "action", "resource", "purpose",
                        "data_hash", "details"}
    assert Entry.parse(entry.raw) == entry


@pytest.mark.parametrize("bad", [
    {"action": "Not Dotted"}, {"action": ""}, {"resource": ""}, {"data_hash": "XYZ"},
    {"details": ["not", "a", "mapping"]},
])
def test_bad_drafts_are_refused(bad: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"actor": "a", "action": "x.y", "resource": "r", **bad}
    with pytest.raises(BadInput):
        EntryDraft(**fields)
