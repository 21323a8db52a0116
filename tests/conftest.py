"""Shared fixtures: real databases (a SQLite file in a tmp dir, a fresh PostgreSQL database).

PostgreSQL tests are marked ``postgres``; each test session creates its own
database on the server at ``CIVICVAULT_TEST_PG_URL`` (default: the machine's
``postgres@127.0.0.1:5432``) and drops it at the end, so parallel runs never
share state. Where no server is reachable they skip with the reason, except in
CI (``CI=true``), where an unreachable server is a failure.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

# The suite does not depend on the caller's environment: whatever CIVICVAULT_* or PREFECT_*
# settings (a vault home, a token, a database URL, a Prefect API or home) the shell that
# runs pytest has, the tests see none of them, only the PostgreSQL test server address.
# Prefect gets a private home for this run (not ~/.prefect), removed at exit.
for _name in [n for n in os.environ if n.startswith(("CIVICVAULT_", "PREFECT_"))]:
    if _name != "CIVICVAULT_TEST_PG_URL":
        del os.environ[_name]
_PREFECT_HOME = tempfile.mkdtemp(prefix="civicvault-tests-prefect-")
atexit.register(shutil.rmtree, _PREFECT_HOME, True)
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

from vault.db import make_engine, migrate  # noqa: E402 (after the environment is scrubbed)

PG_ADMIN_URL = os.environ.get(
    "CIVICVAULT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


MAX_WORKERS = 4  # beyond this the longest test files, not the cores, set the suite's time


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts): one worker per core this process may run on, at
    most ``MAX_WORKERS``. Each worker is its own process with its own Prefect home and its
    own PostgreSQL database, so workers share nothing but the machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files holding a ``slow`` or ``prefect`` test first, each file's tests in their own
    order: with one file per worker (``--dist loadfile``), a long file dealt out last would
    keep one worker busy while the others sit idle."""
    slow_files = {item.path for item in items
                  if item.get_closest_marker("slow") or item.get_closest_marker("prefect")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: order kept within


def _pg_reachable() -> str | None:
    try:
        eng = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with eng.connect() as conn:
            conn.execute(text("select 1"))
        eng.dispose()
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}"


def _drop_stale_log_handlers() -> None:
    """Prefect configures logging once per process, attaching a console handler that keeps
    the ``sys.stderr`` of that moment; under pytest that is a test's capture stream, closed
    when the test ends. A later test that logs a warning (OpenDP's "epsilon should be
    <= 5", say) would then print "--- Logging error ---" with a traceback into its own
    captured stderr. Handlers writing to a closed stream are dropped before each test."""
    import logging

    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for lg in loggers:
        for handler in list(lg.handlers):
            stream = getattr(handler, "stream", None)
            console = getattr(handler, "console", None)
            if stream is None and console is not None:
                stream = getattr(console, "file", None)
            if stream is not None and getattr(stream, "closed", False):
                lg.removeHandler(handler)


@pytest.fixture(autouse=True)
def _fresh_log_streams() -> Iterator[None]:
    _drop_stale_log_handlers()
    yield


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session; yields its URL."""
    reason = _pg_reachable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"cv_test_{secrets.token_hex(6)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database per test (created from the session's server)."""
    name = f"cv_t_{secrets.token_hex(6)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'vault.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes ``db_url`` runs on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'vault.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated engine on ``db_url`` (both backends)."""
    eng = make_engine(db_url)
    migrate(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; tests needing it skip where a fresh clone has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not present at {SHARED_DATA}")
    return SHARED_DATA
