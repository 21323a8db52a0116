"""Persistent, exact, race-safe (epsilon, delta) privacy budgets.

Three ledgers of (epsilon, delta), all spent in the caller's transaction:

* an account per (analyst, dataset): totals set by ``budget set`` (or the
  policy's defaults the first time an analyst spends on a dataset), and spent;
* a counter per dataset: spent by every analyst together, held under the
  policy's dataset caps;
* a counter per analyst over *every* dataset, held under the policy's vault-wide
  analyst cap (the same people ingested under a second dataset name do not
  come with a fresh budget).

Composition is basic (sequential): epsilons add, deltas add. Amounts are
``fractions.Fraction`` at the API; in the database epsilon is an integer of
10^-9 and delta an integer of 10^-18 (a delta that is not a multiple of 10^-18
is charged rounded *up*), so ``0.1 + 0.1 + 0.1 == 0.3`` holds exactly. ``spend``
locks the analyst row, the dataset row, then the account row (always in that
order: no deadlock), checks every limit and charges all three, or raises
``BudgetExhausted`` and charges nothing.
On SQLite every write transaction already holds the database write lock
(``BEGIN IMMEDIATE``, see ``vault.db``); on PostgreSQL the rows are taken with
``SELECT ... FOR UPDATE``. Callers charge *before* drawing any noise, in the
same transaction as the release's ledger entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from policies.errors import BudgetExhausted
from policies.validate import parse_fraction, parse_name
from vault.errors import BadInput

NANO = 10**9
ATTO = 10**18
_MAX_NANO = 2**62

_meta = sa.MetaData()
T_ACCOUNTS = sa.Table(
    "budget_accounts",
    _meta,
    sa.Column("analyst", sa.String(200), primary_key=True),
    sa.Column("dataset", sa.String(200), primary_key=True),
    sa.Column("total_nano", sa.BigInteger(), nullable=False),
    sa.Column("spent_nano", sa.BigInteger(), nullable=False),
    sa.Column("updated", sa.String(40), nullable=False),
    sa.Column("delta_total_atto", sa.BigInteger(), nullable=False),
    sa.Column("delta_spent_atto", sa.BigInteger(), nullable=False),
)
T_DATASETS = sa.Table(
    "budget_datasets",
    _meta,
    sa.Column("dataset", sa.String(200), primary_key=True),
    sa.Column("spent_nano", sa.BigInteger(), nullable=False),
    sa.Column("updated", sa.String(40), nullable=False),
    sa.Column("delta_spent_atto", sa.BigInteger(), nullable=False),
)
T_ANALYSTS = sa.Table(
    "budget_analysts",
    _meta,
    sa.Column("analyst", sa.String(200), primary_key=True),
    sa.Column("spent_nano", sa.BigInteger(), nullable=False),
    sa.Column("delta_spent_atto", sa.BigInteger(), nullable=False),
    sa.Column("updated", sa.String(40), nullable=False),
)


@dataclass(frozen=True)
class Budget:
    """One analyst's account on one dataset."""

    analyst: str
    dataset: str
    epsilon_total: Fraction
    epsilon_spent: Fraction
    delta_total: Fraction = Fraction(0)
    delta_spent: Fraction = Fraction(0)

    @property
    def epsilon_remaining(self) -> Fraction:
        return max(Fraction(0), self.epsilon_total - self.epsilon_spent)

    @property
    def delta_remaining(self) -> Fraction:
        return max(Fraction(0), self.delta_total - self.delta_spent)

    def to_json(self) -> dict[str, str | float]:
        return {
            "analyst": self.analyst,
            "dataset": self.dataset,
            "epsilon_total": fraction_to_json(self.epsilon_total),
            "epsilon_spent": fraction_to_json(self.epsilon_spent),
            "epsilon_remaining": fraction_to_json(self.epsilon_remaining),
            "delta_total": fraction_to_json(self.delta_total),
            "delta_spent": fraction_to_json(self.delta_spent),
            "delta_remaining": fraction_to_json(self.delta_remaining),
        }


@dataclass(frozen=True)
class Limits:
    """What the policy allows one analyst on one dataset (``None``: no vault-wide cap)."""

    epsilon_default: Fraction
    epsilon_dataset_cap: Fraction
    delta_default: Fraction = Fraction(0)
    delta_dataset_cap: Fraction = Fraction(0)
    epsilon_analyst_cap: Fraction | None = None
    delta_analyst_cap: Fraction | None = None


