"""Policy-level leaves of the error tree; see ``ledger.errors`` for the whole tree."""

from __future__ import annotations

from ledger.errors import AccessDenied, BadInput


class PolicyFileError(BadInput):
    """A policy file that does not validate; the message names the file and line."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")


class Unauthenticated(AccessDenied):
    """Unknown, revoked or malformed token."""


class PolicyDenied(AccessDenied):
    """The policy denies this principal this action on this resource."""


class BudgetExhausted(AccessDenied):
    """The privacy budget left does not cover the request."""
