"""Principals: who may act, holding which role, proven by a bearer token.

A token is ``cvt_`` + 256 random bits (URL-safe base64). It is shown once, when
the principal is added; the vault keeps only its SHA-256, so a stolen database
gives no usable token. Tokens are matched by that hash and the stored hash is
compared in constant time. Revoking a principal stamps ``revoked``; the row stays,
because ledger entries keep naming it, and its name can never be reused.

These functions work inside the caller's transaction; authorisation and the
ledger entry are the caller's job (``vault.access``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from policies.validate import parse_name
from vault import vocab
from vault.errors import BadInput

TOKEN_PREFIX = "cvt_"  # noqa: S105 - a prefix, not a secret
ROLE_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
TOKEN_RE = re.compile(r"cvt_[A-Za-z0-9_-]{43}")

_metadata = MetaData()
T_PRINCIPALS = Table(
    "principals",
    _metadata,
    Column("id", String(64), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created", String(40), nullable=False),
    Column("revoked", String(40), nullable=True),
)
T_REVEALS = Table(
    "principal_reveals",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("principal_id", String(64), ForeignKey("principals.id"), nullable=False),
    Column("resource", String(512), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("at_us", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class PrincipalRecord:
    name: str
    role: str
    created: str
    revoked: str | None

    @property
    def active(self) -> bool:
        return self.revoked is None

    def to_json(self) -> dict[str, str | None]:
        return {"name": self.name, "role": self.role, "created": self.created,
                "revoked": self.revoked}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def token_hash(token: str) -> str:
    """Hex SHA-256 of a token: the only form in which tokens are stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def is_well_formed(token: str) -> bool:
    return TOKEN_RE.fullmatch(token) is not None


def validate_name(name: str) -> str:
    """``name`` if it is a valid principal name (``policies.validate``), else BadInput."""
    return parse_name(name, "principal")


def _ledger(conn: Connection, actor: str | None, action: str, name: str,
            details: dict[str, str]) -> None:
    """The state change on the ledger, in the same transaction (``vault.state_verify``)."""
    from ledger import store as ledger_store
    from ledger.entry import EntryDraft

    ledger_store.append(conn, [EntryDraft(
        actor=actor or name, action=action, resource=vocab.principal(name),
        details={"name": name, **details})])


def add_principal(conn: Connection, name: str, role: str, *, actor: str | None = None) -> str:
    """Create principal ``name`` with ``role``; return its token (shown once, never stored).

    A ``principal.added`` entry (name, role, token hash) goes on the ledger in the same
    transaction: verification re-derives the principals table from these entries.
    """
    validate_name(name)
    if not ROLE_RE.fullmatch(role):
        raise BadInput("invalid role name")
    if conn.execute(select(T_PRINCIPALS.c.id).where(T_PRINCIPALS.c.id == name)).first():
        raise BadInput(f"principal '{name}' already exists (names are never reused)")
    token = new_token()
    digest = token_hash(token)
    try:
        conn.execute(insert(T_PRINCIPALS).values(
            id=name, role=role, token_hash=digest, created=_now(), revoked=None))
    except IntegrityError:  # a concurrent add of the same name (the tx is lost anyway)
        raise BadInput(f"principal '{name}' already exists (names are never reused)") from None
    _ledger(conn, actor, vocab.PRINCIPAL_ADDED, name, {"role": role, "token_hash": digest})
    return token


def get_principal(conn: Connection, name: str) -> PrincipalRecord | None:
    row = conn.execute(select(T_PRINCIPALS).where(T_PRINCIPALS.c.id == name)).first()
    if row is None:
        return None
    return PrincipalRecord(name=row.id, role=row.role, created=row.created, revoked=row.revoked)


def list_principals(conn: Connection) -> list[PrincipalRecord]:
    rows = conn.execute(select(T_PRINCIPALS).order_by(T_PRINCIPALS.c.id)).all()
    return [PrincipalRecord(name=r.id, role=r.role, created=r.created, revoked=r.revoked)
            for r in rows]


def revoke_principal(conn: Connection, name: str, *, actor: str | None = None) -> PrincipalRecord:
    """Revoke ``name``: its token stops working at once. Revoking twice is an error."""
    current = get_principal(conn, validate_name(name))
    if current is None:
        raise BadInput(f"no principal named '{name}'")
    if current.revoked is not None:
        raise BadInput(f"principal '{name}' is already revoked")
    stamp = _now()
    conn.execute(update(T_PRINCIPALS).where(T_PRINCIPALS.c.id == name).values(revoked=stamp))
    _ledger(conn, actor, vocab.PRINCIPAL_REVOKED, name, {})
    return PrincipalRecord(name=current.name, role=current.role, created=current.created,
                           revoked=stamp)


def find_by_token(conn: Connection, token: str) -> PrincipalRecord | None:
    """The principal holding ``token`` (revoked or not), or None for a malformed/unknown one."""
    if not is_well_formed(token):
        return None
    digest = token_hash(token)
    row = conn.execute(select(T_PRINCIPALS).where(T_PRINCIPALS.c.token_hash == digest)).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return PrincipalRecord(name=row.id, role=row.role, created=row.created, revoked=row.revoked)
