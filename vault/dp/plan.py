"""From a checked request to an OpenDP measurement and its accuracy, without any data.

The measurement is built with OpenDP's Polars integration
(``make_private_lazyframe``, the constructor the Context API resolves queries
with) over a frame *schema* and public facts only: the prepared column types,
a public upper bound on the number of rows, the policy's key sets and bounds.
So ``preview`` reports the exact accuracy of the exact query (OpenDP
``summarize``, alpha 0.05) without touching data or budget.

Why not ``dp.Context.compositor`` end to end: the compositor's role, keeping the
privacy loss under a total, is played by our persistent budget table (shared
by every process, surviving restarts); and ``Context.resolve`` finds the noise
scale by a binary search whose failed constructions cost ~2 s per release. The
noise scale is instead solved directly: privacy loss is ``c / scale`` for
Laplace noise (pure DP) and ``c / scale**2`` for Gaussian noise (zCDP), so one
construction at scale 1 gives ``c`` and the answer, then OpenDP's own privacy
map checks it (nudging the scale up by a few ulps where rounding needs it).
With approximate DP and no public keys, OpenDP's DP key release thresholds the
noisy counts; the smallest threshold whose delta fits is found by bisection.

Public keys (``.with_keys()`` in the Context API) are a left join of the key
set with the aggregate; the key set is scanned from a Parquet file so that it is
not re-serialised into every plan.

The privacy unit is a *person*, not a row (docs/PRIVACY.md): the frame carries a
pseudonymous person column (``__person``), OpenDP's privacy unit is that
identifier (``dp.unit_of(contributions=1, identifier=...)``), and the query
starts with OpenDP's per-identifier truncation (``truncate_per_group(k)``: a
uniformly random k of each person's rows are kept), so one person changes at
most k rows whatever the data. The row bound OpenDP assumes is the policy's
public ``max_people * k``, never the data's row count: accuracy and preview do
not depend on the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from vault.dp.request import Bounds, CheckedRequest, Mode
from vault.errors import BadInput

ALPHA = 0.05
_MAX_THRESHOLD = 2**32 - 1
PERSON = "__person"  # the pseudonymous person column of a prepared frame


@dataclass(frozen=True)
class Unit:
    """The privacy unit a plan protects: a person with at most ``rows_per_person`` rows,
    in a dataset of at most ``max_people`` people (public, from the policy)."""

    rows_per_person: int = 1
    max_people: int = 2**25
    identity: str = "person"  # or "row" for a dataset stored without a person column

    @property
    def max_rows(self) -> int:
        return self.rows_per_person * self.max_people

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.identity,
            "rows_per_person": self.rows_per_person,
            "max_people": self.max_people,
            "meaning": "neighbouring datasets differ in all rows of one person; a release "
            f"keeps at most {self.rows_per_person} row(s) of each person (chosen at random)",
        }


def opendp() -> Any:
    """OpenDP's prelude namespace with the contrib features this module uses turned on.

    Built like ``opendp.prelude`` but without its ``extras.sklearn`` import, which loads
    scikit-learn and SciPy (seconds of CLI start-up) for nothing used here."""
    import types

    import opendp.accuracy
    import opendp.combinators
    import opendp.context
    import opendp.domains
    import opendp.measurements
    import opendp.measures
    import opendp.metrics
    import opendp.mod
    import opendp.transformations
    import opendp.typing
    from opendp.extras import polars as dp_polars

    dp = types.SimpleNamespace()
    for module in (opendp.mod, opendp.domains, opendp.metrics, opendp.measures, opendp.typing,
                   opendp.accuracy, opendp.context):
        names = getattr(module, "__all__", None) or [n for n in vars(module)
                                                     if not n.startswith("_")]
        for name in names:
            setattr(dp, name, getattr(module, name))
    dp.t, dp.m, dp.c = opendp.transformations, opendp.measurements, opendp.combinators
    dp.polars, dp.len = dp_polars, dp_polars.dp_len
    dp.enable_features("contrib")
    return dp


def row_bound_for(rows: int) -> int:
    """The next power of two (at least 1024): benchmarks size a ``Unit`` with it. Releases
    never do: their bounds come from the policy, not from the data."""
    return max(1024, 1 << max(0, int(rows) - 1).bit_length())


def measure_dtype(bounds: Bounds) -> pl.DataType:
    """Integral bounds mean an integer-valued attribute (exact integer sums); else Float64."""
    return pl.Int64() if bounds.integral else pl.Float64()


def prepared_schema(checked: CheckedRequest) -> pl.Schema:
    """The frame OpenDP sees, fixed by request and policy alone (so preview needs no data):
    group columns as strings (policy keys are strings), measures Int64 or Float64."""
    cols: dict[str, pl.DataType] = {PERSON: pl.String()}
    cols.update({c: pl.String() for c in checked.request.by})
    for c in checked.measure_columns:
        cols[c] = measure_dtype(checked.bounds[c])
    return pl.Schema(cols)


def prepare(lf: pl.LazyFrame, checked: CheckedRequest, schema: pl.Schema) -> pl.LazyFrame:
    """Row-wise preparation before OpenDP (a 1-stable map: it keeps the privacy unit).

    Selects the person column (a frame without one is one person per row) and the
    columns, casts group columns to strings and measures to their planned type.
    Values are made safe *by rule*, so no value can make a release fail: text is
    parsed as numbers (unparseable text counts as missing), NaN and +-inf count as
    missing, everything is clamped to the policy bounds *before* any cast (so
    ``1e30`` cannot overflow an integer), integral bounds round to integers, and a
    missing value becomes the in-bounds value nearest 0. Raises BadInput only for a
    missing or non-numeric column (the column's type, never a value).
    """
    source = lf.collect_schema()
    dataset = checked.request.dataset
    for c in checked.columns:
        if c not in source:
            raise BadInput(f"dataset '{dataset}' has no column '{c}'")
    if PERSON in source:
        person = pl.col(PERSON).cast(pl.String)
    else:  # one person per row
        person = pl.int_range(pl.len(), dtype=pl.Int64).cast(pl.String)
    exprs: list[pl.Expr] = [person.alias(PERSON)]
    exprs += [pl.col(c).cast(pl.String) for c in checked.request.by]
    for c in checked.measure_columns:
        src = source[c]
        e = pl.col(c)
        if src == pl.String:  # delimited sources store text: unparseable values count as missing
            e = e.str.strip_chars().cast(pl.Float64, strict=False)
        elif not (src.is_numeric() or src == pl.Boolean or isinstance(src, pl.Null)):
            raise BadInput(f"column '{c}' of dataset '{dataset}' is not numeric")
        b = checked.bounds[c]
        dtype = schema[c]
        fill = min(max(0.0, b.lower), b.upper)
        e = e.cast(pl.Float64, strict=False)
        e = pl.when(e.is_finite()).then(e.clip(b.lower, b.upper)).otherwise(None)
        if dtype == pl.Int64:
            e = e.round(0).cast(pl.Int64, strict=False)
            exprs.append(e.fill_null(pl.lit(round(fill), dtype=pl.Int64)).alias(c))
        else:
            exprs.append(e.fill_null(pl.lit(fill, dtype=pl.Float64)).alias(c))
    return lf.select(exprs)


def _opendp_bounds(b: Bounds, dtype: pl.DataType) -> tuple[int, int] | tuple[float, float]:
    if dtype == pl.Int64:
        return (int(b.lower), int(b.upper))
    return (float(b.lower), float(b.upper))


def keys_frame(checked: CheckedRequest, schema: pl.Schema) -> pl.DataFrame:
    """The public key set: cross product of the policy's keys, typed like the data."""
    frame: pl.DataFrame | None = None
    for c in checked.request.by:
        values = checked.keys[c]
        assert values is not None
        col = pl.DataFrame({c: [str(v) for v in values]}, schema={c: pl.String})
        frame = col if frame is None else frame.join(col, how="cross")
    assert frame is not None
    return frame


def zcdp_rho(epsilon: float, delta: float) -> float:
    """Largest rho whose (epsilon, delta)-DP cost, rho + 2 sqrt(rho ln 1/delta), is <= epsilon."""
    log_inv = math.log(1.0 / delta)
    rho = (math.sqrt(log_inv + epsilon) - math.sqrt(log_inv)) ** 2
    while rho + 2.0 * math.sqrt(rho * log_inv) > epsilon:
        rho = math.nextafter(rho, 0.0)
    return rho


@dataclass(frozen=True)
class ColumnAccuracy:
    label: str
    aggregate: str
    distribution: str
    scale: float
    accuracy: float

    def to_json(self) -> dict[str, Any]:
        return {
            "aggregate": self.aggregate,
            "distribution": self.distribution,
            "scale": self.scale,
            "accuracy": self.accuracy,
        }


@dataclass(frozen=True)
class Accuracy:
    """What an analyst can expect: each noisy statistic's +- at 1 - alpha confidence."""

    alpha: float
    mode: Mode
    columns: tuple[ColumnAccuracy, ...]
    threshold: int | None = None
    derived: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    unit: Unit = field(default_factory=Unit)

    def to_json(self) -> dict[str, Any]:
        measures: dict[str, Any] = {c.label: c.to_json() for c in self.columns}
        for label, (num, den) in self.derived.items():
            measures[label] = {"derived": f"{num} / {den}", "from": [num, den]}
        doc: dict[str, Any] = {
            "alpha": self.alpha,
            "confidence": 1.0 - self.alpha,
            "mode": self.mode,
            "measures": measures,
            "meaning": "each noisy value is within +-accuracy of the true value with the "
            "stated confidence (OpenDP summarize); means are noisy sums over noisy counts",
        }
        if self.threshold is not None:
            doc["threshold"] = self.threshold
        doc["privacy_unit"] = self.unit.to_json()
        return doc


@dataclass(frozen=True)
class Plan:
    """A resolved measurement for one request; apply it to the prepared private frame."""

    checked: CheckedRequest
    schema: pl.Schema
    measurement: Any
    accuracy: Accuracy
    with_len: bool
    sum_columns: tuple[str, ...]

    def run(self, lf: pl.LazyFrame) -> pl.DataFrame:
        """Draw the noise: release the measurement on ``lf`` (prepared to ``schema``)."""
        out: pl.DataFrame = self.measurement(prepare(lf, self.checked, self.schema)).collect()
        return out


def _loss(dp: Any, checked: CheckedRequest) -> tuple[Any, Any, float]:
    req = checked.request
    eps = float(req.epsilon)
    if req.mode == "zcdp":
        assert req.delta is not None
        rho = zcdp_rho(eps, req.delta)
        measure, d_out = dp.loss_of(rho=rho)
        return measure, d_out, rho
    if req.mode == "approx":
        measure, d_out = dp.loss_of(epsilon=eps, delta=req.delta)
        return measure, d_out, eps
    measure, d_out = dp.loss_of(epsilon=eps)
    return measure, d_out, eps


def _solve_scale(make: Callable[[float], Any], d_in: int, target: float, power: int) -> float:
    """Smallest (to a few ulps) scale whose privacy loss is <= target."""

    def loss(m: Any) -> float:
        value = m.map(d_in)
        return float(value[0] if isinstance(value, tuple) else value)

    c = loss(make(1.0))
    if c == 0.0:
        return 0.0
    scale = float((c / target) ** (1.0 / power))
    for _ in range(64):
        if loss(make(scale)) <= target:
            return scale
        scale = scale * (1.0 + 2.0**-40) + math.ulp(scale)
    raise BadInput("could not calibrate noise for this epsilon")  # pragma: no cover


def _threshold(make: Callable[[float, int], Any], scale: float, d_in: int, delta: float) -> int:
    def ok(t: int) -> bool:
        return float(make(scale, t).map(d_in)[1]) <= delta

    if not ok(_MAX_THRESHOLD):
        raise BadInput("delta is too small for DP key release at this epsilon")
    lo, hi = 1, _MAX_THRESHOLD
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def build_plan(checked: CheckedRequest, schema: pl.Schema, unit: Unit, workdir: Path) -> Plan:
    """Resolve the OpenDP measurement for ``checked`` over frames of ``schema``.

    ``unit``: the public privacy-unit facts (policy); ``workdir`` (private,
    caller-owned) receives the public key set as Parquet.
    """
    dp = opendp()
    req = checked.request
    thresholded = not checked.public_keys
    by = list(req.by)
    domain = dp.domain_of(pl.LazyFrame(schema=schema), infer=True)
    domain = dp.with_margin(domain, dp.polars.Margin(by=[], max_length=int(unit.max_rows)))
    if thresholded and by:  # a public bound on the groups: there are never more than rows
        domain = dp.with_margin(domain, dp.polars.Margin(by=by, max_groups=int(unit.max_rows)))
    metric, d_in = dp.unit_of(contributions=1, identifier=pl.col(PERSON))
    measure, _d_out, target = _loss(dp, checked)

    with_len = any(m.definition.needs_count for m in req.measures) or thresholded
    sum_columns = tuple(dict.fromkeys(m.column for m in req.measures
                                      if m.column is not None and m.definition.needs_sum))
    aggs: list[pl.Expr] = []
    if with_len:
        aggs.append(dp.len(signed=True).alias("__count"))
    for c in sum_columns:
        aggs.append(
            pl.col(c)
            .dp.sum(  # type: ignore[attr-defined]
                _opendp_bounds(checked.bounds[c], schema[c])
            )
            .alias(f"__sum_{c}")
        )
    # OpenDP's per-identifier truncation (LazyFrameQuery.truncate_per_group): a random
    # k of each person's rows
    keep = pl.int_range(pl.len()).shuffle().over(pl.col(PERSON)) < unit.rows_per_person
    empty = pl.LazyFrame(schema=schema).filter(keep)
    if not by:
        query = empty.select(aggs)
    elif thresholded:
        query = empty.group_by(by).agg(aggs)
    else:
        keys_path = workdir / "keys.parquet"
        keys_frame(checked, schema).write_parquet(keys_path)
        query = pl.scan_parquet(keys_path).join(
            empty.group_by(by).agg(aggs), how="left", on=by, nulls_equal=True
        )

    def make(scale: float, threshold: int | None = None) -> Any:
        return dp.m.make_private_lazyframe(
            domain, metric, measure, query, global_scale=scale, threshold=threshold
        )

    threshold: int | None = None
    if thresholded and by:
        assert req.delta is not None
        scale = _solve_scale(lambda s: make(s, _MAX_THRESHOLD), d_in, target, 1)
        threshold = _threshold(make, scale, d_in, req.delta)
        measurement = make(scale, threshold)
    else:
        scale = _solve_scale(make, d_in, target, 2 if req.mode == "zcdp" else 1)
        measurement = make(scale)
    if not measurement.check(d_in, _d_out):  # pragma: no cover - defensive
        raise BadInput("OpenDP rejects the calibrated measurement")
    accuracy = _accuracy(dp, measurement, checked, threshold, unit)
    return Plan(checked, schema, measurement, accuracy, with_len, sum_columns)


def _accuracy(
    dp: Any, measurement: Any, checked: CheckedRequest, threshold: int | None, unit: Unit
) -> Accuracy:
    summary = dp.summarize_polars_measurement(measurement, ALPHA)
    cols: list[ColumnAccuracy] = []
    for row in summary.iter_rows(named=True):
        name = str(row["column"])
        if name == "__count":
            label = "count"
        elif name.startswith("__sum_"):
            label = "sum_" + name.removeprefix("__sum_")
        else:  # pragma: no cover - we name every aggregate
            label = name
        cols.append(
            ColumnAccuracy(
                label=label,
                aggregate=str(row["aggregate"]),
                distribution=str(row["distribution"]),
                scale=float(row["scale"]),
                accuracy=float(row["accuracy"]),
            )
        )
    derived = {  # a derived measure (a mean): from its column's sum and the count
        m.label: (f"sum_{m.column}", "count") for m in checked.request.measures
        if m.definition.derived
    }
    return Accuracy(ALPHA, checked.request.mode, tuple(cols), threshold, derived, unit)
