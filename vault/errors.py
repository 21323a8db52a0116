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
    "StateMismatch",
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


class StateMismatch(VerificationFailed):
    """A vault table row differs from what the ledger vouches for (``vault.state_verify``).

    ``table`` and ``row`` name the first differing row (ids only, never values);
    ``seq`` is the ledger entry that vouched for it last, when there is one.
    """

    def __init__(self, table: str, row: str, message: str, *, seq: int | None = None) -> None:
        self.table = table
        self.row = row
        self.detail = message
        self.seq = seq
        vouched = f" (last vouched for by ledger entry {seq})" if seq is not None else ""
        super().__init__(f"vault state differs from the ledger at {table} {row}: "
                         f"{message}{vouched}")
