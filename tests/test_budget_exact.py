"""Budgets are exact rationals, charged all-or-nothing, per analyst and across a dataset."""

from __future__ import annotations

from fractions import Fraction

import pytest
from sqlalchemy import Engine

from policies.errors import BudgetExhausted
from vault import budget
from vault.errors import BadInput

TENTH = Fraction(1, 10)


def _spend(
    engine: Engine,
    analyst: str,
    eps: Fraction,
    *,
    cap: Fraction = Fraction(100),
    default: Fraction = Fraction(1),
) -> budget.Charge:
    with engine.begin() as conn:
        return budget.spend(conn, analyst, "voters", eps, default_total=default, dataset_cap=cap)


def test_tenths_add_up_exactly(engine: Engine) -> None:
    for _ in range(3):
        _spend(engine, "alice", TENTH)
    with engine.connect() as conn:
        (b,) = budget.show_budgets(conn, "alice")
    assert b.epsilon_spent == Fraction(3, 10)  # not 0.30000000000000004
    assert b.to_json()["epsilon_spent"] == 0.3
    assert b.epsilon_remaining == Fraction(7, 10)


def test_overspend_charges_nothing(engine: Engine) -> None:
    _spend(engine, "alice", Fraction(9, 10))
    with pytest.raises(BudgetExhausted, match="alice"):
        _spend(engine, "alice", Fraction(2, 10))
    with engine.connect() as conn:
        assert budget.get_budget(
            conn, "alice", "voters", default_total=Fraction(1)
        ).epsilon_spent == Fraction(9, 10)
        assert budget.dataset_spent(conn, "voters") == Fraction(9, 10)


def test_dataset_cap_holds_across_analysts(engine: Engine) -> None:
    cap = Fraction(1)
    _spend(engine, "alice", Fraction(6, 10), cap=cap)
    with pytest.raises(BudgetExhausted, match="across all analysts"):
        _spend(engine, "bob", Fraction(6, 10), cap=cap)  # bob's own budget (1) would allow it
    _spend(engine, "bob", Fraction(4, 10), cap=cap)
    with engine.connect() as conn:
        assert budget.dataset_spent(conn, "voters") == cap


def test_set_budget_keeps_what_was_spent(engine: Engine) -> None:
    _spend(engine, "alice", Fraction(1, 2))
    with engine.begin() as conn:
        b = budget.set_budget(conn, "alice", "voters", Fraction(3))
    assert (b.epsilon_total, b.epsilon_spent) == (Fraction(3), Fraction(1, 2))
    _spend(engine, "alice", Fraction(2))  # now within the raised total


def test_unrepresentable_epsilon_is_bad_input() -> None:
    with pytest.raises(BadInput):
        budget.parse_epsilon("1/3")
    with pytest.raises(BadInput):
        budget.parse_epsilon("0")
    with pytest.raises(BadInput):
        budget.parse_epsilon("abc")
    assert budget.parse_epsilon("0.3") == Fraction(3, 10)
    assert budget.format_epsilon(Fraction(3, 10)) == "0.3"