@dataclass(frozen=True)
class Charge:
    """What a successful ``spend`` charged and what is left afterwards."""

    budget: Budget
    epsilon: Fraction
    dataset_spent: Fraction
    dataset_cap: Fraction
    delta: Fraction = Fraction(0)
    dataset_delta_spent: Fraction = Fraction(0)
    analyst_epsilon_spent: Fraction = Fraction(0)
    analyst_delta_spent: Fraction = Fraction(0)

    def ledger_details(self) -> dict[str, str]:
        """The charge as exact decimal strings, for the entry appended in the same transaction.

        ``ledger verify`` recomputes every analyst's spend from these fields.
        """
        return {
            "analyst": self.budget.analyst,
            "dataset": self.budget.dataset,
            "epsilon_total": format_epsilon(self.budget.epsilon_total),
            "delta_total": format_delta(self.budget.delta_total),
            "epsilon_charged": format_epsilon(self.epsilon),
            "delta_charged": format_delta(self.delta),
            "epsilon_spent": format_epsilon(self.budget.epsilon_spent),
            "delta_spent": format_delta(self.budget.delta_spent),
            "analyst_epsilon_spent": format_epsilon(self.analyst_epsilon_spent),
            "analyst_delta_spent": format_delta(self.analyst_delta_spent),
        }


def to_nano(epsilon: Fraction, *, what: str = "epsilon") -> int:
    """``epsilon`` in units of 10^-9; BadInput unless exactly representable and in range."""
    scaled = epsilon * NANO
    if scaled.denominator != 1:
        raise BadInput(f"{what} must be a decimal with at most 9 digits after the point")
    if scaled < 0 or scaled > _MAX_NANO:
        raise BadInput(f"{what} is out of range")
    return int(scaled)


def from_nano(value: int) -> Fraction:
    return Fraction(int(value), NANO)


