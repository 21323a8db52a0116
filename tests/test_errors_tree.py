"""One error tree in one module (``ledger.errors``), each error with advice (issue 13)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from ledger import errors

ROOT = Path(__file__).resolve().parents[1]
TREE = [c for _, c in inspect.getmembers(errors, inspect.isclass)
        if issubclass(c, errors.CivicVaultError)]


def test_no_error_class_is_defined_outside_the_one_module() -> None:
    names = {c.__name__ for c in TREE}
    outside = []
    for package in ("flows", "vault", "ledger", "policies"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "ledger" / "errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if isinstance(node, ast.ClassDef) and any(
                        isinstance(b, ast.Name) and b.id in names for b in node.bases):
                    outside.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert outside == []


@pytest.mark.parametrize("cls", TREE, ids=lambda c: c.__name__)
def test_diagnostics_is_the_message_then_advice(cls: type[errors.CivicVaultError]) -> None:
    if cls is errors.EntryTooLarge:
        exc: errors.CivicVaultError = cls("note.x", 5000, 4096)
    elif cls is errors.UnknownAction:
        exc = cls("made.up")
    elif cls is errors.StateMismatch:
        exc = cls("principals", "alice", "role differs")
    else:
        exc = cls("something failed at entry 3")
    lines = exc.diagnostics().splitlines()
    assert lines[0] == str(exc)
    assert cls.exit_code in (1, 2)
    if issubclass(cls, errors.StorageFault) or cls is errors.CivicVaultError:
        assert len(lines) == 1  # the hint is in the one line; the root is never raised bare
    else:
        assert len(lines) == 2 and lines[1], f"{cls.__name__} gives no advice"


def test_old_import_paths_still_work() -> None:
    from policies.errors import BudgetExhausted, PolicyDenied, PolicyFileError, Unauthenticated
    from vault.crypto import CiphertextRejected
    from vault.dp.release import ReleaseFailed
    from vault.errors import (
        KeyUnavailable,
        NotInitialised,
        StateMismatch,
        StorageFull,
        VaultMismatch,
        storage_fault,
    )

    assert PolicyDenied is errors.PolicyDenied and BudgetExhausted is errors.BudgetExhausted
    assert PolicyFileError is errors.PolicyFileError and Unauthenticated is errors.Unauthenticated
    assert CiphertextRejected is errors.CiphertextRejected
    assert ReleaseFailed is errors.ReleaseFailed
    assert {KeyUnavailable, NotInitialised, StateMismatch, StorageFull, VaultMismatch} <= set(TREE)
    assert isinstance(storage_fault(OSError(28, "x")), errors.StorageFull)


def test_the_docstring_draws_every_error() -> None:
    doc = errors.__doc__ or ""
    missing = [c.__name__ for c in TREE if c.__name__ not in doc]
    assert missing == []
