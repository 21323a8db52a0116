"""The vault's errors (defined with the whole tree in ``ledger.errors``) and
:func:`storage_fault`, which maps a driver's or the OS's error to a :class:`StorageFault`."""

from __future__ import annotations

import errno

from ledger.errors import (
    AccessDenied,
    BadInput,
    CiphertextRejected,
    CivicVaultError,
    KeyUnavailable,
    LedgerTampered,
    NotInitialised,
    ReleaseFailed,
    StateMismatch,
    StorageFault,
    StorageFull,
    StorageLocked,
    StorageReadOnly,
    TempFolderFull,
    TempFolderUnwritable,
    UnknownAction,
    VaultMismatch,
    VerificationFailed,
)

__all__ = [
    "AccessDenied",
    "BadInput",
    "CiphertextRejected",
    "CivicVaultError",
    "KeyUnavailable",
    "LedgerTampered",
    "NotInitialised",
    "ReleaseFailed",
    "StateMismatch",
    "StorageFault",
    "StorageFull",
    "StorageLocked",
    "StorageReadOnly",
    "TempFolderFull",
    "TempFolderUnwritable",
    "UnknownAction",
    "VaultMismatch",
    "VerificationFailed",
    "storage_fault",
]

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
