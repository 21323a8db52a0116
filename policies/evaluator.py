"""The pure access decision: (policy, role, action, resource, purpose) -> Decision.

No IO, no clock, no state: the same inputs always give the same verdict, so the
full role x action matrix is testable as a table. Stateful limits (the reveal
rate limit) are enforced by ``vault.access`` on top of an allowed decision.

Fail closed: an unknown action, a role the policy does not declare, a missing
grant, an ``own`` grant on someone else's resource, or a reveal without an
approved purpose are all denials. Reasons hold ids only (roles, actions,
resources), never a caller's free text.

This module imports nothing of ``policies.model`` (which calls it): it decides over
any object shaped like a policy (:class:`Rules`), so the two do not import each
other.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from policies.vocab import OPERATIONS, resource_owner

__all__ = ["ACTIONS", "EVERYONE", "Decision", "Rules", "decide", "resource_owner"]

ACTIONS = OPERATIONS
EVERYONE = "*"


class Decision(BaseModel):
    """The evaluator's verdict; ``reason`` holds ids only (roles, actions, resources)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed: bool
    reason: str


class _Grant(Protocol):
    @property
    def role(self) -> str: ...

    @property
    def scope(self) -> str: ...


class Rules(Protocol):
    """What :func:`decide` reads of a policy (``policies.model.Policy`` has it)."""

    @property
    def roles(self) -> Collection[str]: ...

    @property
    def reveal_purposes(self) -> Collection[str]: ...

    def roles_for(self, action: str) -> Sequence[_Grant]: ...


def decide(
    policy: Rules,
    role: str,
    action: str,
    resource: str,
    purpose: str | None = None,
    *,
    actor: str | None = None,
) -> Decision:
    if action not in ACTIONS:
        return Decision(allowed=False, reason=f"unknown action '{action}'")
    if role not in policy.roles:
        return Decision(allowed=False, reason=f"role '{role}' is not defined by the policy")
    grants = [g for g in policy.roles_for(action) if g.role in (role, EVERYONE)]
    if not grants:
        return Decision(allowed=False, reason=f"role '{role}' may not {action}")
    if not any(g.scope == "any" for g in grants):
        owner = resource_owner(resource)
        if actor is None or owner != actor:
            return Decision(
                allowed=False,
                reason=f"role '{role}' may {action} only on its own resources, not '{resource}'",
            )
    if action == "reveal":
        if not purpose:
            return Decision(allowed=False, reason="reveal needs a purpose from the policy")
        if purpose not in policy.reveal_purposes:
            return Decision(
                allowed=False, reason="the purpose given is not a reveal purpose of the policy"
            )
    return Decision(allowed=True, reason=f"role '{role}' may {action}")
