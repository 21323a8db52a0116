"""The pure access decision: (policy, role, action, resource, purpose) -> Decision.

No IO, no clock, no state: the same inputs always give the same verdict, so the
full role x action matrix is testable as a table. Stateful limits (the reveal
rate limit) are enforced by ``vault.access`` on top of an allowed decision.

Fail closed: an unknown action, a role the policy does not declare, a missing
grant, an ``own`` grant on someone else's resource, or a reveal without an
approved purpose are all denials. Reasons hold ids only (roles, actions,
resources), never a caller's free text.
"""

from __future__ import annotations

from policies.model import ACTIONS, EVERYONE, Decision, Policy


def resource_owner(resource: str) -> str | None:
    """The owner named by a resource ``<kind>:<owner>[/<more>]``, if any."""
    kind, sep, rest = resource.partition(":")
    if not sep or not kind:
        return None
    owner = rest.split("/", 1)[0]
    return owner or None


def decide(
    policy: Policy,
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
