"""From CLI context to an opened vault service: vault home, engine, principal.

SQLAlchemy, the policy models and the service are imported when a session is
opened, not when the CLI starts (``civicvault --help`` and argument errors stay fast).
Commands call the session's ``vault`` (``vault.service.Vault``): it authorises, works
and ledgers; the commands only parse and print.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from vault.errors import BadInput
from vault.home import VaultHome

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from vault.service import Principal, Vault


@dataclass
class Session:
    vault: Vault

    @property
    def home(self) -> VaultHome:
        return self.vault.home

    @property
    def engine(self) -> Engine:
        return self.vault.engine

    @property
    def principal(self) -> Principal:
        return self.vault.principal


def open_public() -> Vault:
    """The vault for public material (checkpoint, verifier key, witnesses): no token."""
    from vault.service import Vault

    return Vault.open(VaultHome.from_env(), anonymous=True)


def open_home() -> tuple[VaultHome, Engine]:
    vault = open_public()
    return vault.home, vault.engine


def open_session(ctx: typer.Context) -> Session:
    """Authenticate the token from ``--token`` / ``CIVICVAULT_TOKEN`` / admin.token."""
    from vault.service import Vault

    root: Any = ctx.find_root().obj or {}
    if root.get("token_empty"):
        raise BadInput("CIVICVAULT_TOKEN / --token is empty: give a principal's token, or "
                       "unset it to use the vault's admin.token")
    return Session(vault=Vault.open(VaultHome.from_env(), token=root.get("token")))
