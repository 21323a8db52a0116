"""Differentially private k-means segments over bounded numeric features.

Lloyd's algorithm where every step that looks at the data is an OpenDP release:

1. Start from ``k`` public centroids spread along the diagonal of the policy's
   bounding box (no data used).
2. Each of ``iterations`` rounds assigns every row to its nearest centroid (a
   row-wise map of the row and public centroids: it keeps the privacy unit, so it
   runs in Polars before OpenDP) and releases, per cluster id ``0..k-1`` (a public
   key set), a noisy count and a noisy clipped sum of each feature. The new
   centroid is noisy sum / noisy count, clipped to the box.
   A cluster whose noisy count is below the count's 95% accuracy keeps its centroid.
3. The answer is the last centroids with the last round's noisy sizes.

Privacy: each round is one ``make_private_lazyframe`` measurement at
``epsilon / iterations`` over the same person-level unit as releases (each person
keeps at most ``rows_per_person`` rows, see ``vault.dp.plan``); rounds compose
sequentially (adaptively), so the whole segmentation is ``epsilon``-DP, charged
once, up front and committed before any data is read, like any release.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import polars as pl
from sqlalchemy import Engine

from policies.errors import PolicyDenied
from policies.validate import parse_name, parse_names
from vault import budget, vocab
from vault.access import Principal
from vault.dp.plan import PERSON, Plan, build_plan, prepared_schema
from vault.dp.release import (
    ReleaseResult,
    after_charge,
    charge_and_commit,
    known_columns,
    ledger_denials,
    ledger_shape,
    load_policy,
    record_release,
    unit_of,
    with_identity,
)
from vault.dp.request import (
    Bounds,
    CheckedRequest,
    Measure,
    ReleasePolicy,
    ReleaseRequest,
    check_bounds,
    check_epsilon,
)
from vault.dp.source import DataSource, VaultSource, private_workdir
from vault.errors import BadInput
from vault.home import VaultHome

CLUSTER = "__cluster"
MAX_K = 64


@dataclass(frozen=True)
class SegmentRequest:
    dataset: str
    features: tuple[str, ...]
    k: int
    epsilon: Fraction
    iterations: int = 5

    def shape(self) -> dict[str, Any]:
        return {
            "kind": "segment",
            "features": list(self.features),
            "k": self.k,
            "iterations": self.iterations,
        }


def _validate(req: SegmentRequest, policy: ReleasePolicy) -> dict[str, Bounds]:
    parse_name(req.dataset, "dataset")
    parse_names(req.features, "column", what="feature column")
    check_epsilon(req.epsilon)
    if not req.features:
        raise BadInput("give at least one --features column")
    if len(set(req.features)) != len(req.features):
        raise BadInput("a feature is repeated")
    if not 1 <= req.k <= MAX_K:
        raise BadInput(f"k must be between 1 and {MAX_K}")
    if not 1 <= req.iterations <= 20:
        raise BadInput("iterations must be between 1 and 20")
    try:
        rules = policy.columns_for(req.dataset)
    except KeyError:
        rules = {}
    if not rules:
        raise PolicyDenied(f"the policy allows no releases from dataset '{req.dataset}'")
    bounds: dict[str, Bounds] = {}
    for f in req.features:
        rule = rules.get(f)
        if rule is None:
            raise PolicyDenied(f"column '{vocab.shown(f, rules)}' of dataset '{req.dataset}' "
                               "has no policy bounds")
        b = check_bounds(f, rule.lower, rule.upper)
        bounds[f] = Bounds(b.lower, b.upper, real=True)
    return bounds


def _round_request(req: SegmentRequest, bounds: dict[str, Bounds]) -> CheckedRequest:
    rr = ReleaseRequest(
        dataset=req.dataset,
        by=(CLUSTER,),
        measures=(Measure("count"), *(Measure("sum", f) for f in req.features)),
        epsilon=req.epsilon / req.iterations,
    )
    keys = {CLUSTER: tuple(str(i) for i in range(req.k))}
    return CheckedRequest(request=rr, keys=keys, bounds=bounds)


def initial_centroids(
    bounds: dict[str, Bounds], features: tuple[str, ...], k: int
) -> list[list[float]]:
    return [
        [bounds[f].lower + (i + 0.5) / k * (bounds[f].upper - bounds[f].lower) for f in features]
        for i in range(k)
    ]


def _assign(
    lf: pl.LazyFrame,
    features: tuple[str, ...],
    bounds: dict[str, Bounds],
    centroids: list[list[float]],
) -> pl.LazyFrame:
    clipped = []
    for f in features:
        e = pl.col(f)
        if lf.collect_schema()[f] == pl.String:
            e = e.str.strip_chars()
        e = e.cast(pl.Float64, strict=False)
        e = pl.when(e.is_finite()).then(e.clip(bounds[f].lower, bounds[f].upper)).otherwise(None)
        clipped.append(e.fill_null(min(max(0.0, bounds[f].lower), bounds[f].upper)))
    person = [pl.col(PERSON)] if PERSON in lf.collect_schema() else []
    base = lf.select([*person, *(e.alias(f) for e, f in zip(clipped, features, strict=True))])
    dists = []
    for c in centroids:
        terms = [
            ((pl.col(f) - c[j]) / (bounds[f].upper - bounds[f].lower)) ** 2
            for j, f in enumerate(features)
        ]
        dists.append(pl.sum_horizontal(terms))
    return base.with_columns(pl.concat_list(dists).list.arg_min().cast(pl.String).alias(CLUSTER))


def run_segment(
    engine: Engine,
    home: VaultHome,
    principal: Principal,
    request: SegmentRequest,
    *,
    source: DataSource | None = None,
    policy: ReleasePolicy | None = None,
    purpose: str | None = None,
) -> ReleaseResult:
    """Charge ``request.epsilon`` and release ``k`` DP segments (see the module docstring)."""
    policy = policy if policy is not None else load_policy(home)
    src = source if source is not None else VaultSource(home)
    details: dict[str, Any] = {
        **ledger_shape(request.shape(), known_columns(policy, request.dataset)),
        "epsilon": budget.format_epsilon(request.epsilon)}
    with ledger_denials(engine, principal, request.dataset, "segment", details):
        bounds = _validate(request, policy)
    checked = _round_request(request, bounds)
    dataset = request.dataset
    with private_workdir() as tmp:
        with ledger_denials(engine, principal, dataset, "segment", details):
            plan = build_plan(checked, prepared_schema(checked), unit_of(policy, dataset), tmp)
        charged = charge_and_commit(engine, home, principal, "segment", dataset,
                                    request.epsilon, None, policy, src, details,
                                    purpose=purpose)
        plan = with_identity(plan, charged.per_person)
        def work() -> tuple[ReleaseResult, int | None]:
            result = _segments(engine, src, plan, request, bounds, charged.charge)
            with engine.begin() as conn:
                return result, record_release(conn, principal, result, charged, details,
                                              purpose=purpose)

        result, seq = after_charge(engine, principal, dataset, "segment", charged, work)
    return replace(result, ledger_seq=seq)


def _segments(
    engine: Engine,
    src: DataSource,
    plan: Plan,
    request: SegmentRequest,
    bounds: dict[str, Bounds],
    charge: budget.Charge,
) -> ReleaseResult:
    """Lloyd's rounds on the decrypted rows (after the charge was committed)."""
    feats = request.features
    centroids = initial_centroids(bounds, feats, request.k)
    sizes = [0] * request.k
    count_acc = next(c for c in plan.accuracy.columns if c.label == "count")
    with (
        engine.connect().execution_options(readonly=True) as conn,
        conn.begin(),
        src.scan(conn, request.dataset, list(feats)) as lf,
    ):
        for _ in range(request.iterations):
            out = plan.run(_assign(lf, feats, bounds, centroids))
            for rec in out.iter_rows(named=True):
                j = int(rec[CLUSTER])
                n = int(rec["__count"] or 0)
                sizes[j] = max(0, n)
                if n < max(1.0, count_acc.accuracy):  # noise-dominated: keep the centroid
                    continue
                centroids[j] = [
                    min(
                        max(float(rec[f"__sum_{f}"] or 0.0) / n, bounds[f].lower),
                        bounds[f].upper,
                    )
                    for f in feats
                ]
    segments = [
        {
            "segment": j,
            "centroid": centroids[j],
            "size": sizes[j],
            "size_accuracy": count_acc.accuracy,
        }
        for j in range(request.k)
    ]
    rr = ReleaseRequest(request.dataset, (), (), request.epsilon)
    result = ReleaseResult(
        kind="segment",
        dataset=request.dataset,
        epsilon=request.epsilon,
        delta=None,
        request=rr,
        rows=[],
        accuracy=plan.accuracy,
        budget=charge.budget,
        extra={
            "segments": segments,
            "features": list(feats),
            "k": request.k,
            "iterations": request.iterations,
            "epsilon_per_iteration": float(request.epsilon / request.iterations),
        },
    )
    return result
