"""Database engines and schema migrations (Alembic), same code on SQLite and PostgreSQL.

SQLite runs in WAL mode with ``synchronous=FULL`` (a committed transaction is
durable) and every write transaction starts with ``BEGIN IMMEDIATE``, so two
writers never both read the ledger head and fork the chain. Read-only work can
ask for a deferred transaction with ``conn.execution_options(readonly=True)``.

Storage faults (disk full, read-only database or home, a write lock not granted
within ``CIVICVAULT_LOCK_TIMEOUT`` seconds, default 60) leave the engine as
``vault.errors.StorageFault`` subclasses instead of the driver's error, so every
shell reports them as one line with a hint (exit 2).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import Connection, ExceptionContext

from policies.validate import parse_float
from vault.errors import BadInput, NotInitialised, storage_fault

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
LOCK_TIMEOUT_ENV = "CIVICVAULT_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 60.0


def lock_timeout() -> float | None:
    """Seconds to wait for another writer's lock: ``CIVICVAULT_LOCK_TIMEOUT`` or None (unset)."""
    text = os.environ.get(LOCK_TIMEOUT_ENV)
    if text is None or text == "":
        return None
    return parse_float(text, what=LOCK_TIMEOUT_ENV, minimum=0, maximum=86_400)


def _storage_faults(engine: Engine) -> None:
    @event.listens_for(engine, "handle_error")
    def _on_error(ctx: ExceptionContext) -> BaseException | None:
        return storage_fault(ctx.original_exception)


def is_sqlite(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "sqlite"


PAGE_SIZE = 8192


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the pragmas and transaction mode civicvault relies on."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        db_file = url.split("///", 1)[-1]
        if db_file and db_file != ":memory:":
            Path(db_file).parent.mkdir(parents=True, exist_ok=True)
        given = lock_timeout()
        timeout = DEFAULT_LOCK_TIMEOUT if given is None else given
        busy_ms = int(timeout * 1000)
        # cached_statements=0: a cached sqlite3 statement keeps its last bound values, and
        # each bulk insert (vault.bulk) binds a whole batch's blobs in a statement of its own
        # text, so the default cache of 128 held up to 128 batches (RSS grew with the file).
        engine = create_engine(
            url, connect_args={"timeout": timeout, "check_same_thread": False,
                               "cached_statements": 0}, **kwargs
        )
        _storage_faults(engine)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            # a new vault's pages (before WAL mode, which writes its header; an existing
            # vault keeps the size it was made with)
            cur.execute(f"PRAGMA page_size={PAGE_SIZE}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
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
        pg_timeout = lock_timeout()  # unset: PostgreSQL waits for locks as long as it takes
        if pg_timeout is not None and "connect_args" not in kwargs:
            ms = max(1, int(pg_timeout * 1000))  # 0 would mean "wait forever" to PostgreSQL
            kwargs["connect_args"] = {"options": f"-c lock_timeout={ms}"}
        engine = create_engine(url, pool_pre_ping=True, **kwargs)
        _storage_faults(engine)
        return engine
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
