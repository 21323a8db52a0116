"""Vault-level leaves of the error tree; see ``ledger.errors`` for the whole tree."""

from __future__ import annotations

from ledger.errors import (
    AccessDenied,
    BadInput,
    CivicVaultError,
    LedgerTampered,
    VerificationFailed,
)

__all__ = [
    "AccessDenied",
    "BadInput",
    "CivicVaultError",
    "KeyUnavailable",
    "LedgerTampered",
    "NotInitialised",
    "VaultMismatch",
    "VerificationFailed",
]


class NotInitialised(BadInput):
    """No vault home or schema: run ``civicvault init`` first."""


class KeyUnavailable(CivicVaultError):
    """A key provider cannot produce the key asked for (missing, unsafe mode, unknown version)."""

    exit_code = 2


class VaultMismatch(VerificationFailed):
    """A batch's stored ciphertext no longer hashes to the ``data_hash`` on the ledger."""

    def __init__(self, message: str, *, batch: str | None = None) -> None:
        self.batch = batch
        super().__init__(message)
