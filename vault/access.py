"""Authentication and authorisation of every public operation, each decision on the ledger.

INTERIM implementation (owner: policies/principals work): authenticates only the
admin token file and allows everything, ledgering ``policy.allowed``. Replace with
the principals table + policy evaluator; keep the signatures.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from ledger import store as ledger_store
from ledger.entry import EntryDraft
from policies.errors import Unauthenticated
from vault.home import VaultHome


@dataclass(frozen=True)
class Principal:
    id: str
    role: str


def authenticate(engine: Engine, home: VaultHome, token: str | None) -> Principal:
    if token is None:
        if not home.admin_token_path.exists():
            raise Unauthenticated("no token given and no admin.token in the vault home")
        token = home.admin_token_path.read_text(encoding="ascii").strip()
    expected = home.admin_token_path.read_text(encoding="ascii").strip()
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthenticated("unknown or revoked token")
    return Principal(id="admin", role="admin")


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
    with engine.begin() as conn:
        ledger_store.append(
            conn,
            [
                EntryDraft(
                    actor=principal.id,
                    action="policy.allowed",
                    resource=resource,
                    purpose=purpose,
                    details={"op": action, "role": principal.role},
                )
            ],
        )
        yield conn
