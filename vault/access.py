"""Authentication and authorisation of every public operation, each decision on the ledger.

::

    principal = authenticate(engine, home, token)      # None -> <home>/admin.token
    with access(engine, home, principal, "erase", "dataset/nc") as conn:
        ...   # the operation, in the same transaction as its "policy.allowed" entry

- The policy is the one installed at ``home.policy_path`` (parsed once per
  process per file content).
- Allowed: a ``policy.allowed`` entry (details: op, role) is appended in the
  transaction that is yielded, so the decision and the operation commit or roll
  back together.
- Denied: a ``policy.denied`` entry (details: op, role, reason) is committed in
  its own transaction, then :class:`PolicyDenied` is raised with a one-line
  reason holding ids only. The caller's operation never starts.
- ``reveal`` is also rate-limited per principal (``[reveal] limit`` per
  ``window_seconds``); each allowed reveal is counted in the same transaction.
- A principal revoked after it authenticated is refused when it next acts.

Unknown and malformed tokens are refused without a ledger entry (there is no one
to attribute them to, and writing one per guess would let anyone fill the
ledger); using a revoked principal's token is ledgered as ``auth.denied``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

from sqlalchemy import Connection, Engine, func, insert, select

from ledger import store as ledger_store
from ledger.entry import EntryDraft
from policies.errors import PolicyDenied, PolicyFileError, Unauthenticated
from policies.load import parse_policy_bytes
from policies.model import Policy
from vault import vocab
from vault.home import VaultHome, read_secret_file
from vault.principals import T_PRINCIPALS, T_REVEALS, find_by_token, is_well_formed

__all__ = ["Principal", "access", "authenticate", "installed_policy"]


@dataclass(frozen=True)
class Principal:
    id: str
    role: str


# -- authentication --------------------------------------------------------------------------


def authenticate(engine: Engine, home: VaultHome, token: str | None) -> Principal:
    """The principal holding ``token`` (default: the home's admin token); else Unauthenticated."""
    if token is None:
        if not home.admin_token_path.exists():
            raise Unauthenticated(
                "no token given (--token or CIVICVAULT_TOKEN) and no admin.token in the vault home"
            )
        token = read_secret_file(home.admin_token_path, what="admin token").decode(
            "ascii", errors="replace")
    token = token.strip()
    if not is_well_formed(token):
        raise Unauthenticated("malformed token (expected cvt_ followed by 43 characters)")
    with engine.connect() as conn:
        conn.execution_options(readonly=True)
        record = find_by_token(conn, token)
    if record is None:
        raise Unauthenticated("unknown token")
    if record.revoked is not None:
        _ledger_own_tx(engine, EntryDraft(
            actor=record.name, action=vocab.AUTH_DENIED, resource=vocab.principal(record.name),
            details={"role": record.role, "reason": "revoked"}))
        raise Unauthenticated(f"principal '{record.name}' is revoked",
                              revoked=(record.name, record.role))
    return Principal(id=record.name, role=record.role)


# -- the installed policy --------------------------------------------------------------------

_POLICIES: dict[tuple[str, str], Policy] = {}
_POLICIES_LOCK = threading.Lock()


def installed_policy(home: VaultHome) -> Policy:
    """The policy installed in ``home``, parsed once per process per file content."""
    path = home.policy_path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PolicyFileError(
            "no policy installed in the vault home (run 'civicvault init' or "
            "'civicvault policy apply FILE')", path=str(path)) from None
    key = (str(path), hashlib.sha256(data).hexdigest())
    with _POLICIES_LOCK:
        cached = _POLICIES.get(key)
    if cached is not None:
        return cached
    policy = parse_policy_bytes(data, str(path))
    with _POLICIES_LOCK:
        if len(_POLICIES) >= 32:
            _POLICIES.clear()
        _POLICIES[key] = policy
    return policy


# -- authorisation ---------------------------------------------------------------------------


@contextmanager
def access(
    engine: Engine,
    home: VaultHome,
    principal: Principal,
    action: str,
    resource: str,
    *,
    purpose: str | None = None,
) -> Iterator[Connection]:
    """Decide, ledger the decision, and yield the operation's transaction (or raise)."""
    policy = installed_policy(home)
    decision = policy.decide(principal.role, action, resource, purpose, actor=principal.id)
    if not decision.allowed:
        _deny(engine, policy, principal, action, resource, purpose, decision.reason)
    refusal: str | None = None
    revoked = False
    with engine.begin() as conn:
        query = select(T_PRINCIPALS.c.revoked, T_PRINCIPALS.c.role).where(
            T_PRINCIPALS.c.id == principal.id)
        if action == "reveal":
            query = query.with_for_update()  # serialise this principal's reveals (PostgreSQL)
        row = conn.execute(query).first()
        if row is None or row.revoked is not None or row.role != principal.role:
            revoked = True
        elif action == "reveal":
            refusal = _count_reveal(conn, policy, principal, resource, purpose)
        if not revoked and refusal is None:
            ledger_store.append(conn, [EntryDraft(
                actor=principal.id, action=vocab.POLICY_ALLOWED, resource=resource, purpose=purpose,
                details={"op": action, "role": principal.role})])
            yield conn
            return
    if revoked:
        _ledger_own_tx(engine, EntryDraft(
            actor=principal.id, action=vocab.AUTH_DENIED, resource=resource,
            details={"op": action, "role": principal.role, "reason": "revoked"}))
        raise Unauthenticated(f"principal '{principal.id}' is revoked or changed role",
                              revoked=(principal.id, principal.role))
    assert refusal is not None
    _deny(engine, policy, principal, action, resource, purpose, refusal)


def _count_reveal(conn: Connection, policy: Policy, principal: Principal, resource: str,
                  purpose: str | None) -> str | None:
    """Enforce the reveal rate limit; count this reveal. Returns a refusal reason or None."""
    rules = policy.reveal
    now_us = time.time_ns() // 1000
    since = now_us - rules.window_seconds * 1_000_000
    used = conn.execute(
        select(func.count()).select_from(T_REVEALS).where(
            T_REVEALS.c.principal_id == principal.id, T_REVEALS.c.at_us > since)
    ).scalar_one()
    if used >= rules.limit:
        return (f"reveal rate limit reached: {rules.limit} per {rules.window_seconds} s "
                f"for principal '{principal.id}'")
    conn.execute(insert(T_REVEALS).values(
        principal_id=principal.id, resource=resource[:512], purpose=purpose or "",
        at_us=now_us))
    return None


def _deny(engine: Engine, policy: Policy, principal: Principal, action: str, resource: str,
          purpose: str | None, reason: str) -> NoReturn:
    # A caller's free-text purpose is only ledgered where it is an approved reveal purpose
    # or the action is not a reveal (where the purpose is ledgered on success anyway).
    if action == "reveal" and purpose not in policy.reveal_purposes:
        purpose = None
    _ledger_own_tx(engine, EntryDraft(
        actor=principal.id, action=vocab.POLICY_DENIED, resource=resource, purpose=purpose,
        details={"op": action, "role": principal.role, "reason": reason}))
    raise PolicyDenied(f"denied: {principal.id} ({principal.role}) {action} on {resource}: "
                       f"{reason}")


def _ledger_own_tx(engine: Engine, draft: EntryDraft) -> None:
    with engine.begin() as conn:
        ledger_store.append(conn, [draft])
