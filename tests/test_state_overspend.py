"""The log alone proves every analyst stayed within budget: a ledger whose charges add up
past the total the log set fails verification, naming the first overspending entry."""

from __future__ import annotations

import orjson
import pytest

from vault.errors import StateMismatch
from vault.state_verify import fold


def _entries(*charges: str, total: str = "1", delta: tuple[str, str] | None = None
             ) -> list[bytes]:
    out = [{"seq": 0, "actor": "admin", "action": "budget.set", "resource": "budget",
            "details": {"analyst": "alice", "dataset": "voters", "epsilon_total": total,
                        **({"delta_total": delta[0]} if delta else {})}}]
    for i, eps in enumerate(charges, start=1):
        out.append({"seq": i, "actor": "alice", "action": "release.charge", "resource": "r",
                    "details": {"analyst": "alice", "dataset": "voters",
                                "epsilon_charged": eps, "epsilon_total": total,
                                **({"delta_charged": delta[1], "delta_total": delta[0]}
                                   if delta else {})}})
    return [orjson.dumps(e, option=orjson.OPT_SORT_KEYS) for e in out]


def test_charges_within_the_budget_fold_cleanly() -> None:
    exp = fold([_entries("0.5", "0.3", "0.2")])  # exactly the total: allowed
    assert exp.entries == 4


def test_a_log_that_shows_an_overspend_fails_at_the_first_overspending_charge() -> None:
    with pytest.raises(StateMismatch) as info:
        fold([_entries("0.5", "0.4", "0.2", "0.1")])
    assert info.value.table == "ledger_entries" and info.value.row == "3"
    assert info.value.seq == 3 and "epsilon budget" in str(info.value)


def test_a_delta_overspend_is_caught_too() -> None:
    with pytest.raises(StateMismatch) as info:
        fold([_entries("0.1", "0.1", delta=("1e-6", "6e-7"))])
    assert info.value.row == "2" and "delta budget" in str(info.value)
