"""Persistent, exact, race-safe privacy budgets.

Two ledgers of epsilon, both spent in the caller's transaction:

* an account per (analyst, dataset): ``total`` set by ``budget set`` (or the
  policy's ``budget_default`` the first time an analyst spends on a dataset),
  and ``spent``;
* a counter per dataset: ``spent`` by every analyst together, held under the
  policy's ``dataset_cap``.

Amounts are ``fractions.Fraction`` at the API and integers of 10^-9 epsilon in
the database, so ``0.1 + 0.1 + 0.1 == 0.3`` holds exactly. ``spend`` locks the
dataset row, then the account row (always in that order: no deadlock), checks
both limits and charges both, or raises ``BudgetExhausted`` and charges nothing.
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
from vault.errors import BadInput

NANO = 10**9
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
)
T_DATASETS = sa.Table(
    "budget_datasets",
    _meta,
    sa.Column("dataset", sa.String(200), primary_key=True),
    sa.Column("spent_nano", sa.BigInteger(), nullable=False),
    sa.Column("updated", sa.String(40), nullable=False),
)


@dataclass(frozen=True)
class Budget:
    """One analyst's account on one dataset."""

    analyst: str
    dataset: str
    epsilon_total: Fraction
    epsilon_spent: Fraction

    @property
    def epsilon_remaining(self) -> Fraction:
        return max(Fraction(0), self.epsilon_total - self.epsilon_spent)

    def to_json(self) -> dict[str, str | float]:
        return {
            "analyst": self.analyst,
            "dataset": self.dataset,
            "epsilon_total": fraction_to_json(self.epsilon_total),
            "epsilon_spent": fraction_to_json(self.epsilon_spent),
            "epsilon_remaining": fraction_to_json(self.epsilon_remaining),
        }


@dataclass(frozen=True)
class Charge:
    """What a successful ``spend`` charged and what is left afterwards."""

    budget: Budget
    epsilon: Fraction
    dataset_spent: Fraction
    dataset_cap: Fraction


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


def fraction_to_json(value: Fraction) -> float:
    """The JSON number for an exact budget amount (shortest decimal that round-trips)."""
    return float(value)


