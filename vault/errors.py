"""Vault-level leaves of the error tree; see ``ledger.errors`` for the whole tree."""

from __future__ import annotations

import errno

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
    "StorageFault",
    "StorageFull",
    "StorageLocked",
    "StorageReadOnly",
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


class StorageFault(CivicVaultError):
    """The database or the vault home cannot take a write right now (exit 2, one line + hint).

    Raised in place of the driver's error (see :func:`storage_fault`): by the engine's
    ``handle_error`` hook for database errors, by the CLI for file-system errors. The
    transaction that hit it was rolled back, so nothing was written partially."""

    exit_code = 2
    cause = "storage fault"
    hint = ""

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        text = f"{self.cause}: {detail}" if detail else self.cause
        super().__init__(f"{text} (hint: {self.hint})" if self.hint else text)


class StorageFull(StorageFault):
    """No space left for the database or the vault home (disk full, quota, size limit)."""

    cause = "storage full"
    hint = ("free space on that disk, or move the vault (CIVICVAULT_HOME / "
            "CIVICVAULT_DB_URL); nothing was committed, rerun the command afterwards")


class StorageReadOnly(StorageFault):
    """The database or the vault home is read-only (read-only mount, permissions, hot standby)."""

    cause = "storage read-only"
    hint = ("remount the vault home read-write or give this user write access to it "
            "(and its database); nothing was changed")


class StorageLocked(StorageFault):
    """Another writer holds the database's write lock longer than we wait for it."""

    cause = "storage locked"
    hint = ("another civicvault writer (ingest, erasure, key rotation) or another program "
            "holds the database; rerun when it has finished, or wait longer with "
            "CIVICVAULT_LOCK_TIMEOUT=SECONDS")


_SQLITE_FULL, _SQLITE_READONLY, _SQLITE_CANTOPEN = 13, 8, 14
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
_PG_FULL = "53100"  # disk_full
_PG_READONLY = "25006"  # read_only_sql_transaction (a hot standby, default_transaction_read_only)
_PG_LOCKED = "55P03"  # lock_not_available (lock_timeout expired)
_OS_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_OS_READONLY = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def storage_fault(exc: BaseException) -> StorageFault | None:
    """The :class:`StorageFault` that ``exc`` (a DBAPI or OS error) stands for, if any.

    Classified from error codes (SQLite result codes, PostgreSQL SQLSTATE, errno);
    SQLite's messages only as a fallback. Never copies the original message, which
    may quote SQL parameters."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # the DBAPI error behind SQLAlchemy's
        seen.add(id(exc))
        fault = _classify(exc)
        if fault is not None:
            return fault
        nxt = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
        if not isinstance(nxt, BaseException):
            return None
        exc = nxt
    return None


def _classify(exc: BaseException) -> StorageFault | None:
    if isinstance(exc, OSError) and exc.errno is not None and type(exc).__module__ == "builtins":
        if exc.errno in _OS_FULL:
            return StorageFull("no space left on the device")
        if exc.errno == errno.EROFS:
            return StorageReadOnly("a vault file is on a read-only file system")
        if exc.errno in _OS_READONLY:
            return StorageReadOnly("permission denied on a vault file")
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        primary = code & 0xFF
        if primary == _SQLITE_FULL:
            return StorageFull("the SQLite database or its disk is full")
        if primary == _SQLITE_READONLY:
            return StorageReadOnly("the SQLite database cannot be written")
        if primary == _SQLITE_CANTOPEN:
            return StorageReadOnly("the SQLite database (or its -wal/-shm file) cannot be "
                                   "opened for writing")
        if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return StorageLocked("the SQLite database is locked by another writer")
        return None
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        if sqlstate == _PG_FULL:
            return StorageFull("the PostgreSQL server has no disk space left")
        if sqlstate == _PG_READONLY:
            return StorageReadOnly("the PostgreSQL server refuses writes (read-only)")
        if sqlstate == _PG_LOCKED:
            return StorageLocked("a PostgreSQL lock was not granted in time")
        return None
    return None


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
