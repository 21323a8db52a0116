"""What every flow and task needs from the vault, and how their failures are worded.

Flows receive paths and ids only; they never receive a token or a database URL
(both are secrets and Prefect stores flow parameters), and from the CLI a path the
caller typed arrives as a reference to a file holding it (:func:`path_ref_for`, or for
a deployment :func:`kept_path_ref`: a file name may name a person). A flow opens the vault
home named by its ``home`` parameter (or ``CIVICVAULT_HOME``), takes the database
URL from ``CIVICVAULT_DB_URL`` and the principal's token from ``CIVICVAULT_TOKEN``
or the home's ``admin.token``, exactly as the CLI does.

Prefect keeps a failed run's exception (pickled into result storage, rendered in
logs). :func:`scrubbed` therefore turns every exception escaping a task into one
whose text carries the step name, ids and the exception *type* only. Errors of
civicvault's own tree already carry ids only and pass through unchanged.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from ledger.errors import (
    BadInput,
    CivicVaultError,
    FlowStepFailed,
    TransientStoreError,
    unreadable,
)
from vault.db import make_engine, require_schema
from vault.errors import StorageLocked
from vault.home import DB_URL_ENV, TOKEN_ENV, VaultHome, write_secret_file
from vault.service import Principal, Vault

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()


def vault_home(home: str | None) -> VaultHome:
    """The vault home named by a flow parameter (a path), else ``CIVICVAULT_HOME``."""
    if home:
        return VaultHome(root=Path(home).expanduser().absolute(),
                         db_url_override=os.environ.get(DB_URL_ENV) or None)
    return VaultHome.from_env()


def engine_for(home: VaultHome) -> Engine:
    """One engine per database per process (tasks of a run share its pool)."""
    url = home.db_url
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            home.require_initialised()
            engine = make_engine(url)
            require_schema(engine)
            _ENGINES[url] = engine
        return engine


def dispose_engines() -> None:
    with _LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


def vault_for(home: VaultHome, principal: Principal | None = None) -> Vault:
    """The vault service on this process's engine, acting as ``principal`` (tasks receive
    the principal the flow authenticated, never its token)."""
    return Vault(home, engine_for(home), principal)


def principal_for(home: VaultHome, token_file: str | None = None) -> Principal:
    """Authenticate the token in ``token_file`` (a path), else ``CIVICVAULT_TOKEN``, else the
    home's admin token: the token itself never is a flow parameter."""
    token = None
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            raise BadInput("the token file cannot be read") from None
    if not token and TOKEN_ENV in os.environ:
        token = os.environ[TOKEN_ENV].strip()
        if not token:  # set but empty is a mistake, never "use the admin token"
            raise BadInput(f"{TOKEN_ENV} is empty: give a principal's token or unset it")
    return vault_for(home).acting_as(token).principal


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientStoreError | OperationalError | StorageLocked)


@contextmanager
def scrubbed(step: str, **ids: object) -> Iterator[None]:
    """Re-raise any foreign exception as one that names ``step``, ``ids`` and its type only.

    ``CIVICVAULT_DEBUG=1`` lets the original through (for a safe environment only).
    """
    try:
        yield
    except CivicVaultError:
        raise
    except Exception as exc:
        if os.environ.get("CIVICVAULT_DEBUG") == "1":
            raise
        where = " ".join(f"{k}={v}" for k, v in ids.items())
        detail = f"{step} failed ({type(exc).__name__})" + (f" [{where}]" if where else "")
        if isinstance(exc, OperationalError):
            raise TransientStoreError(f"{detail}: transient database error") from None
        raise FlowStepFailed(detail) from None


# A path the caller typed travels to a flow as a reference, not as itself: Prefect stores
# flow parameters and shows them in its UI, and a file name may name a person
# (``canvass-jane-doe.csv``). The reference names a 0600 file in the vault home that
# holds the path: ``.flow-path-<hex>``, removed when the run is over, or for a
# deployment, which outlives the process that made it, ``flow-paths/<hex>``, kept.
PATH_REF = "path-file:"
KEPT_PATHS_DIR = "flow-paths"
_KEPT_NAME = re.compile(r"[0-9a-f]{16}")
_PATH_REF_NAME = re.compile(rf"\.flow-path-{_KEPT_NAME.pattern}|"
                            rf"{KEPT_PATHS_DIR}/{_KEPT_NAME.pattern}")


@contextmanager
def path_ref_for(home: VaultHome, path: Path | None) -> Iterator[str | None]:
    """``path`` as a flow parameter that does not show it (:func:`typed_path` reads it)."""
    if path is None:
        yield None
        return
    name = f".flow-path-{secrets.token_hex(8)}"
    write_secret_file(home.root / name, os.fsencode(path.expanduser().absolute()))
    try:
        yield PATH_REF + name
    finally:
        (home.root / name).unlink(missing_ok=True)


def existing_kept_path_ref(home: VaultHome, path: Path) -> str | None:
    """The kept reference (:func:`kept_path_ref`) that already holds ``path``, if any;
    reads only."""
    want = os.fsencode(path.expanduser().absolute())
    try:
        entries = sorted((home.root / KEPT_PATHS_DIR).iterdir())
    except OSError:  # no such folder (yet), or no vault home
        return None
    for entry in entries:
        if not _KEPT_NAME.fullmatch(entry.name):
            continue
        try:
            if entry.read_bytes() == want:
                return f"{PATH_REF}{KEPT_PATHS_DIR}/{entry.name}"
        except OSError:
            continue
    return None


def kept_path_ref(home: VaultHome, path: Path) -> str:
    """``path`` as a reference that outlives this process, for a deployment's parameters
    (:func:`typed_path` reads it): a 0600 file in ``<home>/flow-paths/`` (0700), the one
    already holding the path if there is one, so deploying the same folder again adds
    no file."""
    found = existing_kept_path_ref(home, path)
    if found is not None:
        return found
    folder = home.root / KEPT_PATHS_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    name = secrets.token_hex(8)
    write_secret_file(folder / name, os.fsencode(path.expanduser().absolute()))
    return f"{PATH_REF}{KEPT_PATHS_DIR}/{name}"


def typed_path(home: VaultHome, value: str) -> Path:
    """A flow's path parameter: a :func:`path_ref_for` or :func:`kept_path_ref`
    reference, or (deployments and Python callers) the path itself."""
    if not value.startswith(PATH_REF):
        return Path(value)
    name = value[len(PATH_REF):]
    if not _PATH_REF_NAME.fullmatch(name):
        raise BadInput("a path reference names a .flow-path- file or a flow-paths/ file "
                       "of the vault home")
    try:
        return Path(os.fsdecode((home.root / name).read_bytes()))
    except OSError as exc:
        raise BadInput(f"the path reference's file cannot be read ({unreadable(exc)})") \
            from None


@contextmanager
def token_file_for(home: VaultHome, token: str | None) -> Iterator[str | None]:
    """A principal token as a 0600 file path for a flow run, removed afterwards.

    Flows take a token *file* so the secret never becomes a Prefect parameter;
    ``None`` (no token given) lets the flow use the home's admin token.
    """
    if token is None:
        yield None
        return
    path = home.root / f".flow-token-{secrets.token_hex(8)}"
    write_secret_file(path, token.encode("ascii"))
    try:
        yield str(path)
    finally:
        path.unlink(missing_ok=True)

