"""Run a differentially private release: check, charge and commit, then compute, ledger.

``run_release`` is the only way aggregates leave the vault::

    validate(request, policy)            no data, no budget     -> BadInput / PolicyDenied
    build_plan(...)                      no data: OpenDP measurement and accuracy (policy bounds)
    with access(..., "release", ...):    transaction 1 (policy.allowed on the ledger)
        source.check(...)                unknown dataset -> BadInput, nothing charged
        budget.spend(...)                row locks / BEGIN IMMEDIATE -> BudgetExhausted
        ledger "release.charge"          analyst, dataset, epsilon_charged, delta_charged
    COMMIT                               the charge and the access are durable now
    source.scan(...) + plan.run(...)     decryption and noise happen only after the commit
    ledger "release.dp"                  transaction 2: query shape, data_hash of the output
    (any failure after the commit)       ledger "release.failed" (error class only); the
                                         charge is kept; the caller gets ReleaseFailed

So success or failure after the charge is never free: whatever happens, the
budget stays spent and the ledger says the data was accessed. Two racing requests
can never both spend the same budget. A rejected request (bad input, policy,
budget) is ledgered as ``policy.denied`` or ``budget.denied`` in its own
transaction before the error propagates; those rejections depend on the request,
the policy and the budget only, never on the data. No error text carries a
count or a value derived from the data.

The released output is the canonical JSON (RFC 8785) of ``ReleaseResult.document()``;
the ledger's ``data_hash`` is its SHA-256, so anyone holding an exported result
can check it against the ledger.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, TypeVar

import polars as pl
import rfc8785
from sqlalchemy import Connection, Engine

from ledger import store as ledger_store
from ledger.entry import EntryDraft
from ledger.errors import BadInput, CivicVaultError
from ledger.errors import ReleaseFailed as ReleaseFailed  # its old home
from policies.errors import BudgetExhausted, PolicyDenied
from vault import budget, vocab
from vault.access import Principal, access
from vault.dp.plan import Accuracy, Plan, Unit, build_plan, prepared_schema
from vault.dp.request import (
    MEASURE_KINDS,
    CheckedRequest,
    ReleasePolicy,
    ReleaseRequest,
    validate,
)
from vault.dp.source import BatchSource, DataSource, VaultSource, private_workdir
from vault.dp.stream import read_ahead, stream_plan
from vault.home import VaultHome
from vault.tables import dataset_resource

T = TypeVar("T")
RELEASE_ACTION = vocab.RELEASE_DP  # kept names: the vocabulary is vault.vocab
CHARGE_ACTION = vocab.RELEASE_CHARGE
FAILED_ACTION = vocab.RELEASE_FAILED


def resource_of(dataset: str) -> str:
    return vocab.dataset(dataset)  # never a free-form value on the ledger


def _unheld_named(conn: Connection, dataset: str, reason: str) -> tuple[str, str]:
    """The resource of a refusal on ``dataset`` and its ``reason`` with the name quoted in
    it: both name a dataset the vault does not hold by its fingerprint (what a caller
    typed never reaches the ledger)."""
    resource = dataset_resource(conn, dataset)
    shown = resource.partition(vocab.SEP)[2]
    if shown != dataset:
        reason = reason.replace(f"'{dataset}'", f"'{shown}'")
    return resource, reason


def load_policy(home: VaultHome) -> ReleasePolicy:
    """The vault's installed policy (the one ``vault.access`` decides with)."""
    from vault.access import installed_policy

    policy: ReleasePolicy = installed_policy(home)
    return policy


