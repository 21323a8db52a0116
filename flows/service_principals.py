"""The principals scheduled flows act as: ``svc-ingestor`` (role ``ingestor``) and
``svc-auditor`` (role ``compliance``), made by ``civicvault deploy``.

Scheduled work never runs as admin: the watch folder and on-demand ingests act as the
ingestor, the nightly audit as the auditor (only key rotation, which the policy grants
to admins alone, keeps the admin token). Each token lives in
``<home>/service-tokens/<name>.token`` (folder 0700, file 0600) and is passed to flows
as that *path*, never as a parameter value. A token that no longer works (revoked, or a
vault re-initialised) is replaced by a new principal (``svc-ingestor-2``, ...): names
are never reused.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine

from policies.errors import Unauthenticated
from vault.errors import BadInput
from vault.home import VaultHome, write_secret_file
from vault.service import Principal, Vault

SERVICE_DIR = "service-tokens"
INGESTOR = ("svc-ingestor", "ingestor")
AUDITOR = ("svc-auditor", "compliance")


def token_path(home: VaultHome, name: str) -> Path:
    return home.root / SERVICE_DIR / f"{name}.token"


def _working(engine: Engine, home: VaultHome, path: Path, role: str) -> bool:
    try:
        token = path.read_text(encoding="ascii").strip()
        return Vault(home, engine, None).acting_as(token).principal.role == role
    except (OSError, UnicodeDecodeError, BadInput, Unauthenticated):
        return False


def ensure_service_principal(engine: Engine, home: VaultHome, admin: Principal,
                             name: str, role: str) -> Path:
    """The token file of a working ``role`` principal named ``name`` (or ``name-N``)."""
    path = token_path(home, name)
    if path.exists() and _working(engine, home, path, role):
        return path
    vault = Vault(home, engine, admin)
    taken = {p.name for p in vault.principals_list()}
    fresh = next(n for n in [name, *(f"{name}-{i}" for i in range(2, 100))] if n not in taken)
    token = vault.principals_add(fresh, role)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    path.unlink(missing_ok=True)
    write_secret_file(path, token.encode("ascii"))
    return path
