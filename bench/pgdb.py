"""A throw-away PostgreSQL database per benchmark run (created, then dropped with FORCE)."""

from __future__ import annotations

import secrets

from sqlalchemy import create_engine, text

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
"""The local server every bench script's ``--pg`` defaults to (trust auth, as in CI)."""


def fresh_pg(admin_url: str, prefix: str = "cv_bench") -> str:
    """Create an empty database on ``admin_url``'s server; return its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    eng = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_pg(admin_url: str, url: str) -> None:
    """Drop the database ``url`` names (connections to it are closed by the server)."""
    eng = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    eng.dispose()
