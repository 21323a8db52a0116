"""The measures a DP release can ask for, each kind defined once, here.

``count``, ``sum:COL`` and ``mean:COL``. A :class:`MeasureKind` holds everything the
release path needs to know of a kind:

* **parsing** (``vault.dp.request.Measure.parse``): whether it takes a column
  (``KIND:COL``, the column then needs policy bounds) or stands alone;
* **plan** (``vault.dp.plan.build_plan``): which noisy aggregates OpenDP releases
  for it: the row count (``__count``) and/or the clipped sum of its column
  (``__sum_<COL>``);
* **rows** (``vault.dp.release.rows_of``): its released value in one group, from
  those noisy aggregates (and the column's public bounds);
* **accuracy** (``vault.dp.plan`` and ``vault.dp.export``): an aggregate's own
  (OpenDP's summary), or derived from the aggregates it is computed from, and the
  error bar a chart draws for one group.

To add a measure kind: its name in :data:`MeasureName` and one :class:`MeasureKind`
in :data:`KINDS` (then the ``--measure`` help line of ``flows/cli/release.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

__all__ = ["KINDS", "MEASURE_KINDS", "MeasureKind", "MeasureName"]

MeasureName = Literal["count", "sum", "mean"]
MEASURE_KINDS: tuple[str, ...] = get_args(MeasureName)


class BoundsLike(Protocol):
    @property
    def lower(self) -> float: ...
    @property
    def upper(self) -> float: ...


#: (noisy count or None, noisy clipped sum of the column, the column's bounds) -> value
Value = Callable[[int | None, float | int, BoundsLike | None], Any]
#: (the accuracy document's measures, this measure's label, one released row, its value)
ErrorBar = Callable[[Mapping[str, Any], str, Mapping[str, Any], float], float]


def _own_accuracy(measures: Mapping[str, Any], label: str, row: Mapping[str, Any],
                  value: float) -> float:
    return float(measures[label]["accuracy"])


def _ratio_accuracy(measures: Mapping[str, Any], label: str, row: Mapping[str, Any],
                    value: float) -> float:
    """A mean's error bar: the sum's and the count's accuracies propagated at the group's
    count."""
    num, den = measures[label]["from"]
    a_num = float(measures[num]["accuracy"])
    a_den = float(measures[den]["accuracy"])
    if "count" not in row:
        return a_num
    return (a_num + abs(value) * a_den) / max(1.0, float(row.get("count") or 1.0))


def _mean(count: int | None, total: float | int, bounds: BoundsLike | None) -> float:
    assert bounds is not None
    mean = float(total) / max(1, count or 0)
    return min(max(mean, bounds.lower), bounds.upper)


@dataclass(frozen=True)
class MeasureKind:
    """One kind of measure: how it is asked for, planned, released and how accurate it is."""

    name: MeasureName
    takes_column: bool  # KIND:COL (the column needs policy bounds), else the bare name
    needs_count: bool  # OpenDP releases the noisy row count (``__count``) for it
    needs_sum: bool  # ... and the noisy clipped sum of its column (``__sum_<COL>``)
    value: Value  # its released value in one group
    derived: bool = False  # its accuracy comes from its sum and count (no aggregate of its own)
    error_bar: ErrorBar = _own_accuracy

    def label(self, column: str | None) -> str:
        """The released column: ``count``, ``sum_<COL>``, ``mean_<COL>``."""
        return self.name if column is None else f"{self.name}_{column}"

    def spec(self, column: str | None) -> str:
        """How it is asked for: ``count``, ``sum:<COL>``, ``mean:<COL>``."""
        return self.name if column is None else f"{self.name}:{column}"


KINDS: Mapping[str, MeasureKind] = {k.name: k for k in (
    MeasureKind("count", takes_column=False, needs_count=True, needs_sum=False,
                value=lambda count, total, bounds: count),
    MeasureKind("sum", takes_column=True, needs_count=False, needs_sum=True,
                value=lambda count, total, bounds: total),
    MeasureKind("mean", takes_column=True, needs_count=True, needs_sum=True,
                value=_mean, derived=True, error_bar=_ratio_accuracy),
)}
assert tuple(KINDS) == MEASURE_KINDS


def usage() -> str:
    """The accepted spellings, for error messages: ``count, sum:COLUMN or mean:COLUMN``."""
    forms = [k.spec("COLUMN") if k.takes_column else k.name for k in KINDS.values()]
    return ", ".join(forms[:-1]) + " or " + forms[-1]
