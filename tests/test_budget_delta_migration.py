"""Migration 0007 on a database with budgets: accounts keep their epsilon, delta starts closed."""

from __future__ import annotations

from fractions import Fraction

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from policies.errors import BudgetExhausted
from vault import budget


def test_existing_accounts_survive_and_delta_fails_closed(db_url: str) -> None:
    from alembic import command

    from vault.db import _alembic_config, make_engine, migrate

    engine: Engine = make_engine(db_url)
    try:
        command.upgrade(_alembic_config(engine), "0006")
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO budget_accounts (analyst, dataset, total_nano, spent_nano, updated) "
                "VALUES ('alice', 'voters', 1000000000, 250000000, 'then')"))
            conn.execute(sa.text(
                "INSERT INTO budget_datasets (dataset, spent_nano, updated) "
                "VALUES ('voters', 250000000, 'then')"))
        migrate(engine)
        with engine.connect() as conn:
            b = budget.get_budget(conn, "alice", "voters", default_total=Fraction(0))
        assert (b.epsilon_total, b.epsilon_spent) == (Fraction(1), Fraction(1, 4))
        assert (b.delta_total, b.delta_spent) == (0, 0)  # approximate DP needs a budget set
        limits = budget.Limits(Fraction(1), Fraction(10), Fraction(1, 10**8), Fraction(1, 10**7))
        with pytest.raises(BudgetExhausted, match="delta"), engine.begin() as conn:
            budget.spend(conn, "alice", "voters", Fraction(1, 10), delta=Fraction(1, 10**9),
                         limits=limits)
        with engine.begin() as conn:  # pure DP spends as before
            charge = budget.spend(conn, "alice", "voters", Fraction(1, 10), limits=limits)
        assert charge.budget.epsilon_spent == Fraction(7, 20)
        assert charge.analyst_epsilon_spent == Fraction(7, 20)  # seeded with what was spent
    finally:
        engine.dispose()
