"""RFC 8785: our fast path agrees with the reference encoder wherever it is taken."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import canonical_bytes, encode_plain, is_plain
from ledger.entry import Entry, EntryDraft, place_chain
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


# -- a batch of entries: one encoder call, then the chain spliced in --------------------------

STAMP = "2026-01-01T00:00:00.000000Z"
texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
drafts = st.builds(
    EntryDraft, actor=texts, action=st.sampled_from(["test.note", "vault.ingest.batch"]),
    resource=texts, purpose=st.none() | texts,
    data_hash=st.none() | st.just("ab" * 32),
    details=st.none() | st.dictionaries(any_keys, values, max_size=4)
    | st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=8), scalars, max_size=4),
)


def _reference_chain(batch: list[EntryDraft], start: int, prev: bytes) -> list[bytes]:
    """What each entry must be, built one at a time with the reference encoder."""
    out = []
    for seq, draft in enumerate(batch, start):
        raw = rfc8785.dumps(draft.document(seq=seq, prev=prev.hex(), time=STAMP))
        out.append(raw)
        prev = hashlib.sha256(b"\x00" + raw).digest()
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(drafts, min_size=1, max_size=12), st.integers(0, 2**40), st.binary(min_size=32,
                                                                                    max_size=32))
def test_placed_chain_equals_reference_entries(batch: list[EntryDraft], start: int,
                                               prev: bytes) -> None:
    """Plain and non-plain drafts mixed in one batch: every entry's bytes are RFC 8785's,
    each links to the one before, and reads back as the same Entry."""
    entries = place_chain(batch, start=start, prev=prev, time=STAMP)
    assert [e.raw for e in entries] == _reference_chain(batch, start, prev)
    for i, entry in enumerate(entries):
        assert entry.seq == start + i
        assert entry.prev == (prev if i == 0 else entries[i - 1].leaf_hash).hex()
        assert entry.leaf_hash == hashlib.sha256(b"\x00" + entry.raw).digest()
        assert entry.details == batch[i].details
        # parsing gives the same fields (numbers come back as JSON numbers: 1e16 -> int)
        assert dataclasses.replace(Entry.parse(entry.raw), details=entry.details) == entry


def test_nul_and_lookalike_text_cannot_move_the_prev_splice() -> None:
    """The batch encoder cuts its output at raw NUL bytes and at the last '"prev":"';
    field values holding NULs or a forged '"prev":"pppp...' stay inside their strings."""
    forged = '"prev":"' + "p" * 64 + '"'
    batch = [
        EntryDraft(actor="a\x00b", action="test.note", resource="\x00", purpose=forged,
                   details={"\x00": "\x00", "prev": forged, "k": [forged, "\x00"]}),
        EntryDraft(actor=forged, action="test.note", resource=forged,
                   details={"float": 0.5, "prev": forged}),  # reference path
        EntryDraft(actor="x", action="test.note", resource="y\x00" * 3),
    ]
    entries = place_chain(batch, start=3, prev=bytes(32), time=STAMP)
    assert [e.raw for e in entries] == _reference_chain(batch, 3, bytes(32))
    assert all(b"\x00" not in e.raw for e in entries)


def test_unencodable_draft_in_a_batch_is_bad_input() -> None:
    batch = [EntryDraft(actor="a", action="test.note", resource="r", details={"i": i})
             for i in range(3)]
    batch.append(EntryDraft(actor="a", action="test.note", resource="r",
                            details={"s": "\ud800"}))  # a lone surrogate: not JSON text
    with pytest.raises(BadInput):
        place_chain(batch, start=0, prev=bytes(32), time=STAMP)
