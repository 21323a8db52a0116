"""From CLI context to an authenticated session: vault home, engine, principal.

SQLAlchemy, the policy models and the access layer are imported when a session is
opened, not when the CLI starts (``civicvault --help`` and argument errors stay fast).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from vault.errors import BadInput
from vault.home import VaultHome

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from vault.access import Principal


@dataclass
class Session:
    home: VaultHome
    engine: Engine
    principal: Principal

    @contextmanager
    def access(
        self, action: str, resource: str, *, purpose: str | None = None
    ) -> Iterator[Connection]:
        """Ask the policy, ledger the decision, and yield the operation's transaction."""
        from vault import access as _access

        with _access.access(
            self.engine, self.home, self.principal, action, resource, purpose=purpose
        ) as conn:
            yield conn


def open_home() -> tuple[VaultHome, Engine]:
    from vault.db import make_engine, require_schema

    home = VaultHome.from_env()
    home.require_initialised()
    engine = make_engine(home.db_url)
    require_schema(engine)
    return home, engine


def open_session(ctx: typer.Context) -> Session:
    """Authenticate the token from ``--token`` / ``CIVICVAULT_TOKEN`` / admin.token."""
    from vault import access as _access

    root: Any = ctx.find_root().obj or {}
    if root.get("token_empty"):
        raise BadInput("CIVICVAULT_TOKEN / --token is empty: give a principal's token, or "
                       "unset it to use the vault's admin.token")
    home, engine = open_home()
    principal = _access.authenticate(engine, home, root.get("token"))
    return Session(home=home, engine=engine, principal=principal)
