"""Each DP measure kind is defined once (``vault.dp.measures``): how it is asked for, which
noisy aggregates it needs, its released value and its error bar."""

from __future__ import annotations

import pytest

from vault.dp.measures import KINDS, MEASURE_KINDS, usage
from vault.dp.request import Bounds, Measure
from vault.errors import BadInput


def test_the_kinds_and_their_spellings() -> None:
    assert tuple(KINDS) == MEASURE_KINDS == ("count", "sum", "mean")
    assert usage() == "count, sum:COLUMN or mean:COLUMN"
    assert [(m.label, m.spec) for m in map(Measure.parse, ["count", " sum:age", "mean: age "])
            ] == [("count", "count"), ("sum_age", "sum:age"), ("mean_age", "mean:age")]
    for bad in ("count:age", "sum", "sum:", "mean: ", "Count", "median:age", ""):
        with pytest.raises(BadInput, match="use count, sum:COLUMN or mean:COLUMN"):
            Measure.parse(bad)


def test_what_each_kind_needs_of_opendp() -> None:
    needs = {k.name: (k.takes_column, k.needs_count, k.needs_sum, k.derived)
             for k in KINDS.values()}
    assert needs == {"count": (False, True, False, False), "sum": (True, False, True, False),
                     "mean": (True, True, True, True)}


def test_released_values() -> None:
    b = Bounds(18.0, 90.0)
    assert KINDS["count"].value(12, 0, None) == 12
    assert KINDS["sum"].value(None, 431, b) == 431
    assert KINDS["mean"].value(10, 431, b) == pytest.approx(43.1)
    assert KINDS["mean"].value(0, 431, b) == 90.0  # clipped to the bounds (count floored at 1)
    assert KINDS["mean"].value(10, -5, b) == 18.0


def test_error_bars() -> None:
    measures = {"count": {"accuracy": 4.0}, "sum_age": {"accuracy": 300.0},
                "mean_age": {"derived": "sum_age / count", "from": ["sum_age", "count"]}}
    assert KINDS["count"].error_bar(measures, "count", {"count": 7}, 7.0) == 4.0
    assert KINDS["sum"].error_bar(measures, "sum_age", {}, 120.0) == 300.0
    mean = KINDS["mean"].error_bar
    assert mean(measures, "mean_age", {"count": 10}, 40.0) == pytest.approx((300 + 40 * 4) / 10)
    assert mean(measures, "mean_age", {"count": 0}, 40.0) == pytest.approx(300 + 40 * 4)
    assert mean(measures, "mean_age", {}, 40.0) == 300.0  # no count released with the row