def parse_epsilon(text: str, *, what: str = "epsilon") -> Fraction:
    """Parse a user-given positive epsilon ('0.5', '1', '3e-1') exactly."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise BadInput(f"{what} must be a positive decimal number") from None
    if value <= 0:
        raise BadInput(f"{what} must be > 0")
    to_nano(value, what=what)
    return value


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _insert(conn: Connection, table: sa.Table) -> Any:
    """A dialect insert (both have ``on_conflict_do_nothing`` / ``on_conflict_do_update``)."""
    if conn.dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


def _ensure_rows(conn: Connection, analyst: str, dataset: str, default_total: Fraction) -> None:
    """Create the dataset counter and the account if missing (race-safe: ON CONFLICT DO NOTHING)."""
    now = _now()
    conn.execute(
        _insert(conn, T_DATASETS)
        .values(dataset=dataset, spent_nano=0, updated=now)
        .on_conflict_do_nothing(index_elements=["dataset"])
    )
    conn.execute(
        _insert(conn, T_ACCOUNTS)
        .values(
            analyst=analyst,
            dataset=dataset,
            total_nano=to_nano(default_total),
            spent_nano=0,
            updated=now,
        )
        .on_conflict_do_nothing(index_elements=["analyst", "dataset"])
    )


def spend(
    conn: Connection,
    analyst: str,
    dataset: str,
    epsilon: Fraction,
    *,
    default_total: Fraction,
    dataset_cap: Fraction,
) -> Charge:
    """Charge ``epsilon`` to ``analyst`` on ``dataset`` inside the caller's transaction.

    Raises ``BudgetExhausted`` (and changes nothing) when the analyst's account or
    the dataset-wide cap would be exceeded. The message holds amounts and names only.
    """
    need = to_nano(epsilon)
    if need <= 0:
        raise BadInput("epsilon must be > 0")
    cap = to_nano(dataset_cap, what="dataset cap")
    _ensure_rows(conn, analyst, dataset, default_total)
    locking = conn.dialect.name == "postgresql"
    q_ds = sa.select(T_DATASETS.c.spent_nano).where(T_DATASETS.c.dataset == dataset)
    q_acct = sa.select(T_ACCOUNTS.c.total_nano, T_ACCOUNTS.c.spent_nano).where(
        T_ACCOUNTS.c.analyst == analyst, T_ACCOUNTS.c.dataset == dataset
    )
    if locking:  # lock order: dataset row, then account row
        q_ds = q_ds.with_for_update()
        q_acct = q_acct.with_for_update()
    ds_spent = int(conn.execute(q_ds).scalar_one())
    acct = conn.execute(q_acct).one()
    total, spent = int(acct.total_nano), int(acct.spent_nano)
    if spent + need > total:
        raise BudgetExhausted(
            f"privacy budget exhausted: analyst '{analyst}' has epsilon "
            f"{_fmt(max(0, total - spent))} of {_fmt(total)} left on dataset '{dataset}', "
            f"the request needs {_fmt(need)}"
        )
    if ds_spent + need > cap:
        raise BudgetExhausted(
            f"privacy budget exhausted: dataset '{dataset}' has epsilon "
            f"{_fmt(max(0, cap - ds_spent))} of its cap {_fmt(cap)} left across all analysts, "
            f"the request needs {_fmt(need)}"
        )
    now = _now()
    conn.execute(
        T_DATASETS.update()
        .where(T_DATASETS.c.dataset == dataset)
        .values(spent_nano=T_DATASETS.c.spent_nano + need, updated=now)
    )
    conn.execute(
        T_ACCOUNTS.update()
        .where(T_ACCOUNTS.c.analyst == analyst, T_ACCOUNTS.c.dataset == dataset)
        .values(spent_nano=T_ACCOUNTS.c.spent_nano + need, updated=now)
    )
    return Charge(
        budget=Budget(analyst, dataset, from_nano(total), from_nano(spent + need)),
        epsilon=epsilon,
        dataset_spent=from_nano(ds_spent + need),
        dataset_cap=dataset_cap,
    )


def set_budget(
    conn: Connection, analyst: str, dataset: str, total: Fraction, *, actor: str | None = None
) -> Budget:
    """Set (or create) the total epsilon of ``analyst`` on ``dataset``; spending is kept.

    A ``budget.set`` ledger entry (analyst, dataset, new total, spent so far; by
    ``actor``, default ``vault``) is appended in the same transaction.
    """
    if total < 0:
        raise BadInput("epsilon must be >= 0")
    nano = to_nano(total)
    now = _now()
    stmt = _insert(conn, T_ACCOUNTS).values(
        analyst=analyst, dataset=dataset, total_nano=nano, spent_nano=0, updated=now
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["analyst", "dataset"],
            set_={"total_nano": nano, "updated": now},
        )
    )
    conn.execute(
        _insert(conn, T_DATASETS)
        .values(dataset=dataset, spent_nano=0, updated=now)
        .on_conflict_do_nothing(index_elements=["dataset"])
    )
    result = get_budget(conn, analyst, dataset, default_total=total)
    # always on the ledger: verification re-derives the totals from these entries
    from ledger import store as ledger_store
    from ledger.entry import EntryDraft

    ledger_store.append(
        conn,
        [
            EntryDraft(
                actor=actor or "vault",
                action="budget.set",
                resource=f"budget:{analyst}/{dataset}",
                details={
                    "analyst": analyst,
                    "dataset": dataset,
                    "epsilon_total": format_epsilon(result.epsilon_total),
                    "epsilon_spent": format_epsilon(result.epsilon_spent),
                },
            )
        ],
    )
    return result


def get_budget(conn: Connection, analyst: str, dataset: str, *, default_total: Fraction) -> Budget:
    """The account, or what it is before the first spend (``default_total``, none spent)."""
    row = conn.execute(
        sa.select(T_ACCOUNTS.c.total_nano, T_ACCOUNTS.c.spent_nano).where(
            T_ACCOUNTS.c.analyst == analyst, T_ACCOUNTS.c.dataset == dataset
        )
    ).one_or_none()
    if row is None:
        return Budget(analyst, dataset, default_total, Fraction(0))
    return Budget(analyst, dataset, from_nano(row.total_nano), from_nano(row.spent_nano))


def show_budgets(conn: Connection, analyst: str | None = None) -> list[Budget]:
    """Every account (or one analyst's), ordered by analyst then dataset."""
    q = sa.select(
        T_ACCOUNTS.c.analyst, T_ACCOUNTS.c.dataset, T_ACCOUNTS.c.total_nano, T_ACCOUNTS.c.spent_nano
    ).order_by(T_ACCOUNTS.c.analyst, T_ACCOUNTS.c.dataset)
    if analyst is not None:
        q = q.where(T_ACCOUNTS.c.analyst == analyst)
    return [
        Budget(r.analyst, r.dataset, from_nano(r.total_nano), from_nano(r.spent_nano))
        for r in conn.execute(q)
    ]


def dataset_spent(conn: Connection, dataset: str) -> Fraction:
    value = conn.execute(
        sa.select(T_DATASETS.c.spent_nano).where(T_DATASETS.c.dataset == dataset)
    ).scalar()
    return from_nano(int(value or 0))


def _fmt(nano: int) -> str:
    return format_epsilon(from_nano(nano))


def format_epsilon(value: Fraction) -> str:
    """Exact decimal text of a budget amount ('0.3', '1', '0.000000001')."""
    whole, rest = divmod(value.numerator * NANO // value.denominator, NANO)
    if rest == 0:
        return str(whole)
    return f"{whole}.{rest:09d}".rstrip("0")


__all__: Sequence[str] = (
    "Budget",
    "Charge",
    "dataset_spent",
    "format_epsilon",
    "get_budget",
    "parse_epsilon",
    "set_budget",
    "show_budgets",
    "spend",
)
