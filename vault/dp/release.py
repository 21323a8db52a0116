"""Run a differentially private release: check, charge, draw noise, ledger, in that order.

``run_release`` is the only way aggregates leave the vault::

    validate(request, policy)            no data, no budget     -> BadInput / PolicyDenied
    with access(..., "release", ...):    one transaction (policy.allowed on the ledger)
        budget.spend(...)                row lock / BEGIN IMMEDIATE -> BudgetExhausted
        source.scan(...) + plan.run(...)  noise is drawn only now
        ledger "release.dp"              query shape, epsilon charged, data_hash of the output
    commit                               the output is returned only after the commit

Budget, ledger entry and output commit together or not at all: a request that
fails anywhere releases nothing and leaves the budget as it was, and two racing
requests can never both spend the same epsilon. A rejected request (bad input,
policy, budget) is ledgered as ``policy.denied`` or ``budget.denied`` in its own
transaction before the error propagates.

The released output is the canonical JSON (RFC 8785) of ``ReleaseResult.document()``;
the ledger's ``data_hash`` is its SHA-256, so anyone holding an exported result
can check it against the ledger.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import polars as pl
import rfc8785
from sqlalchemy import Connection, Engine

from ledger import store as ledger_store
from ledger.entry import EntryDraft
from ledger.errors import BadInput, CivicVaultError
from policies.errors import BudgetExhausted, PolicyDenied
from vault import budget
from vault.access import Principal, access
from vault.dp.plan import Accuracy, Plan, build_plan, prepared_schema
from vault.dp.request import CheckedRequest, ReleasePolicy, ReleaseRequest, validate
from vault.dp.source import DataSource, VaultSource, private_workdir
from vault.home import VaultHome

RELEASE_ACTION = "release.dp"


def resource_of(dataset: str) -> str:
    return f"dataset/{dataset}"


def load_policy(home: VaultHome) -> ReleasePolicy:
    """The vault's installed policy (the one ``vault.access`` decides with)."""
    from vault.access import installed_policy

    policy: ReleasePolicy = installed_policy(home)
    return policy


