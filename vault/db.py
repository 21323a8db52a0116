"""Database engines and schema migrations (Alembic), same code on SQLite and PostgreSQL.

SQLite runs in WAL mode with ``synchronous=FULL`` (a committed transaction is
durable) and every write transaction starts with ``BEGIN IMMEDIATE``, so two
writers never both read the ledger head and fork the chain. Read-only work can
ask for a deferred transaction with ``conn.execution_options(readonly=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import Connection

from vault.errors import BadInput, NotInitialised

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def is_sqlite(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the pragmas and transaction mode civicvault relies on."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        db_file = url.split("///", 1)[-1]
        if db_file and db_file != ":memory:":
            Path(db_file).parent.mkdir(parents=True, exist_ok=True)
        # cached_statements=0: a cached sqlite3 statement keeps its last bound values, and
        # each bulk insert (vault.bulk) binds a whole batch's blobs in a statement of its own
        # text, so the default cache of 128 held up to 128 batches (RSS grew with the file).
        engine = create_engine(
            url, connect_args={"timeout": 60, "check_same_thread": False,
                               "cached_statements": 0}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA cache_size=-65536")  # 64 MiB: bulk index inserts stay in memory
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.get_execution_options().get("readonly"):
                conn.exec_driver_sql("BEGIN DEFERRED")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql"):
        return create_engine(url, pool_pre_ping=True, **kwargs)
    raise BadInput("unsupported database URL scheme (use sqlite:/// or postgresql://)")


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    from alembic import command

    command.upgrade(_alembic_config(engine), "head")


def require_schema(engine: Engine) -> None:
    if "ledger_entries" not in inspect(engine).get_table_names():
        raise NotInitialised("the database has no civicvault schema: run 'civicvault init'")
