"""Releases under the shipped default policy: public keys, DP keys, bounds and budgets."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import polars as pl
import pytest
from dp_helpers import ALICE, vault_home
from sqlalchemy import Engine

from policies.errors import BudgetExhausted, PolicyDenied
from policies.load import default_policy_text, parse_policy
from vault.dp import ReleaseRequest, run_release
from vault.dp.request import ReleasePolicy
from vault.dp.source import FrameSource


@pytest.fixture
def default_policy() -> ReleasePolicy:
    policy: ReleasePolicy = parse_policy(default_policy_text())
    return policy


def _voters(n: int = 6000) -> FrameSource:
    return FrameSource(
        {
            "nc": pl.DataFrame(
                {
                    "county_id": [1 + i % 100 for i in range(n)],  # integers; keys are strings
                    "party_cd": [("DEM", "REP", "UNA")[i % 3] for i in range(n)],
                    "birth_age": [18 + i % 90 for i in range(n)],
                    "voter_reg_num": [f"{i:09d}" for i in range(n)],
                }
            )
        }
    )


def test_default_policy_public_keys_give_every_segment(
    engine: Engine, tmp_path: Path, default_policy: ReleasePolicy
) -> None:
    req = ReleaseRequest.build(
        "nc", ["county_id", "party_cd"], ["count", "mean:birth_age"], Fraction("0.5")
    )
    res = run_release(
        engine, vault_home(engine, tmp_path), ALICE, req, source=_voters(), policy=default_policy
    )
    assert len(res.rows) == 100 * 6  # every public key combination, present in the data or not
    assert {r["party_cd"] for r in res.rows} == {"DEM", "REP", "UNA", "LIB", "GRE", "CST"}
    assert all(18 <= r["mean_birth_age"] <= 110 for r in res.rows)
    # per_analyst = 1.0: a second 0.5 fits exactly, a third does not
    run_release(
        engine, vault_home(engine, tmp_path), ALICE, req, source=_voters(), policy=default_policy
    )
    with pytest.raises(BudgetExhausted):
        run_release(
            engine,
            vault_home(engine, tmp_path),
            ALICE,
            req,
            source=_voters(),
            policy=default_policy,
        )


def test_default_policy_refuses_identifier_columns(
    engine: Engine, tmp_path: Path, default_policy: ReleasePolicy
) -> None:
    req = ReleaseRequest.build("nc", ["voter_reg_num"], ["count"], Fraction("0.1"))
    # a column the policy does not declare is named by length and hash, never echoed
    with pytest.raises(PolicyDenied, match=r"column '<13 chars, sha256 [0-9a-f]{16}>' .* may "
                       r"not be used to group"):
        run_release(
            engine,
            vault_home(engine, tmp_path),
            ALICE,
            req,
            source=_voters(),
            policy=default_policy,
        )
