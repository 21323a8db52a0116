"""The policy layer's errors, defined with the whole tree in ``ledger.errors`` (re-exported)."""

from __future__ import annotations

from ledger.errors import (
    AccessDenied,
    BadInput,
    BudgetExhausted,
    PolicyDenied,
    PolicyFileError,
    Unauthenticated,
)

__all__ = ["AccessDenied", "BadInput", "BudgetExhausted", "PolicyDenied", "PolicyFileError",
           "Unauthenticated"]
