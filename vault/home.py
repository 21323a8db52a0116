"""Where a vault lives: the home folder and the database URL.

``CIVICVAULT_HOME`` (default ``./.civicvault``) holds the embedded SQLite file,
the KEK file, the ledger signing key, the vault identity, the admin token, the
installed policy and saved checkpoints. ``CIVICVAULT_DB_URL`` points the
database elsewhere (PostgreSQL in production).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from vault.errors import KeyUnavailable, NotInitialised

HOME_ENV = "CIVICVAULT_HOME"
DB_URL_ENV = "CIVICVAULT_DB_URL"
TOKEN_ENV = "CIVICVAULT_TOKEN"  # noqa: S105 - the variable's name, not a secret


@dataclass(frozen=True)
class VaultHome:
    """Paths of one vault home. Pure: constructing one touches no file."""

    root: Path
    db_url_override: str | None = None

    @classmethod
    def from_env(cls) -> VaultHome:
        root = Path(os.environ.get(HOME_ENV) or "./.civicvault").expanduser().absolute()
        return cls(root=root, db_url_override=os.environ.get(DB_URL_ENV) or None)

    @property
    def db_path(self) -> Path:
        return self.root / "vault.db"

    @property
    def db_url(self) -> str:
        return self.db_url_override or f"sqlite:///{self.db_path}"

    @property
    def kek_path(self) -> Path:
        return self.root / "kek.json"

    @property
    def signing_key_path(self) -> Path:
        return self.root / "ledger-signing.key"

    @property
    def identity_path(self) -> Path:
        return self.root / "identity"

    @property
    def admin_token_path(self) -> Path:
        return self.root / "admin.token"

    @property
    def policy_path(self) -> Path:
        return self.root / "policy.toml"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    def require_initialised(self) -> None:
        if not self.identity_path.exists():
            raise NotInitialised(
                f"no vault at {self.root}: run 'civicvault init' (or set {HOME_ENV})"
            )

    def identity(self) -> str:
        """The vault's identity, used as the ledger checkpoint origin."""
        self.require_initialised()
        return self.identity_path.read_text(encoding="ascii").strip()


def write_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 atomically; refuse to overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.link(tmp, path)  # fails if path exists: never clobber a key
    os.unlink(tmp)


def read_secret_file(path: Path, *, what: str) -> bytes:
    """Read a secret file, refusing one that group or others can read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyUnavailable(f"{what} not found at {path}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyUnavailable(
            f"{what} at {path} is readable by group or others (mode {oct(st.st_mode & 0o777)}); "
            "chmod 600 it"
        )
    return path.read_bytes()
