"""The one vocabulary: resource names, ledger actions, lookup entities (issue 13)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import orjson
import pytest

from ledger.entry import EntryDraft, place_chain
from ledger.errors import BadInput, UnknownAction
from policies.errors import PolicyFileError
from policies.load import default_policy, default_policy_text, parse_policy
from vault import vocab
from vault.crosscheck import vouched_hashes
from vault.vocab import LEDGER_ACTIONS, VOUCHING_ACTIONS

ROOT = Path(__file__).resolve().parents[1]


def _raw(action: str, **fields: object) -> bytes:
    draft = EntryDraft(actor="a", action=action, resource="r", **fields)  # type: ignore[arg-type]
    [entry] = place_chain([draft], start=0, prev=bytes(32), time="2026-01-01T00:00:00.000000Z")
    return entry.raw


def test_resources_have_one_separator_and_no_free_text() -> None:
    assert vocab.dataset("nc") == "dataset/nc"
    assert vocab.batch("nc", 7) == "dataset/nc/batch/7"
    assert vocab.principal("alice") == "principal/alice"
    assert vocab.budget("alice", "nc") == "budget/alice/nc"
    assert vocab.budget() == "budget/*"
    assert vocab.data_key(3) == "vault/keys/3"
    typed = "Jane Doe's voters.csv"
    for resource in (vocab.file(typed), vocab.dataset(typed), vocab.principal(typed)):
        assert "Jane" not in resource and "sha256" in resource
    assert ":" not in "".join((vocab.dataset("nc"), vocab.budget("alice", "nc")))


@pytest.mark.parametrize(("resource", "owner"), [
    ("budget/alice/nc", "alice"), ("budget/alice", "alice"), ("budget/*", None),
    ("budget/", None), ("dataset/alice", None), ("principal/alice", None),
    ("budget:alice/nc", "alice"),  # the older spelling is still read
])
def test_only_owned_kinds_name_an_owner(resource: str, owner: str | None) -> None:
    assert vocab.resource_owner(resource) == owner


def test_own_grant_reads_the_vocabulary_resource() -> None:
    policy = default_policy()
    assert policy.decide("analyst", "budget.show", vocab.budget("alice", "nc"),
                         actor="alice").allowed
    assert not policy.decide("analyst", "budget.show", vocab.budget("bob", "nc"),
                             actor="alice").allowed
    assert not policy.decide("analyst", "budget.show", vocab.budget(), actor="alice").allowed


def test_every_action_written_in_the_code_is_in_the_vocabulary() -> None:
    """No ledger action literal outside the vocabulary: ``action="..."`` is a constant."""
    offenders = []
    for path in [*ROOT.glob("vault/**/*.py"), *ROOT.glob("policies/*.py")]:
        if path.name == "vocab.py":
            continue
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "action" and isinstance(
                    node.value, ast.Constant):
                offenders.append(f"{path.relative_to(ROOT)}:{node.value.lineno}")
    assert offenders == []


def test_no_resource_f_strings_in_the_vault() -> None:
    pattern = re.compile(r'f"(dataset|principal|budget|vault/keys|file)[/:]\{')
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in ROOT.glob("vault/**/*.py")
            for i, line in enumerate(p.read_text("utf-8").splitlines(), 1)
            if pattern.search(line)]
    assert hits == []


def test_vouching_actions_come_from_the_vocabulary() -> None:
    assert {"vault.ingest.batch", "vault.batch.resealed"} == VOUCHING_ACTIONS
    assert all(LEDGER_ACTIONS[a].vouches == "batch" for a in VOUCHING_ACTIONS)
    from vault import crosscheck
    assert crosscheck.VOUCHING_ACTIONS is VOUCHING_ACTIONS


def test_crosscheck_refuses_an_unknown_action_that_carries_data() -> None:
    good = _raw("vault.ingest.batch", data_hash="ab" * 32, details={"batch": 1})
    note = _raw("note.review")  # an annotation: no details, no data_hash
    assert vouched_hashes([good, note]) == {1: "ab" * 32}
    sneaky = _raw("vault.batch.compacted", data_hash="cd" * 32, details={"batch": 1})
    with pytest.raises(UnknownAction) as info:
        vouched_hashes([good, sneaky])
    assert info.value.exit_code == 1 and "vault.batch.compacted" in str(info.value)
    other = _raw("data.moved", details={"batch": 2})
    with pytest.raises(UnknownAction):
        vouched_hashes([other])


def test_annotations_may_not_take_a_vault_action() -> None:
    assert vocab.annotation_action("note.review") == "note.review"
    with pytest.raises(BadInput):
        vocab.annotation_action("vault.ingest.batch")


def test_audit_summary_lists_unknown_actions() -> None:
    from vault.audit import summarize

    entries = [_raw("policy.denied", details={"op": "erase"}),
               _raw("made.up", details={"x": 1}), _raw("note.denied")]
    summary = summarize(entries)
    assert len(summary.denials) == 1
    assert summary.unknown_actions == {"made.up": 1}


def test_lookup_entities_are_defined_in_the_vocabulary_each_with_a_normaliser() -> None:
    from vault.ingest import LOOKUP_NORMALIZERS
    from vault.pii.handling import DEFAULT_LOOKUP_ENTITIES

    policy = default_policy()
    assert DEFAULT_LOOKUP_ENTITIES is vocab.CLASSIFIER_LOOKUPS
    assert DEFAULT_LOOKUP_ENTITIES <= policy.lookup_entities <= set(LOOKUP_NORMALIZERS)
    assert LOOKUP_NORMALIZERS is vocab.LOOKUP_NORMALIZERS


def test_policy_with_a_lookup_entity_without_normaliser_is_refused() -> None:
    text = default_policy_text().replace('"US_DRIVER_LICENSE"]', '"US_DRIVER_LICENSE", "IBAN"]')
    assert text != default_policy_text()
    with pytest.raises(PolicyFileError) as info:
        parse_policy(text, "p.toml")
    assert "IBAN" in str(info.value) and "normaliser" in str(info.value)
    assert info.value.line is not None and info.value.line > 1


def test_entry_bytes_begin_with_the_action() -> None:
    raw = _raw("policy.allowed", details={"op": "x"})
    assert orjson.loads(raw)["action"] == vocab.action_of_entry(raw).name
