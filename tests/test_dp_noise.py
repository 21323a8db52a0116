"""The noise is as large as the claimed epsilon says: not smaller (no privacy), not larger.

Repeated releases of counts we know. Counts get integer (discrete) Laplace noise:
of scale b it has variance 2 e^(-1/b) / (1 - e^(-1/b))^2 (about 2 b^2 for large b);
discrete Gaussian noise of scale s has standard deviation about s. OpenDP's summarize
claims a 95% accuracy a: |error| <= a about 95% of the time. Sample sizes are picked
so each check fails by chance with probability far below 1e-6.

Each check sees 9,000 errors: 10 releases over a public key set of 900 groups (300
counties x 3 parties), each group's count known. OpenDP draws every group's noise
independently, so these are 9,000 independent draws of the same noise, exactly as
1,000 releases of 9 groups were before: same n, same tolerances, so the same chance of
a false pass or a false fail. A release of 900 groups costs a few times one of 9 (the
plan's fixed cost dominates), not 100 times.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import polars as pl
import pytest
from dp_helpers import PARTIES, Rule, TinyPolicy, voter_rules

from vault.dp.plan import Unit, build_plan, prepared_schema
from vault.dp.request import ReleaseRequest, validate

pytestmark = pytest.mark.slow

COUNTIES = tuple(f"County{i:03d}" for i in range(300))
# Known counts per (county, party): 20 to 69 rows, every group present
KNOWN = {(c, p): 20 + (7 * i + j) % 50
         for i, c in enumerate(COUNTIES) for j, p in enumerate(PARTIES)}
ROUNDS = 10  # x 900 groups = 9,000 errors per check


def _policy() -> TinyPolicy:
    rules = voter_rules()
    rules["county"] = Rule("county", keys=COUNTIES, groupable=True)
    return TinyPolicy(rules={"voters": rules})


def _rows() -> pl.DataFrame:
    counties: list[str] = []
    parties: list[str] = []
    for (c, p), n in KNOWN.items():
        counties += [c] * n
        parties += [p] * n
    return pl.DataFrame({"county": counties, "party": parties})


def _errors(request: ReleaseRequest, tmp_path: Path) -> tuple[list[float], float, float]:
    checked = validate(request, _policy())
    plan = build_plan(checked, prepared_schema(checked), Unit(max_people=100_000), tmp_path)
    path = tmp_path / "rows.parquet"
    _rows().write_parquet(path)

    errors: list[float] = []
    for _ in range(ROUNDS):
        out = plan.run(pl.scan_parquet(path))
        assert out.height == len(KNOWN)  # every group of the key set, once
        for rec in out.iter_rows(named=True):
            errors.append(float(rec["__count"]) - KNOWN[(rec["county"], rec["party"])])
    assert len(errors) == 9_000
    (count,) = [c for c in plan.accuracy.columns if c.label == "count"]
    return errors, count.scale, count.accuracy


def _std(xs: list[float]) -> float:
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


@pytest.mark.parametrize("epsilon", ["0.5", "1", "2"])
def test_laplace_count_noise_matches_epsilon(epsilon: str, tmp_path: Path) -> None:
    req = ReleaseRequest.build("voters", ["county", "party"], ["count"], Fraction(epsilon))
    errors, scale, accuracy = _errors(req, tmp_path)
    assert scale == pytest.approx(1 / float(epsilon))  # one count, sensitivity 1
    q = math.exp(-1 / scale)
    expected = math.sqrt(2 * q) / (1 - q)  # std of the discrete Laplace of this scale
    # relative s.e. of a Laplace sample std with n=9000 is ~1.2%: +-10% is > 8 s.e.
    assert 0.9 * expected <= _std(errors) <= 1.1 * expected
    assert abs(sum(errors) / len(errors)) < 6 * expected / math.sqrt(len(errors))  # unbiased
    inside = sum(abs(e) <= accuracy for e in errors) / len(errors)
    assert inside >= 0.935  # the claimed 95% accuracy holds...
    # ...and is what this discrete Laplace gives: P(|X| <= k) = 1 - 2 q^(k+1) / (1 + q)
    exact = 1 - 2 * q ** (math.floor(accuracy) + 1) / (1 + q)
    assert abs(inside - exact) < 6 * math.sqrt(exact * (1 - exact) / len(errors))


def test_gaussian_count_noise_matches_zcdp_scale(tmp_path: Path) -> None:
    req = ReleaseRequest.build(
        "voters", ["county", "party"], ["count"], Fraction(1), delta=1e-6, zcdp=True
    )
    errors, scale, accuracy = _errors(req, tmp_path)
    assert 0.93 * scale <= _std(errors) <= 1.07 * scale
    inside = sum(abs(e) <= accuracy for e in errors) / len(errors)
    assert inside >= 0.935
    # integer-valued: P(|X| <= floor(a)) ~ erf((floor(a) + 0.5) / (s sqrt 2))
    approx = math.erf((math.floor(accuracy) + 0.5) / (scale * math.sqrt(2)))
    assert abs(inside - approx) < 0.015