def peak_rss_kib() -> int:
    """This process's peak resident memory so far, in KiB: ``VmHWM`` (Linux: the peak of
    this program's own memory, from its exec on), else ``ru_maxrss`` (which on Linux
    also counts the parent's memory at the fork that started this process)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def peak_rss_mib() -> int:
    """:func:`peak_rss_kib` in MiB, rounded up to a multiple of 64: a coarse figure (with
    the streaming release it does not follow the data's size anyway)."""
    return -(-peak_rss_kib() // (64 * 1024)) * 64


@dataclass(frozen=True)
class Resources:
    """How a release ran (not part of the released bytes): streamed batch by batch or
    materialised, and the process's peak RSS when it was done."""

    streamed: bool
    peak_rss_mib: int

    def to_json(self) -> dict[str, Any]:
        return {"streamed": self.streamed, "process_peak_rss_mib": self.peak_rss_mib}


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
    resources: Resources | None = None

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
                "delta_total": float(self.budget.delta_total),
                "delta_spent": float(self.budget.delta_spent),
                "delta_remaining": float(self.budget.delta_remaining),
            }
        if self.ledger_seq is not None:
            doc["ledger_seq"] = self.ledger_seq
        if self.resources is not None:
            doc["resources"] = self.resources.to_json()
        return doc


def canonical(value: Any) -> bytes:
    return rfc8785.dumps(value)


def _deny(
    engine: Engine,
    principal: Principal,
    dataset: str,
    op: str,
    exc: CivicVaultError,
    details: Mapping[str, Any],
) -> None:
    action = vocab.BUDGET_DENIED if isinstance(exc, BudgetExhausted) else vocab.POLICY_DENIED
    with engine.begin() as conn:
        resource, reason = _unheld_named(conn, dataset, str(exc))
        ledger_store.append(conn, [EntryDraft(
            actor=principal.id,
            action=action,
            resource=resource,
            details={"op": op, "error": type(exc).__name__, "reason": reason[:300],
                     **details},  # made by ledger_shape: no caller text, bounded
        )])


def known_columns(policy: ReleasePolicy, dataset: str) -> frozenset[str]:
    """The columns the policy names for ``dataset``: the identifiers a ledger may show."""
    try:
        return frozenset(policy.columns_for(dataset))
    except KeyError:
        return frozenset()


def ledger_shape(details: Mapping[str, Any], known: Collection[str]) -> dict[str, Any]:
    """A request's shape for the ledger: column names the policy knows (``known``) as they
    are, any other name as its fingerprint, long lists as one fingerprint
    (``vault.vocab.listed``). Every ``details`` given to the denial helpers below is
    made by it."""
    out = dict(details)
    for key in ("by", "features"):
        if isinstance(out.get(key), list):
            out[key] = vocab.listed(out[key], known)
    if isinstance(out.get("measures"), list):
        ms: list[object] = out["measures"]
        specs = [_measure_shown(m, known) for m in ms]
        out["measures"] = vocab.listed(specs, specs)
    return out


def _measure_shown(spec: object, known: Collection[str]) -> str:
    if not isinstance(spec, str) or ":" not in spec:
        return vocab.shown(spec, _MEASURE_KINDS)
    kind, _, column = spec.partition(":")
    return f"{vocab.shown(kind, _MEASURE_KINDS)}:{vocab.shown(column, known)}"


_MEASURE_KINDS = MEASURE_KINDS


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
    with engine.connect().execution_options(readonly=True) as read, read.begin():
        resource = dataset_resource(read, dataset)  # a refusal names no unheld dataset
    try:
        with access(engine, home, principal, op, resource, purpose=purpose) as conn:
            entered = True
            yield conn
    except _REJECTIONS as exc:
        if entered:
            _deny(engine, principal, dataset, op, exc, details)
        raise


def _checked(request: ReleaseRequest, policy: ReleasePolicy) -> CheckedRequest:
    return validate(request, policy)


def _details(request: ReleaseRequest, policy: ReleasePolicy) -> dict[str, Any]:
    d: dict[str, Any] = {**ledger_shape(request.shape(), known_columns(policy, request.dataset)),
                         "epsilon": budget.format_epsilon(request.epsilon)}
    if request.delta is not None:
        d["delta"] = repr(request.delta)
    return d


def unit_of(policy: ReleasePolicy, dataset: str, *, per_person: bool = True) -> Unit:
    """The public privacy-unit facts of ``dataset`` (policy), for plans and accuracy."""
    declared = policy.privacy_unit(dataset)
    return Unit(
        rows_per_person=int(declared.rows_per_person),
        max_people=int(declared.max_people),
        identity="person" if per_person else "row",
    )


def with_identity(plan: Plan, per_person: bool) -> Plan:
    """The plan whose accuracy states the unit the data really has (no person ids: a row)."""
    if per_person:
        return plan
    unit = replace(plan.accuracy.unit, identity="row")
    return replace(plan, accuracy=replace(plan.accuracy, unit=unit))


def preview_release(
    engine: Engine,
    home: VaultHome,
    principal: Principal,
    request: ReleaseRequest,
    *,
    source: DataSource | None = None,
    policy: ReleasePolicy | None = None,
) -> Accuracy:
    """The accuracy of exactly this query: no data read, no budget spent (access is ledgered).

    Computed from the request and the policy's public bounds only: it is the same
    whatever the dataset holds (1024 rows or 1025).
    """
    policy = policy if policy is not None else load_policy(home)
    src = source if source is not None else VaultSource(home)
    details = {**_details(request, policy), "preview": True}
    with ledger_denials(engine, principal, request.dataset, "release", details):
        checked = _checked(request, policy)
    with guarded_access(
        engine, home, principal, "release", request.dataset, details, purpose="preview"
    ) as conn:
        per_person = src.check(conn, request.dataset)
    with (
        private_workdir() as tmp,
        ledger_denials(engine, principal, request.dataset, "release", details),
    ):
        plan = build_plan(checked, prepared_schema(checked), unit_of(policy, request.dataset), tmp)
    return with_identity(plan, per_person).accuracy


def limits_for(policy: ReleasePolicy, dataset: str) -> budget.Limits:
    eps_cap, delta_cap = policy.analyst_caps()
    return budget.Limits(
        epsilon_default=policy.budget_default(dataset),
        epsilon_dataset_cap=policy.dataset_cap(dataset),
        delta_default=policy.delta_default(dataset),
        delta_dataset_cap=policy.delta_cap(dataset),
        epsilon_analyst_cap=eps_cap,
        delta_analyst_cap=delta_cap,
    )


@dataclass(frozen=True)
class Charged:
    """A committed charge: what was spent, its ledger entry, whether rows carry person ids."""

    charge: budget.Charge
    seq: int
    per_person: bool


def charge_and_commit(
    engine: Engine,
    home: VaultHome,
    principal: Principal,
    op: str,
    dataset: str,
    epsilon: Fraction,
    delta: float | None,
    policy: ReleasePolicy,
    src: DataSource,
    details: Mapping[str, Any],
    *,
    purpose: str | None = None,
) -> Charged:
    """Authorise, check the dataset exists, spend (epsilon, delta) and ledger the charge,
    in one transaction that is committed when this returns (before any data is read)."""
    with guarded_access(engine, home, principal, op, dataset, details,
                        purpose=purpose) as conn:
        per_person = src.check(conn, dataset)  # unknown dataset: BadInput, nothing charged
        charge = charge_budget(conn, principal, dataset, epsilon, policy,
                               delta=budget.delta_fraction(delta))
        [entry] = ledger_store.append(
            conn,
            [
                EntryDraft(
                    actor=principal.id,
                    action=CHARGE_ACTION,
                    resource=resource_of(dataset),
                    purpose=purpose,
                    details={**details, "op": op, **charge.ledger_details()},
                )
            ],
        )
    return Charged(charge, int(entry.seq), per_person)


def ledger_failure(
    engine: Engine,
    principal: Principal,
    dataset: str,
    op: str,
    charged: Charged,
    exc: BaseException,
) -> int:
    """Ledger a failure after the charge (error class only: its text may hold data)."""
    with engine.begin() as conn:
        [entry] = ledger_store.append(
            conn,
            [
                EntryDraft(
                    actor=principal.id,
                    action=FAILED_ACTION,
                    resource=resource_of(dataset),
                    details={
                        "op": op,
                        "charge_seq": charged.seq,
                        "error": type(exc).__name__,
                        "charge_kept": True,
                    },
                )
            ],
        )
    return int(entry.seq)


def after_charge(
    engine: Engine,
    principal: Principal,
    dataset: str,
    op: str,
    charged: Charged,
    work: Callable[[], T],
) -> T:
    """Run ``work`` (decrypt, noise, ledger the output) after the charge was committed.

    Anything it raises is ledgered as ``release.failed`` and the charge is kept.
    BadInput (a column's *type*, never a value) is re-raised as is; anything else
    becomes ``ReleaseFailed``, raised outside the handler so that not even its
    ``__context__`` carries the cause (whose text may hold data).
    """
    failed_seq: int | None = None
    try:
        return work()
    except BadInput as exc:
        ledger_failure(engine, principal, dataset, op, charged, exc)
        raise
    except Exception as exc:
        failed_seq = ledger_failure(engine, principal, dataset, op, charged, exc)
    except BaseException as exc:  # interrupted: still on the ledger
        ledger_failure(engine, principal, dataset, op, charged, exc)
        raise
    raise ReleaseFailed(
        f"the release failed after its budget was charged: the charge is kept "
        f"(ledger entries {charged.seq} and {failed_seq}); nothing was released"
    )


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
            kind = m.definition  # vault.dp.measures: the kind's value from the aggregates
            raw = rec[f"__sum_{m.column}"] if kind.needs_sum else None
            total: float | int = 0 if raw is None else raw
            bounds = checked.bounds.get(m.column) if m.column is not None else None
            row[m.label] = kind.value(count, total, bounds)
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
    purpose: str | None = None,
) -> ReleaseResult:
    """Charge ``request``'s (epsilon, delta) to ``principal`` and release the noisy aggregates
    (``purpose``, a short label, goes on the access, charge and release ledger entries).

    Raises BadInput (exit 2), PolicyDenied or BudgetExhausted (exit 1) before the
    charge; each is ledgered and nothing is charged. After the charge is committed,
    a failure is ledgered as ``release.failed``, the charge is kept and
    ``ReleaseFailed`` (or the BadInput) is raised.
    """
    policy = policy if policy is not None else load_policy(home)
    src = source if source is not None else VaultSource(home)
    dataset = request.dataset
    details = _details(request, policy)
    with private_workdir() as tmp:
        with ledger_denials(engine, principal, dataset, "release", details):
            checked = _checked(request, policy)
            plan = build_plan(checked, prepared_schema(checked), unit_of(policy, dataset), tmp)
            # no data either: whether this release can stream, its noise checked by OpenDP
            streamed = stream_plan(plan) if isinstance(src, BatchSource) else None
        charged = charge_and_commit(engine, home, principal, "release", dataset,
                                    request.epsilon, request.delta, policy, src, details,
                                    purpose=purpose)
        plan = with_identity(plan, charged.per_person)

        def work() -> tuple[ReleaseResult, int | None]:
            with (
                engine.connect().execution_options(readonly=True) as conn,
                conn.begin(),
            ):
                if streamed is not None:
                    assert isinstance(src, BatchSource)
                    out = streamed.run(read_ahead(src.batches(conn, dataset,
                                                              list(checked.columns))))
                else:
                    with src.scan(conn, dataset, list(checked.columns)) as lf:
                        out = plan.run(lf)
            result = ReleaseResult(
                dataset=dataset,
                epsilon=request.epsilon,
                delta=request.delta,
                request=request,
                rows=rows_of(plan, out),
                accuracy=plan.accuracy,
                budget=charged.charge.budget,
                resources=Resources(streamed=streamed is not None, peak_rss_mib=peak_rss_mib()),
            )
            with engine.begin() as conn:
                return result, record_release(conn, principal, result, charged, details,
                                              purpose=purpose)

        result, seq = after_charge(engine, principal, dataset, "release", charged, work)
    return replace(result, ledger_seq=seq)


