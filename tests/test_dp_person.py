"""The release promise on real databases: person-level bounds, (epsilon, delta) accounting,
charges that stick, values that cannot break a release, previews that say nothing of the data."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import polars as pl
import pytest
from dp_helpers import (
    ALICE,
    COUNTIES,
    Rule,
    TinyPolicy,
    Unit,
    actions,
    ledger_entries,
    policy,
    vault_home,
    voter_frame,
)
from dp_helpers import source as voter_source
from sqlalchemy import Connection, Engine

from policies.errors import BudgetExhausted
from vault import budget
from vault.dp import ReleaseRequest, SegmentRequest, preview_release, run_release, run_segment
from vault.dp.release import ReleaseFailed
from vault.dp.source import FrameSource
from vault.errors import BadInput


def _req(by: Sequence[str] = ("county", "party"), measures: Sequence[str] = ("count",),
         eps: str = "1", dataset: str = "voters", **kw: object) -> ReleaseRequest:
    return ReleaseRequest.build(dataset, list(by), list(measures), Fraction(eps), **kw)  # type: ignore[arg-type]


def _spent(engine: Engine, analyst: str = "alice", dataset: str = "voters") -> budget.Budget:
    with engine.connect() as conn:
        return budget.get_budget(conn, analyst, dataset, default_total=Fraction(0))


def test_delta_accumulates_and_is_refused_at_the_cap(engine: Engine, tmp_path: Path) -> None:
    home = vault_home(engine, tmp_path)
    pol = policy(delta_total=Fraction(3, 10**7))
    for _ in range(3):  # DP key release (precinct has no public keys) spends its delta
        run_release(engine, home, ALICE, _req(by=("precinct",), eps="0.1", delta=1e-7),
                    source=voter_source(), policy=pol)
    b = _spent(engine)
    assert b.delta_spent == Fraction(3, 10**7)  # exact: no float drift
    assert b.epsilon_spent == Fraction(3, 10)
    with pytest.raises(BudgetExhausted, match="delta"):
        run_release(engine, home, ALICE, _req(by=("precinct",), eps="0.1", delta=1e-7),
                    source=voter_source(), policy=pol)
    assert _spent(engine).delta_spent == Fraction(3, 10**7)  # the refusal charged nothing
    charges = [e for e in ledger_entries(engine) if e["action"] == "release.charge"]
    assert [c["details"]["delta_charged"] for c in charges] == ["0.0000001"] * 3
    assert charges[-1]["details"]["delta_spent"] == "0.0000003"
    assert actions(engine)[-1] == "budget.denied"


def test_zcdp_release_charges_its_delta(engine: Engine, tmp_path: Path) -> None:
    run_release(engine, vault_home(engine, tmp_path), ALICE, _req(delta=1e-6, zcdp=True),
                source=voter_source(), policy=policy())
    assert _spent(engine).delta_spent == Fraction(1, 10**6)


def test_delta_above_the_per_release_cap_is_refused_before_any_charge(
    sqlite_url: str, tmp_path: Path
) -> None:
    from vault.db import make_engine, migrate

    engine = make_engine(sqlite_url)
    migrate(engine)
    home = vault_home(engine, tmp_path)
    # policy cap 1e-6, but 1 / (10 n) with n = 10^7 people is 1e-8: the smaller one holds
    pol = policy(unit=Unit(max_people=10**7))
    with pytest.raises(BadInput, match="delta may be at most 1e-08"):
        run_release(engine, home, ALICE, _req(by=("precinct",), delta=1e-7),
                    source=voter_source(), policy=pol)
    assert actions(engine) == ["policy.denied"]
    with engine.connect() as conn:
        assert budget.show_budgets(conn) == []
    engine.dispose()


class _Exploding(FrameSource):
    """Fails after the charge, with data in its error text (which must not leak)."""

    @contextmanager
    def scan(self, conn: Connection, dataset: str, columns: Sequence[str]
             ) -> Iterator[pl.LazyFrame]:
        raise RuntimeError("row 17 has age 1e30 and 12345 people")
        yield pl.LazyFrame()

    def batches(self, conn: Connection, dataset: str, columns: Sequence[str]
                ) -> Iterator[pl.DataFrame]:  # the streaming release's read (vault.dp.stream)
        raise RuntimeError("row 17 has age 1e30 and 12345 people")
        yield pl.DataFrame()


def test_release_failing_after_the_charge_stays_charged_and_ledgered(
    engine: Engine, tmp_path: Path
) -> None:
    home = vault_home(engine, tmp_path)
    with pytest.raises(ReleaseFailed) as info:
        run_release(engine, home, ALICE, _req(eps="0.25"), source=_Exploding(
            {"voters": voter_frame()}), policy=policy())
    assert "12345" not in str(info.value) and "1e30" not in str(info.value)
    assert info.value.__context__ is None and info.value.__cause__ is None  # nor in-process
    assert _spent(engine).epsilon_spent == Fraction(1, 4)  # the charge is kept
    entries = ledger_entries(engine)
    assert [e["action"] for e in entries][-3:] == ["policy.allowed", "release.charge",
                                                   "release.failed"]
    failed, charge = entries[-1], entries[-2]
    assert failed["details"]["charge_seq"] == charge["seq"]
    assert failed["details"]["error"] == "RuntimeError"
    assert "12345" not in str(failed)
    assert charge["details"]["epsilon_charged"] == "0.25"
    # the same failure again is not free either: a repeatable oracle costs budget each time
    with pytest.raises(ReleaseFailed):
        run_release(engine, home, ALICE, _req(eps="0.25"), source=_Exploding(
            {"voters": voter_frame()}), policy=policy())
    assert _spent(engine).epsilon_spent == Fraction(1, 2)


@pytest.mark.parametrize("text", [False, True], ids=["float_column", "csv_text_column"])
def test_inf_huge_and_nan_values_release_normally(
    engine: Engine, tmp_path: Path, text: bool
) -> None:
    frame = voter_frame().with_columns(pl.col("age").cast(pl.Float64))
    bad = [float("inf"), float("-inf"), 1e30, -1e30, float("nan"), None]
    ages = frame.get_column("age").to_list()
    for i, v in enumerate(bad):
        ages[i * 7] = v
    col = pl.Series("age", ages, dtype=pl.Float64)
    if text:  # what a delimited file stores: the text of the value
        col = pl.Series("age", [None if v is None else str(v) for v in ages], dtype=pl.String)
    frame = frame.with_columns(col)
    res = run_release(engine, vault_home(engine, tmp_path), ALICE,
                      _req(by=("party",), measures=("count", "mean:age", "sum:age"), eps="2"),
                      source=FrameSource({"voters": frame}), policy=policy())
    assert all(18 <= r["mean_age"] <= 100 for r in res.rows)
    assert {r["party"] for r in res.rows} == {"DEM", "REP", "UNA"}
    assert actions(engine)[-1] == "release.dp"


def test_preview_and_release_accuracy_identical_at_1024_and_1025_rows(
    engine: Engine, tmp_path: Path
) -> None:
    home = vault_home(engine, tmp_path)
    docs = []
    for n in (1024, 1025):
        frame = voter_frame().head(n).with_columns(pl.col("age").cast(pl.Float64))
        src = FrameSource({"voters": frame})
        req = _req(by=("county",), measures=("count", "mean:age"), eps="0.5")
        preview = preview_release(engine, home, ALICE, req, source=src, policy=policy())
        released = run_release(engine, home, ALICE, req, source=src, policy=policy())
        docs.append((preview.to_json(), released.accuracy.to_json()))
    assert docs[0] == docs[1]
    assert docs[0][0] == docs[0][1]  # the preview is exactly the release's accuracy


def test_each_person_contributes_at_most_k_rows(engine: Engine, tmp_path: Path) -> None:
    """One person with 1,000 rows in WAKE moves WAKE's count by k, not by 1,000."""
    base = pl.DataFrame({"county": [c for c in COUNTIES for _ in range(100)]})
    pol_rules = {"county": Rule("county", COUNTIES, groupable=True)}
    base = base.with_columns(pl.format("p{}", pl.int_range(pl.len())).alias("__person"))
    heavy = pl.DataFrame({"county": ["Wake"] * 1000, "__person": ["heavy"] * 1000})
    frame = pl.concat([base, heavy])
    pol = TinyPolicy(rules={"voters": pol_rules}, unit=Unit(rows_per_person=3),
                     default=Fraction(100), cap=Fraction(100))
    res = run_release(engine, vault_home(engine, tmp_path), ALICE,
                      _req(by=("county",), eps="50"), source=FrameSource({"voters": frame}),
                      policy=pol)
    counts = {r["county"]: r["count"] for r in res.rows}
    assert counts["Wake"] == pytest.approx(103, abs=2)  # noise scale 3 / 50
    assert counts["Chatham"] == pytest.approx(100, abs=2)
    unit = res.to_json()["accuracy"]["privacy_unit"]
    assert unit["unit"] == "person" and unit["rows_per_person"] == 3
    entry = [e for e in ledger_entries(engine) if e["action"] == "release.dp"][-1]
    assert (entry["details"]["privacy_unit"], entry["details"]["rows_per_person"]) == ("person", 3)