@dataclass(frozen=True)
class ReleaseResult:
    dataset: str
    epsilon: Fraction
    delta: float | None
    request: ReleaseRequest
    rows: list[dict[str, Any]]
    accuracy: Accuracy
    budget: budget.Budget | None = None
    ledger_seq: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "aggregate"

    def document(self) -> dict[str, Any]:
        """The released output (what ``data_hash`` covers): aggregates and their accuracy."""
        doc: dict[str, Any] = {
            "dataset": self.dataset,
            "epsilon": float(self.epsilon),
            "accuracy": self.accuracy.to_json(),
        }
        if self.kind == "aggregate":
            doc["by"] = list(self.request.by)
            doc["measures"] = [m.spec for m in self.request.measures]
            doc["rows"] = self.rows
        if self.delta is not None:
            doc["delta"] = self.delta
        if self.accuracy.threshold is not None:
            doc["suppressed"] = {
                "rule": "groups whose noisy count is below the threshold are withheld "
                "(OpenDP DP key release); which groups exist is itself private",
                "threshold": self.accuracy.threshold,
                "groups_released": len(self.rows),
            }
        doc.update(self.extra)
        return doc

    def output_bytes(self) -> bytes:
        return canonical(self.document())

    @property
    def data_hash(self) -> str:
        return hashlib.sha256(self.output_bytes()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """``document()`` plus what is not part of the released bytes: budget left, ledger seq."""
        doc = self.document()
        doc["data_hash"] = self.data_hash
        if self.budget is not None:
            doc["budget"] = {
                "epsilon_total": float(self.budget.epsilon_total),
                "epsilon_spent": float(self.budget.epsilon_spent),
                "epsilon_remaining": float(self.budget.epsilon_remaining),
            }
        if self.ledger_seq is not None:
            doc["ledger_seq"] = self.ledger_seq
        return doc


def canonical(value: Any) -> bytes:
    return rfc8785.dumps(value)


def _ledger(engine: Engine, draft: EntryDraft) -> None:
    with engine.begin() as conn:
        ledger_store.append(conn, [draft])


def _deny(
    engine: Engine,
    principal: Principal,
    dataset: str,
    op: str,
    exc: CivicVaultError,
    details: Mapping[str, Any],
) -> None:
    action = "budget.denied" if isinstance(exc, BudgetExhausted) else "policy.denied"
    _ledger(
        engine,
        EntryDraft(
            actor=principal.id,
            action=action,
            resource=resource_of(dataset),
            details={"op": op, "error": type(exc).__name__, "reason": str(exc)[:300], **details},
        ),
    )


_REJECTIONS = (BadInput, PolicyDenied, BudgetExhausted)


@contextmanager
def ledger_denials(
    engine: Engine, principal: Principal, dataset: str, op: str, details: Mapping[str, Any]
) -> Iterator[None]:
    """Ledger any rejection raised inside (bad input, policy, budget) in its own tx, re-raise.

    Wrap only code of this module: ``access`` ledgers its own denials.
    """
    try:
        yield
    except _REJECTIONS as exc:
        _deny(engine, principal, dataset, op, exc, details)
        raise


@contextmanager
def guarded_access(
    engine: Engine,
    home: VaultHome,
    principal: Principal,
    op: str,
    dataset: str,
    details: Mapping[str, Any],
    *,
    purpose: str | None = None,
) -> Iterator[Connection]:
    """``access`` whose body's rejections are ledgered after the rollback (not access's own)."""
    entered = False
    try:
        with access(engine, home, principal, op, resource_of(dataset), purpose=purpose) as conn:
            entered = True
            yield conn
    except _REJECTIONS as exc:
        if entered:
            _deny(engine, principal, dataset, op, exc, details)
        raise


def _checked(request: ReleaseRequest, policy: ReleasePolicy) -> CheckedRequest:
    return validate(request, policy)


def _details(request: ReleaseRequest) -> dict[str, Any]:
    d: dict[str, Any] = {**request.shape(), "epsilon": budget.format_epsilon(request.epsilon)}
    if request.delta is not None:
        d["delta"] = repr(request.delta)
    return d


def preview_release(
    engine: Engine,
    home: VaultHome,
    principal: Principal,
    request: ReleaseRequest,
    *,
    source: DataSource | None = None,
    policy: ReleasePolicy | None = None,
) -> Accuracy:
    """The accuracy of exactly this query: no data read, no budget spent (access is ledgered)."""
    policy = policy if policy is not None else load_policy(home)
    src = source if source is not None else VaultSource(home)
    details = {**_details(request), "preview": True}
    with ledger_denials(engine, principal, request.dataset, "release", details):
        checked = _checked(request, policy)
    with guarded_access(
        engine, home, principal, "release", request.dataset, details, purpose="preview"
    ) as conn:
        bound = src.row_bound(conn, request.dataset)
    with private_workdir() as tmp:
        return build_plan(checked, prepared_schema(checked), bound, tmp).accuracy


def rows_of(plan: Plan, out: pl.DataFrame) -> list[dict[str, Any]]:
    """Post-process OpenDP's frame into the released rows (counts >= 0, means clipped)."""
    checked = plan.checked
    by = list(checked.request.by)
    if by:
        out = out.sort(by, nulls_last=True)
    rows: list[dict[str, Any]] = []
    for rec in out.iter_rows(named=True):
        row: dict[str, Any] = {c: rec[c] for c in by}
        count = max(0, int(rec["__count"] or 0)) if plan.with_len else None
        for m in checked.request.measures:
            if m.kind == "count":
                row["count"] = count
                continue
            assert m.column is not None
            raw = rec[f"__sum_{m.column}"]
            total: float | int = 0 if raw is None else raw
            if m.kind == "sum":
                row[m.label] = total
            else:
                b = checked.bounds[m.column]
                mean = float(total) / max(1, count or 0)
                row[m.label] = min(max(mean, b.lower), b.upper)
        rows.append(row)
    return rows


def run_release(
    engine: Engine,
    home: VaultHome,
    principal: Principal,
    request: ReleaseRequest,
    *,
    source: DataSource | None = None,
    policy: ReleasePolicy | None = None,
) -> ReleaseResult:
    """Charge ``request.epsilon`` to ``principal`` and release the noisy aggregates.

    Raises BadInput (exit 2), PolicyDenied or BudgetExhausted (exit 1); each is
    ledgered and nothing is released or charged.
    """
    policy = policy if policy is not None else load_policy(home)
    src = source if source is not None else VaultSource(home)
    dataset = request.dataset
    details = _details(request)
    with ledger_denials(engine, principal, dataset, "release", details):
        checked = _checked(request, policy)
    with (
        private_workdir() as tmp,
        guarded_access(engine, home, principal, "release", dataset, details) as conn,
    ):
        bound = src.row_bound(conn, dataset)  # unknown dataset: BadInput, nothing charged
        charge = charge_budget(
            conn, principal, dataset, request.epsilon, policy
        )  # before any noise
        plan = build_plan(checked, prepared_schema(checked), bound, tmp)
        with src.scan(conn, dataset, list(checked.columns)) as lf:
            out = plan.run(lf)
        result = ReleaseResult(
            dataset=dataset,
            epsilon=request.epsilon,
            delta=request.delta,
            request=request,
            rows=rows_of(plan, out),
            accuracy=plan.accuracy,
            budget=charge.budget,
        )
        seq = record_release(conn, principal, result, charge, details)
    return replace(result, ledger_seq=seq)


def charge_budget(
    conn: Connection, principal: Principal, dataset: str, epsilon: Fraction, policy: ReleasePolicy
) -> budget.Charge:
    return budget.spend(
        conn,
        principal.id,
        dataset,
        epsilon,
        default_total=policy.budget_default(dataset),
        dataset_cap=policy.dataset_cap(dataset),
    )


def record_release(
    conn: Connection,
    principal: Principal,
    result: ReleaseResult,
    charge: budget.Charge,
    details: Mapping[str, Any],
) -> int | None:
    entries = ledger_store.append(
        conn,
        [
            EntryDraft(
                actor=principal.id,
                action=RELEASE_ACTION,
                resource=resource_of(result.dataset),
                data_hash=result.data_hash,
                details={
                    **details,
                    "analyst": charge.budget.analyst,
                    "dataset": charge.budget.dataset,
                    "epsilon_total": budget.format_epsilon(charge.budget.epsilon_total),
                    "epsilon_charged": budget.format_epsilon(charge.epsilon),
                    "epsilon_spent": budget.format_epsilon(charge.budget.epsilon_spent),
                    "groups": len(result.rows),
                },
            )
        ],
    )
    seq = getattr(entries[0], "seq", None) if entries else None
    return int(seq) if seq is not None else None