def charge_budget(
    conn: Connection,
    principal: Principal,
    dataset: str,
    epsilon: Fraction,
    policy: ReleasePolicy,
    *,
    delta: Fraction = Fraction(0),
) -> budget.Charge:
    return budget.spend(conn, principal.id, dataset, epsilon, delta=delta,
                        limits=limits_for(policy, dataset))


def record_release(
    conn: Connection,
    principal: Principal,
    result: ReleaseResult,
    charged: Charged,
    details: Mapping[str, Any],
    *,
    purpose: str | None = None,
) -> int | None:
    """The ``release.dp`` entry: what was released (``data_hash``), pointing at its charge.

    It charges nothing itself (the ``release.charge`` entry did, ``charge_seq``).
    """
    entries = ledger_store.append(
        conn,
        [
            EntryDraft(
                actor=principal.id,
                action=RELEASE_ACTION,
                resource=resource_of(result.dataset),
                purpose=purpose,
                data_hash=result.data_hash,
                details={
                    **details,
                    "charge_seq": charged.seq,
                    "privacy_unit": result.accuracy.unit.identity,
                    "rows_per_person": result.accuracy.unit.rows_per_person,
                    "groups": len(result.rows),
                    # what an auditor asks next: each measure's +- at the confidence
                    # (public: from the policy's bounds and epsilon, never the data)
                    "accuracy": {c.label: f"{c.accuracy:.6g}"
                                 for c in result.accuracy.columns},
                    "confidence": f"{1.0 - result.accuracy.alpha:g}",
                },
            )
        ],
    )
    seq = getattr(entries[0], "seq", None) if entries else None
    return int(seq) if seq is not None else None