def test_vault_wide_cap_holds_across_dataset_names(engine: Engine, tmp_path: Path) -> None:
    """The same people under a second dataset name do not come with a fresh budget."""
    home = vault_home(engine, tmp_path)
    pol = TinyPolicy(
        rules={"voters": {"county": Rule("county", COUNTIES, groupable=True)},
               "voters_copy": {"county": Rule("county", COUNTIES, groupable=True)}},
        default=Fraction(1), analyst_cap=Fraction(3, 2),
    )
    src = FrameSource({"voters": voter_frame(), "voters_copy": voter_frame()})
    run_release(engine, home, ALICE, _req(by=("county",)), source=src, policy=pol)
    with pytest.raises(BudgetExhausted, match="vault-wide"):
        run_release(engine, home, ALICE, _req(by=("county",), dataset="voters_copy"),
                    source=src, policy=pol)
    run_release(engine, home, ALICE, _req(by=("county",), eps="0.5", dataset="voters_copy"),
                source=src, policy=pol)
    with engine.connect() as conn:
        assert budget.analyst_spent(conn, "alice") == (Fraction(3, 2), Fraction(0))
    charge = [e for e in ledger_entries(engine) if e["action"] == "release.charge"][-1]
    assert charge["details"]["analyst_epsilon_spent"] == "1.5"


def test_segments_are_person_level_and_charged_before_reading(
    engine: Engine, tmp_path: Path
) -> None:
    n = 1000
    frame = pl.DataFrame({"age": [25.0] * n + [75.0] * n, "turnout": [0] * n + [1] * n,
                          "__person": [f"p{i}" for i in range(2 * n)]})
    res = run_segment(engine, vault_home(engine, tmp_path), ALICE,
                      SegmentRequest("voters", ("age", "turnout"), 2, Fraction(2)),
                      source=FrameSource({"voters": frame}), policy=policy())
    assert res.to_json()["accuracy"]["privacy_unit"]["unit"] == "person"
    logged = actions(engine)
    assert logged.index("release.charge") < logged.index("release.dp")
    charge = [e for e in ledger_entries(engine) if e["action"] == "release.charge"][-1]
    assert charge["details"]["op"] == "segment" and charge["details"]["epsilon_charged"] == "2"