def to_atto(delta: Fraction, *, what: str = "delta") -> int:
    """``delta`` in units of 10^-18, rounded up (charging a hair more is safe); in [0, 1]."""
    if delta < 0 or delta > 1:
        raise BadInput(f"{what} must be between 0 and 1")
    scaled = delta * ATTO
    return int(-(-scaled.numerator // scaled.denominator))


def from_atto(value: int) -> Fraction:
    return Fraction(int(value), ATTO)


def delta_fraction(delta: float | None) -> Fraction:
    """The exact decimal a float delta was written as (``1e-07`` -> 1/10^7); None -> 0."""
    if delta is None:
        return Fraction(0)
    return Fraction(repr(float(delta)))


def fraction_to_json(value: Fraction) -> float:
    """The JSON number for an exact budget amount (shortest decimal that round-trips)."""
    return float(value)


def parse_epsilon(text: str, *, what: str = "epsilon") -> Fraction:
    """Parse a user-given positive epsilon ('0.5', '1', '3e-1') exactly.

    Through the one strict number parser (``policies.validate``): ASCII decimal or
    scientific notation, no spaces or underscores, finite, > 0, representable in nano."""
    value = parse_fraction(text, what=what, above=0)
    to_nano(value, what=what)
    return value


def parse_delta(text: str, *, what: str = "delta") -> Fraction:
    """Parse a user-given delta total ('1e-8', '0') exactly: a decimal in [0, 1]."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise BadInput(f"{what} must be a decimal number such as 1e-8") from None
    to_atto(value, what=what)
    return value


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _insert(conn: Connection, table: sa.Table) -> Any:
    """A dialect insert (both have ``on_conflict_do_nothing`` / ``on_conflict_do_update``)."""
    if conn.dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


def _ensure_rows(conn: Connection, analyst: str, dataset: str, limits: Limits) -> None:
    """Create the counters and the account if missing (race-safe: ON CONFLICT DO NOTHING)."""
    now = _now()
    conn.execute(
        _insert(conn, T_ANALYSTS)
        .values(analyst=analyst, spent_nano=0, delta_spent_atto=0, updated=now)
        .on_conflict_do_nothing(index_elements=["analyst"])
    )
    conn.execute(
        _insert(conn, T_DATASETS)
        .values(dataset=dataset, spent_nano=0, delta_spent_atto=0, updated=now)
        .on_conflict_do_nothing(index_elements=["dataset"])
    )
    conn.execute(
        _insert(conn, T_ACCOUNTS)
        .values(
            analyst=analyst,
            dataset=dataset,
            total_nano=to_nano(limits.epsilon_default),
            spent_nano=0,
            delta_total_atto=to_atto(limits.delta_default),
            delta_spent_atto=0,
            updated=now,
        )
        .on_conflict_do_nothing(index_elements=["analyst", "dataset"])
    )


def _exhausted(what: str, have: str, of: str, need: str) -> BudgetExhausted:
    return BudgetExhausted(f"privacy budget exhausted: {what} has {have} of {of} left, "
                           f"the request needs {need}")


def spend(
    conn: Connection,
    analyst: str,
    dataset: str,
    epsilon: Fraction,
    *,
    default_total: Fraction | None = None,
    dataset_cap: Fraction | None = None,
    delta: Fraction = Fraction(0),
    limits: Limits | None = None,
) -> Charge:
    """Charge ``(epsilon, delta)`` to ``analyst`` on ``dataset`` inside the caller's transaction.

    ``limits`` (or, for epsilon-only callers, ``default_total`` and ``dataset_cap``)
    are the policy's. Raises ``BudgetExhausted`` (and changes nothing) when the
    analyst's account, the dataset-wide cap or the analyst's vault-wide cap would be
    exceeded, in epsilon or in delta. The message holds amounts and names only.
    """
    if limits is None:
        if default_total is None or dataset_cap is None:
            raise TypeError("spend needs limits, or default_total and dataset_cap")
        limits = Limits(default_total, dataset_cap)
    need = to_nano(epsilon)
    if need <= 0:
        raise BadInput("epsilon must be > 0")
    need_d = to_atto(delta)
    cap = to_nano(limits.epsilon_dataset_cap, what="dataset cap")
    cap_d = to_atto(limits.delta_dataset_cap, what="dataset delta cap")
    _ensure_rows(conn, analyst, dataset, limits)
    locking = conn.dialect.name == "postgresql"
    q_an = sa.select(T_ANALYSTS.c.spent_nano, T_ANALYSTS.c.delta_spent_atto).where(
        T_ANALYSTS.c.analyst == analyst)
    q_ds = sa.select(T_DATASETS.c.spent_nano, T_DATASETS.c.delta_spent_atto).where(
        T_DATASETS.c.dataset == dataset)
    q_acct = sa.select(T_ACCOUNTS.c.total_nano, T_ACCOUNTS.c.spent_nano,
                       T_ACCOUNTS.c.delta_total_atto, T_ACCOUNTS.c.delta_spent_atto).where(
        T_ACCOUNTS.c.analyst == analyst, T_ACCOUNTS.c.dataset == dataset
    )
    if locking:  # lock order: analyst row, dataset row, then account row
        q_an = q_an.with_for_update()
        q_ds = q_ds.with_for_update()
        q_acct = q_acct.with_for_update()
    an = conn.execute(q_an).one()
    ds = conn.execute(q_ds).one()
    acct = conn.execute(q_acct).one()
    total, spent = int(acct.total_nano), int(acct.spent_nano)
    total_d, spent_d = int(acct.delta_total_atto), int(acct.delta_spent_atto)
    who = f"analyst '{analyst}' on dataset '{dataset}'"
    if spent + need > total:
        raise _exhausted(who, f"epsilon {_fmt(max(0, total - spent))}", _fmt(total), _fmt(need))
    if spent_d + need_d > total_d:
        raise _exhausted(who, f"delta {_fmt_d(max(0, total_d - spent_d))}", _fmt_d(total_d),
                         _fmt_d(need_d))
    across = f"dataset '{dataset}' (across all analysts)"
    ds_spent, ds_spent_d = int(ds.spent_nano), int(ds.delta_spent_atto)
    if ds_spent + need > cap:
        raise _exhausted(across, f"epsilon {_fmt(max(0, cap - ds_spent))}", f"its cap {_fmt(cap)}",
                         _fmt(need))
    if ds_spent_d + need_d > cap_d:
        raise _exhausted(across, f"delta {_fmt_d(max(0, cap_d - ds_spent_d))}",
                         f"its cap {_fmt_d(cap_d)}", _fmt_d(need_d))
    an_spent, an_spent_d = int(an.spent_nano), int(an.delta_spent_atto)
    vault_wide = f"analyst '{analyst}' (vault-wide, across all datasets)"
    if limits.epsilon_analyst_cap is not None:
        acap = to_nano(limits.epsilon_analyst_cap, what="analyst cap")
        if an_spent + need > acap:
            raise _exhausted(vault_wide, f"epsilon {_fmt(max(0, acap - an_spent))}",
                             f"the cap {_fmt(acap)}", _fmt(need))
    if limits.delta_analyst_cap is not None:
        acap_d = to_atto(limits.delta_analyst_cap, what="analyst delta cap")
        if an_spent_d + need_d > acap_d:
            raise _exhausted(vault_wide, f"delta {_fmt_d(max(0, acap_d - an_spent_d))}",
                             f"the cap {_fmt_d(acap_d)}", _fmt_d(need_d))
    now = _now()
    conn.execute(
        T_ANALYSTS.update()
        .where(T_ANALYSTS.c.analyst == analyst)
        .values(spent_nano=T_ANALYSTS.c.spent_nano + need,
                delta_spent_atto=T_ANALYSTS.c.delta_spent_atto + need_d, updated=now)
    )
    conn.execute(
        T_DATASETS.update()
        .where(T_DATASETS.c.dataset == dataset)
        .values(spent_nano=T_DATASETS.c.spent_nano + need,
                delta_spent_atto=T_DATASETS.c.delta_spent_atto + need_d, updated=now)
    )
    conn.execute(
        T_ACCOUNTS.update()
        .where(T_ACCOUNTS.c.analyst == analyst, T_ACCOUNTS.c.dataset == dataset)
        .values(spent_nano=T_ACCOUNTS.c.spent_nano + need,
                delta_spent_atto=T_ACCOUNTS.c.delta_spent_atto + need_d, updated=now)
    )
    return Charge(
        budget=Budget(analyst, dataset, from_nano(total), from_nano(spent + need),
                      from_atto(total_d), from_atto(spent_d + need_d)),
        epsilon=epsilon,
        dataset_spent=from_nano(ds_spent + need),
        dataset_cap=limits.epsilon_dataset_cap,
        delta=from_atto(need_d),
        dataset_delta_spent=from_atto(ds_spent_d + need_d),
        analyst_epsilon_spent=from_nano(an_spent + need),
        analyst_delta_spent=from_atto(an_spent_d + need_d),
    )


def set_budget(
    conn: Connection,
    analyst: str,
    dataset: str,
    total: Fraction,
    *,
    delta_total: Fraction | None = None,
    default_delta: Fraction = Fraction(0),
    actor: str | None = None,
) -> Budget:
    """Set (or create) the totals of ``analyst`` on ``dataset``; spending is kept.

    ``delta_total`` None keeps the account's delta total (``default_delta``, the
    policy's, for a new account). A ``budget.set`` ledger entry (analyst, dataset, new
    totals, spent so far; by ``actor``, default ``vault``) is appended in the same
    transaction: verification re-derives the totals from these entries.
    """
    parse_name(analyst, "principal", what="analyst name")
    parse_name(dataset, "dataset")
    if total < 0:
        raise BadInput("epsilon must be >= 0")
    nano = to_nano(total)
    atto = None if delta_total is None else to_atto(delta_total)
    now = _now()
    stmt = _insert(conn, T_ACCOUNTS).values(
        analyst=analyst, dataset=dataset, total_nano=nano, spent_nano=0,
        delta_total_atto=to_atto(default_delta) if atto is None else atto, delta_spent_atto=0,
        updated=now
    )
    changes: dict[str, Any] = {"total_nano": nano, "updated": now}
    if atto is not None:
        changes["delta_total_atto"] = atto
    conn.execute(stmt.on_conflict_do_update(index_elements=["analyst", "dataset"], set_=changes))
    conn.execute(
        _insert(conn, T_DATASETS)
        .values(dataset=dataset, spent_nano=0, delta_spent_atto=0, updated=now)
        .on_conflict_do_nothing(index_elements=["dataset"])
    )
    result = get_budget(conn, analyst, dataset, default_total=total)
    # always on the ledger: verification re-derives the totals from these entries
    from ledger import store as ledger_store
    from ledger.entry import EntryDraft
    from vault import vocab

    ledger_store.append(
        conn,
        [
            EntryDraft(
                actor=actor or "vault",
                action=vocab.BUDGET_SET,
                resource=vocab.budget(analyst, dataset),
                details={
                    "analyst": analyst,
                    "dataset": dataset,
                    "epsilon_total": format_epsilon(result.epsilon_total),
                    "epsilon_spent": format_epsilon(result.epsilon_spent),
                    "delta_total": format_delta(result.delta_total),
                    "delta_spent": format_delta(result.delta_spent),
                },
            )
        ],
    )
    return result


_ACCOUNT_COLS = (T_ACCOUNTS.c.analyst, T_ACCOUNTS.c.dataset, T_ACCOUNTS.c.total_nano,
                 T_ACCOUNTS.c.spent_nano, T_ACCOUNTS.c.delta_total_atto,
                 T_ACCOUNTS.c.delta_spent_atto)


def _budget(r: Any) -> Budget:
    return Budget(r.analyst, r.dataset, from_nano(r.total_nano), from_nano(r.spent_nano),
                  from_atto(r.delta_total_atto), from_atto(r.delta_spent_atto))


def get_budget(
    conn: Connection, analyst: str, dataset: str, *, default_total: Fraction,
    default_delta: Fraction = Fraction(0),
) -> Budget:
    """The account, or what it is before the first spend (the defaults, none spent)."""
    row = conn.execute(
        sa.select(*_ACCOUNT_COLS).where(
            T_ACCOUNTS.c.analyst == analyst, T_ACCOUNTS.c.dataset == dataset
        )
    ).one_or_none()
    if row is None:
        return Budget(analyst, dataset, default_total, Fraction(0), default_delta, Fraction(0))
    return _budget(row)


def show_budgets(conn: Connection, analyst: str | None = None) -> list[Budget]:
    """Every account (or one analyst's), ordered by analyst then dataset."""
    q = sa.select(*_ACCOUNT_COLS).order_by(T_ACCOUNTS.c.analyst, T_ACCOUNTS.c.dataset)
    if analyst is not None:
        q = q.where(T_ACCOUNTS.c.analyst == analyst)
    return [_budget(r) for r in conn.execute(q)]


def dataset_spent(conn: Connection, dataset: str) -> Fraction:
    value = conn.execute(
        sa.select(T_DATASETS.c.spent_nano).where(T_DATASETS.c.dataset == dataset)
    ).scalar()
    return from_nano(int(value or 0))


def analyst_spent(conn: Connection, analyst: str) -> tuple[Fraction, Fraction]:
    """(epsilon, delta) ``analyst`` spent over every dataset."""
    row = conn.execute(
        sa.select(T_ANALYSTS.c.spent_nano, T_ANALYSTS.c.delta_spent_atto)
        .where(T_ANALYSTS.c.analyst == analyst)
    ).one_or_none()
    if row is None:
        return Fraction(0), Fraction(0)
    return from_nano(row.spent_nano), from_atto(row.delta_spent_atto)


def _fmt(nano: int) -> str:
    return format_epsilon(from_nano(nano))


def _fmt_d(atto: int) -> str:
    return format_delta(from_atto(atto))


def format_epsilon(value: Fraction) -> str:
    """Exact decimal text of a budget amount ('0.3', '1', '0.000000001')."""
    whole, rest = divmod(value.numerator * NANO // value.denominator, NANO)
    if rest == 0:
        return str(whole)
    return f"{whole}.{rest:09d}".rstrip("0")


def format_delta(value: Fraction) -> str:
    """Exact decimal text of a delta amount ('0', '0.0000001'), to 10^-18 (rounded up)."""
    atto = -(-value.numerator * ATTO // value.denominator)
    whole, rest = divmod(atto, ATTO)
    if rest == 0:
        return str(whole)
    return f"{whole}.{rest:018d}".rstrip("0")


__all__: Sequence[str] = (
    "Budget",
    "Charge",
    "Limits",
    "analyst_spent",
    "dataset_spent",
    "delta_fraction",
    "format_delta",
    "format_epsilon",
    "get_budget",
    "parse_delta",
    "parse_epsilon",
    "set_budget",
    "show_budgets",
    "spend",
)
