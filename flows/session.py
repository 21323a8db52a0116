"""From CLI context to an authenticated session: vault home, engine, principal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import typer
from sqlalchemy import Connection, Engine

from vault import access as _access
from vault.db import make_engine, require_schema
from vault.home import VaultHome


@dataclass
class Session:
    home: VaultHome
    engine: Engine
    principal: _access.Principal

    @contextmanager
    def access(
        self, action: str, resource: str, *, purpose: str | None = None
    ) -> Iterator[Connection]:
        """Ask the policy, ledger the decision, and yield the operation's transaction."""
        with _access.access(
            self.engine, self.home, self.principal, action, resource, purpose=purpose
        ) as conn:
            yield conn


def open_home() -> tuple[VaultHome, Engine]:
    home = VaultHome.from_env()
    home.require_initialised()
    engine = make_engine(home.db_url)
    require_schema(engine)
    return home, engine


def open_session(ctx: typer.Context) -> Session:
    """Authenticate the token from ``--token`` / ``CIVICVAULT_TOKEN`` / admin.token."""
    home, engine = open_home()
    root: Any = ctx.find_root().obj or {}
    principal = _access.authenticate(engine, home, root.get("token"))
    return Session(home=home, engine=engine, principal=principal)
