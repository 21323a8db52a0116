"""What an analyst asks for, and its validation against the policy (no data, no budget).

A ``ReleaseRequest`` names a dataset, the group-by columns, the measures
(``count``, ``sum:COL``, ``mean:COL``) and the privacy loss: ``epsilon`` (pure DP,
Laplace noise, the default), ``epsilon`` + ``delta`` (approximate DP: needed when
some group-by column has no public key set, so OpenDP releases the keys behind a
threshold), or ``zcdp=True`` + ``epsilon`` + ``delta`` (Gaussian noise calibrated in
zero-concentrated DP to the rho whose (epsilon, delta)-DP guarantee is exactly the
epsilon charged).

``validate`` turns a request and the policy into a ``CheckedRequest`` or raises a
one-line error naming columns and datasets, never data values:

* ``BadInput`` (exit 2): malformed measure, epsilon <= 0, bad bounds;
* ``PolicyDenied`` (exit 1): a group-by column the policy does not allow, a measure
  column without policy bounds, a dataset the policy has no release rules for.

Unknown datasets (not in the vault) are reported by the data source (``BadInput``),
before any budget is charged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, Protocol

from policies.errors import PolicyDenied
from policies.validate import parse_name, parse_names
from vault import vocab
from vault.budget import to_nano
from vault.dp.measures import KINDS, MEASURE_KINDS, MeasureKind, MeasureName, usage
from vault.errors import BadInput

__all__ = ["MEASURE_KINDS", "Bounds", "CheckedRequest", "Measure", "MeasureKind", "MeasureName",
           "Mode", "ReleasePolicy", "ReleaseRequest", "validate"]

Mode = Literal["pure", "approx", "zcdp"]


class ColumnRuleLike(Protocol):
    """What the DP layer reads of ``policies`` ``ColumnRule``."""

    @property
    def name(self) -> str: ...
    @property
    def keys(self) -> tuple[str, ...] | None: ...
    @property
    def lower(self) -> float | None: ...
    @property
    def upper(self) -> float | None: ...
    @property
    def groupable(self) -> bool: ...


class PrivacyUnitLike(Protocol):
    """What the DP layer reads of ``policies`` ``PrivacyUnit``."""

    @property
    def rows_per_person(self) -> int: ...
    @property
    def max_people(self) -> int: ...


class ReleasePolicy(Protocol):
    """The slice of ``policies.Policy`` that releases depend on."""

    def columns_for(self, dataset: str) -> Mapping[str, ColumnRuleLike]: ...
    def budget_default(self, dataset: str) -> Fraction: ...
    def dataset_cap(self, dataset: str) -> Fraction: ...
    def delta_default(self, dataset: str) -> Fraction: ...
    def delta_cap(self, dataset: str) -> Fraction: ...
    def delta_per_release(self, dataset: str) -> Fraction: ...
    def privacy_unit(self, dataset: str) -> PrivacyUnitLike: ...
    def analyst_caps(self) -> tuple[Fraction | None, Fraction | None]: ...


@dataclass(frozen=True)
class Measure:
    """One measure of a request: a kind of :mod:`vault.dp.measures` and its column."""

    kind: MeasureName
    column: str | None = None

    @property
    def definition(self) -> MeasureKind:
        return KINDS[self.kind]

    @property
    def label(self) -> str:
        return self.definition.label(self.column)

    @property
    def spec(self) -> str:
        return self.definition.spec(self.column)

    @classmethod
    def parse(cls, text: str) -> Measure:
        spec = text.strip()
        name, sep, column = spec.partition(":")
        kind = KINDS.get(name)
        if kind is not None and not kind.takes_column and not sep:
            return cls(kind.name)
        if kind is None or not kind.takes_column or not sep or not column.strip():
            raise BadInput(f"bad measure '{spec}': use {usage()}")
        return cls(kind.name, column.strip())


@dataclass(frozen=True)
class ReleaseRequest:
    dataset: str
    by: tuple[str, ...]
    measures: tuple[Measure, ...]
    epsilon: Fraction
    delta: float | None = None
    zcdp: bool = False
    alpha: float = 0.05

    @classmethod
    def build(
        cls,
        dataset: str,
        by: Sequence[str],
        measures: Sequence[str],
        epsilon: Fraction,
        *,
        delta: float | None = None,
        zcdp: bool = False,
    ) -> ReleaseRequest:
        """From CLI-like strings: ``by=["county","party"]``, ``measures=["count","mean:age"]``."""
        return cls(
            dataset=dataset,
            by=tuple(c.strip() for c in by if c.strip()),
            measures=tuple(Measure.parse(m) for m in measures),
            epsilon=epsilon,
            delta=delta,
            zcdp=zcdp,
        )

    @property
    def mode(self) -> Mode:
        if self.zcdp:
            return "zcdp"
        return "approx" if self.delta else "pure"

    def shape(self) -> dict[str, object]:
        """The query shape for the ledger: names only."""
        return {
            "by": list(self.by),
            "measures": [m.spec for m in self.measures],
            "mode": self.mode,
        }


@dataclass(frozen=True)
class Bounds:
    lower: float
    upper: float
    real: bool = False  # force Float64 even for integral bounds

    @property
    def integral(self) -> bool:
        return not self.real and float(self.lower).is_integer() and float(self.upper).is_integer()


@dataclass(frozen=True)
class CheckedRequest:
    """A request the policy allows, with everything needed to plan it."""

    request: ReleaseRequest
    keys: Mapping[str, tuple[str, ...] | None]
    bounds: Mapping[str, Bounds]

    @property
    def public_keys(self) -> bool:
        return all(v is not None for v in self.keys.values())

    @property
    def measure_columns(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for m in self.request.measures:
            if m.column is not None:
                seen.setdefault(m.column, None)
        return tuple(seen)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.request.by) + self.measure_columns


def check_epsilon(epsilon: Fraction) -> None:
    if epsilon <= 0:
        raise BadInput("epsilon must be > 0")
    to_nano(epsilon)


def check_delta(delta: float | None, cap: Fraction | None = None) -> None:
    """``delta`` in (0, 0.001) and, with ``cap`` (the policy's per-release delta, never
    above 1 / (10 n)), at most ``cap``."""
    if delta is not None and not (0.0 < delta < 1e-3 and math.isfinite(delta)):
        raise BadInput("delta must be in (0, 0.001)")
    if delta is not None and cap is not None and Fraction(repr(float(delta))) > cap:
        raise BadInput(f"delta may be at most {float(cap):.3g} per release "
                       "(policy: delta_per_release, never above 1/(10 max_people))")


def check_bounds(column: str, lower: float | None, upper: float | None) -> Bounds:
    if lower is None or upper is None:
        raise PolicyDenied(
            f"column '{column}' has no policy bounds: it cannot be summed or averaged"
        )
    lo, hi = float(lower), float(upper)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise BadInput(f"bad policy bounds for column '{column}': need finite lower < upper")
    return Bounds(lo, hi)


def validate(request: ReleaseRequest, policy: ReleasePolicy) -> CheckedRequest:
    """Check ``request`` against ``policy``; see the module docstring for the errors."""
    parse_name(request.dataset, "dataset")
    parse_names(request.by, "column", what="group-by column")
    parse_names([m.column for m in request.measures if m.column is not None], "column",
                what="measure column")
    check_epsilon(request.epsilon)
    check_delta(request.delta, policy.delta_per_release(request.dataset))
    if request.zcdp and request.delta is None:
        raise BadInput("zCDP mode needs --delta (the epsilon charged is its (epsilon, delta) cost)")
    if not request.measures:
        raise BadInput("give at least one --measure")
    if len(set(request.by)) != len(request.by):
        raise BadInput("a group-by column is repeated")
    labels = [m.label for m in request.measures]
    if len(set(labels)) != len(labels):
        raise BadInput("a measure is repeated")
    clash = [c for c in request.by if c in labels]
    if clash:
        raise BadInput("a group-by column has the name of a measure's output")
    try:
        rules = policy.columns_for(request.dataset)
    except KeyError:
        rules = {}
    if not rules:
        raise PolicyDenied(f"the policy allows no releases from dataset '{request.dataset}'")
    keys: dict[str, tuple[str, ...] | None] = {}
    for col in request.by:
        rule = rules.get(col)
        if rule is None or not rule.groupable:
            raise PolicyDenied(
                f"column '{vocab.shown(col, rules)}' of dataset '{request.dataset}' may not be "
                "used to group releases"
            )
        keys[col] = tuple(rule.keys) if rule.keys is not None else None
        if keys[col] == ():
            raise BadInput(f"policy declares an empty key set for column '{col}'")
    bounds: dict[str, Bounds] = {}
    for m in request.measures:
        if m.column is None:
            continue
        if m.column in request.by:
            raise BadInput(f"column '{m.column}' is both a group-by column and a measure")
        rule = rules.get(m.column)
        if rule is None:
            raise PolicyDenied(
                f"column '{vocab.shown(m.column, rules)}' of dataset '{request.dataset}' has no "
                "policy bounds: "
                "it cannot be summed or averaged"
            )
        bounds[m.column] = check_bounds(m.column, rule.lower, rule.upper)
    if not all(v is not None for v in keys.values()):
        if request.mode == "pure":
            missing = [c for c, v in keys.items() if v is None]
            raise BadInput(
                f"column '{missing[0]}' has no public key set in the policy: releasing its "
                "groups needs --delta (OpenDP's DP key release)"
            )
        if request.mode == "zcdp":
            raise BadInput("zCDP mode needs public key sets for every group-by column")
    return CheckedRequest(request=request, keys=keys, bounds=bounds)
