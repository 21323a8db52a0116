"""Roles, permissions, PII handling rules, DP budgets and segment rules: declarative
files and a small pure evaluator. Knows nothing of storage.

- ``vocab``      the vocabulary: operations, resource names, ledger actions, lookup entities
- ``model``      the validated :class:`Policy` (frozen values)
- ``evaluator``  the pure access decision
- ``load``       TOML policy files with line-precise errors
- ``validate``   the one strict parser of numbers and names callers type

Public names load their module on first use (``import policies`` stays light).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.lazy import lazy_names

if TYPE_CHECKING:  # the real names for type checkers; at run time they load lazily
    from policies import vocab
    from policies.errors import BudgetExhausted, PolicyDenied, PolicyFileError, Unauthenticated
    from policies.evaluator import Decision, decide
    from policies.load import default_policy, default_policy_text, load_policy, parse_policy
    from policies.model import ACTIONS, ColumnRule, Policy
    from policies.validate import fingerprint, parse_name, safe_name

__all__ = [
    "ACTIONS",
    "BudgetExhausted",
    "ColumnRule",
    "Decision",
    "Policy",
    "PolicyDenied",
    "PolicyFileError",
    "Unauthenticated",
    "decide",
    "default_policy",
    "default_policy_text",
    "fingerprint",
    "load_policy",
    "parse_name",
    "parse_policy",
    "safe_name",
    "vocab",
]

_WHERE: dict[str, str] = {
    "ACTIONS": "policies.model",
    "BudgetExhausted": "policies.errors",
    "ColumnRule": "policies.model",
    "Decision": "policies.evaluator",
    "Policy": "policies.model",
    "PolicyDenied": "policies.errors",
    "PolicyFileError": "policies.errors",
    "Unauthenticated": "policies.errors",
    "decide": "policies.evaluator",
    "default_policy": "policies.load",
    "default_policy_text": "policies.load",
    "fingerprint": "policies.validate",
    "load_policy": "policies.load",
    "parse_name": "policies.validate",
    "parse_policy": "policies.load",
    "safe_name": "policies.validate",
}

__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
