"""The pure evaluator over the default policy: every role x every action, as issue 5 fixes it."""

from __future__ import annotations

import pytest

from policies.evaluator import decide, resource_owner
from policies.load import default_policy_text, parse_policy
from policies.model import ACTIONS, Policy

ROLES = ("admin", "ingestor", "steward", "analyst", "compliance")
EVERYONE = frozenset(ROLES)

# The matrix of issue 5 (outside checks rely on exactly this). "analyst" on budget.show is
# own-only: checked separately below.
MATRIX: dict[str, frozenset[str]] = {
    "ingest": frozenset({"ingestor", "admin"}),
    "classify": frozenset({"ingestor", "steward", "admin"}),
    "release": frozenset({"analyst"}),
    "segment": frozenset({"analyst"}),
    "budget.set": frozenset({"admin", "steward"}),
    "budget.show": frozenset({"analyst", "compliance", "admin"}),
    "erase": frozenset({"steward", "admin"}),
    "reveal": frozenset({"steward"}),
    "keys.rotate": frozenset({"admin"}),
    "principals.add": frozenset({"admin"}),
    "principals.revoke": frozenset({"admin"}),
    "principals.list": frozenset({"admin", "compliance"}),
    "ledger.verify": frozenset({"compliance", "steward", "admin"}),
    "ledger.export": frozenset({"compliance", "steward", "admin"}),
    "ledger.prove": frozenset({"compliance", "steward", "admin"}),
    "ledger.consistency": frozenset({"compliance", "steward", "admin"}),
    "ledger.checkpoint": EVERYONE,
    "ledger.pubkey": EVERYONE,
    "ledger.annotate": frozenset({"compliance", "admin"}),
    "audit.report": frozenset({"compliance", "admin"}),
    "policy.show": EVERYONE,
    "policy.apply": frozenset({"admin"}),
    "link.build": frozenset({"steward", "admin"}),
    "link.report": frozenset({"analyst"}),
}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(default_policy_text(), "default.toml")


def test_matrix_covers_every_action() -> None:
    assert set(MATRIX) == ACTIONS


@pytest.mark.parametrize("action", sorted(MATRIX))
@pytest.mark.parametrize("role", ROLES)
def test_default_matrix(policy: Policy, role: str, action: str) -> None:
    # each principal acting on its own resource, with an approved purpose
    resource = f"budget:{role}-1/nc" if action == "budget.show" else "dataset:nc"
    purpose = "legal-hold" if action == "reveal" else None
    verdict = decide(policy, role, action, resource, purpose, actor=f"{role}-1")
    assert verdict.allowed is (role in MATRIX[action]), verdict.reason
    assert action in verdict.reason


def test_analyst_sees_only_its_own_budget(policy: Policy) -> None:
    own = policy.decide("analyst", "budget.show", "budget:alice/nc", actor="alice")
    assert own.allowed
    other = policy.decide("analyst", "budget.show", "budget:bob/nc", actor="alice")
    assert not other.allowed and "own" in other.reason
    everyone = policy.decide("analyst", "budget.show", "budget:*", actor="alice")
    assert not everyone.allowed
    anonymous = policy.decide("analyst", "budget.show", "budget:alice")
    assert not anonymous.allowed
    prefix_trick = policy.decide("analyst", "budget.show", "budget:alice2/nc", actor="alice")
    assert not prefix_trick.allowed
    assert policy.decide("compliance", "budget.show", "budget:*", actor="carol").allowed


def test_reveal_needs_a_policy_purpose(policy: Policy) -> None:
    assert not policy.decide("steward", "reveal", "record:nc/1", None).allowed
    assert not policy.decide("steward", "reveal", "record:nc/1", "").allowed
    made_up = policy.decide("steward", "reveal", "record:nc/1", "curiosity about Jane Doe")
    assert not made_up.allowed
    assert "Jane" not in made_up.reason  # free text is never echoed
    assert policy.decide("steward", "reveal", "record:nc/1", "erasure-request").allowed
    assert not policy.decide("admin", "reveal", "record:nc/1", "erasure-request").allowed


def test_unknown_role_and_action_fail_closed(policy: Policy) -> None:
    assert not policy.decide("root", "policy.show", "policy").allowed  # not even "*" grants
    assert not policy.decide("admin", "drop.tables", "vault").allowed
    assert not policy.decide("admin", "", "vault").allowed


def test_action_granted_to_nobody_is_denied() -> None:
    text = '[roles]\nadmin = "x"\n[permissions]\ningest = []\n'
    policy = parse_policy(text)
    assert not policy.decide("admin", "ingest", "dataset:a").allowed
    assert not policy.decide("admin", "erase", "dataset:a").allowed


@pytest.mark.parametrize(
    ("resource", "owner"),
    [
        ("budget:alice", "alice"),
        ("budget:alice/nc", "alice"),
        ("budget:", None),
        ("policy", None),
        (":alice", None),
    ],
)
def test_resource_owner(resource: str, owner: str | None) -> None:
    assert resource_owner(resource) == owner
