"""DP releases end to end on a real database: answers, accuracy, refusals, ledger, files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import polars as pl
import pytest
import rfc8785
from dp_helpers import (
    ALICE,
    BOB,
    KNOWN,
    actions,
    ledger_entries,
    policy,
    source,
    vault_home,
    voter_frame,
)
from sqlalchemy import Connection, Engine

from policies.errors import BudgetExhausted, PolicyDenied
from vault import budget
from vault.dp import ReleaseRequest, SegmentRequest, preview_release, run_release, run_segment
from vault.dp.export import write_chart, write_output
from vault.dp.source import FrameSource
from vault.errors import BadInput


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    from vault.db import make_engine, migrate

    eng = make_engine(sqlite_url)
    migrate(eng)
    yield eng
    eng.dispose()


def _req(
    by: Sequence[str] = ("county", "party"),
    measures: Sequence[str] = ("count",),
    eps: str = "1",
    **kw: object,
) -> ReleaseRequest:
    return ReleaseRequest.build("voters", list(by), list(measures), Fraction(eps), **kw)  # type: ignore[arg-type]


def test_release_is_close_to_known_counts_and_ledgered(engine: Engine, tmp_path: Path) -> None:
    res = run_release(
        engine,
        vault_home(engine, tmp_path),
        ALICE,
        _req(measures=("count", "mean:age", "sum:turnout")),
        source=source(),
        policy=policy(),
    )
    doc = res.to_json()
    assert len(doc["rows"]) == len(KNOWN)
    acc = doc["accuracy"]["measures"]
    for row in doc["rows"]:
        truth = KNOWN[(row["county"], row["party"])]
        assert abs(row["count"] - truth) <= 6 * acc["count"]["accuracy"]
        assert 18 <= row["mean_age"] <= 100
        assert set(row) == {"county", "party", "count", "mean_age", "sum_turnout"}
    assert acc["mean_age"]["from"] == ["sum_age", "count"]
    entry = [e for e in ledger_entries(engine) if e["action"] == "release.dp"][-1]
    charge = [e for e in ledger_entries(engine) if e["action"] == "release.charge"][-1]
    assert entry["actor"] == charge["actor"] == "alice"
    assert entry["details"]["charge_seq"] == charge["seq"] < entry["seq"]
    assert charge["details"]["epsilon_charged"] == "1"
    assert charge["details"]["delta_charged"] == "0"
    assert (charge["details"]["analyst"], charge["details"]["dataset"]) == ("alice", "voters")
    assert entry["details"]["by"] == ["county", "party"]
    assert doc["accuracy"]["privacy_unit"]["unit"] == "row"  # the frame has no person ids
    # the ledger vouches for exactly the released bytes
    assert entry["data_hash"] == hashlib.sha256(rfc8785.dumps(res.document())).hexdigest()
    assert doc["budget"]["epsilon_spent"] == 1.0


def test_preview_reads_no_data_and_spends_nothing(sqlite_engine: Engine, tmp_path: Path) -> None:
    class NoScan(FrameSource):
        @contextmanager
        def scan(
            self, conn: Connection, dataset: str, columns: Sequence[str]
        ) -> Iterator[pl.LazyFrame]:
            raise AssertionError("preview must not read rows")
            yield pl.LazyFrame()

        def batches(
            self, conn: Connection, dataset: str, columns: Sequence[str]
        ) -> Iterator[pl.DataFrame]:
            raise AssertionError("preview must not read rows")
            yield pl.DataFrame()

    acc = preview_release(
        sqlite_engine,
        vault_home(sqlite_engine, tmp_path),
        ALICE,
        _req(eps="0.5"),
        source=NoScan({"voters": voter_frame()}),
        policy=policy(),
    )
    count = acc.to_json()["measures"]["count"]
    assert count["distribution"] == "Integer Laplace"
    assert count["scale"] == pytest.approx(2.0)  # sensitivity 1 / epsilon 0.5
    with sqlite_engine.connect() as conn:
        assert budget.show_budgets(conn) == []
    assert "release.dp" not in actions(sqlite_engine)


@pytest.mark.parametrize(
    ("request_", "error", "reason"),
    [
        (_req(by=("name",)), PolicyDenied, "may not be used to group"),
        (_req(by=("age_band",)), PolicyDenied, "may not be used to group"),
        (_req(measures=("sum:income",)), PolicyDenied, "no policy bounds"),
        (_req(measures=("mean:score",)), BadInput, "bad policy bounds"),
        (
            ReleaseRequest.build("donors", ["county"], ["count"], Fraction(1)),
            PolicyDenied,
            "no releases from dataset 'donors'",
        ),
        (_req(by=("precinct",)), BadInput, "needs --delta"),
        (_req(by=("sum_age",), measures=("sum:age",)), BadInput, "name of a measure"),
    ],
    ids=[
        "disallowed_group_column",
        "not_groupable_column",
        "measure_without_bounds",
        "bad_bounds",
        "dataset_without_rules",
        "private_keys_without_delta",
        "group_column_named_like_a_measure",
    ],
)
def test_refused_request_releases_nothing_and_is_ledgered(
    sqlite_engine: Engine,
    tmp_path: Path,
    request_: ReleaseRequest,
    error: type[Exception],
    reason: str,
) -> None:
    with pytest.raises(error, match=reason):
        run_release(
            sqlite_engine,
            vault_home(sqlite_engine, tmp_path),
            ALICE,
            request_,
            source=source(),
            policy=policy(),
        )
    entries = ledger_entries(sqlite_engine)
    assert [e["action"] for e in entries] == ["policy.denied"]
    assert entries[0]["details"]["error"] == error.__name__
    with sqlite_engine.connect() as conn:
        assert budget.show_budgets(conn) == []


def test_unknown_measure_is_bad_input() -> None:
    with pytest.raises(BadInput, match="bad measure"):
        _req(measures=("median:age",))


def test_over_budget_releases_nothing_and_ledgers_denial(engine: Engine, tmp_path: Path) -> None:
    home = vault_home(engine, tmp_path)
    pol = policy(default=Fraction(1))
    run_release(engine, home, ALICE, _req(eps="0.75"), source=source(), policy=pol)
    with pytest.raises(BudgetExhausted, match="budget exhausted"):
        run_release(engine, home, ALICE, _req(eps="0.5"), source=source(), policy=pol)
    logged = actions(engine)
    assert logged.count("release.dp") == 1
    assert logged[-1] == "budget.denied"
    with engine.connect() as conn:
        assert budget.get_budget(
            conn, "alice", "voters", default_total=Fraction(1)
        ).epsilon_spent == Fraction(3, 4)


def test_dataset_cap_stops_second_analyst(sqlite_engine: Engine, tmp_path: Path) -> None:
    home = vault_home(sqlite_engine, tmp_path)
    pol = policy(default=Fraction(1), cap=Fraction(3, 2))
    run_release(sqlite_engine, home, ALICE, _req(eps="1"), source=source(), policy=pol)
    with pytest.raises(BudgetExhausted, match="across all analysts"):
        run_release(sqlite_engine, home, BOB, _req(eps="1"), source=source(), policy=pol)


def test_errors_never_echo_row_values(sqlite_engine: Engine, tmp_path: Path) -> None:
    import datetime as dt

    frame = voter_frame().with_columns(pl.lit(dt.date(1961, 8, 4)).alias("age"))
    with pytest.raises(BadInput) as info:
        run_release(
            sqlite_engine,
            vault_home(sqlite_engine, tmp_path),
            ALICE,
            _req(measures=("mean:age",)),
            source=FrameSource({"voters": frame}),
            policy=policy(),
        )
    assert "1961" not in str(info.value)
    assert "not numeric" in str(info.value)
    with sqlite_engine.connect() as conn:  # charged before the data was read: the charge stays
        assert budget.dataset_spent(conn, "voters") == 1
    assert actions(sqlite_engine)[-2:] == ["release.charge", "release.failed"]


def test_text_columns_from_csv_are_parsed_as_numbers(sqlite_engine: Engine, tmp_path: Path) -> None:
    frame = voter_frame().with_columns(pl.col("age").cast(pl.String))  # as delimited ingest stores
    res = run_release(
        sqlite_engine,
        vault_home(sqlite_engine, tmp_path),
        ALICE,
        _req(by=("party",), measures=("count", "mean:age"), eps="2"),
        source=FrameSource({"voters": frame}),
        policy=policy(),
    )
    means = {r["party"]: r["mean_age"] for r in res.rows}
    assert means["DEM"] == pytest.approx(30, abs=2)
    assert means["UNA"] == pytest.approx(50, abs=2)


def test_key_release_with_delta_reports_threshold(sqlite_engine: Engine, tmp_path: Path) -> None:
    res = run_release(
        sqlite_engine,
        vault_home(sqlite_engine, tmp_path),
        ALICE,
        _req(by=("precinct",), delta=1e-7),
        source=source(),
        policy=policy(),
    )
    doc = res.to_json()
    assert doc["suppressed"]["threshold"] > 0
    assert {r["precinct"] for r in doc["rows"]} <= {"P0", "P1", "P2", "P3"}
    assert doc["suppressed"]["groups_released"] == len(doc["rows"])


def test_zcdp_uses_gaussian_noise(sqlite_engine: Engine, tmp_path: Path) -> None:
    res = run_release(
        sqlite_engine,
        vault_home(sqlite_engine, tmp_path),
        ALICE,
        _req(eps="1", delta=1e-6, zcdp=True),
        source=source(),
        policy=policy(),
    )
    assert "Gaussian" in res.to_json()["accuracy"]["measures"]["count"]["distribution"]


def test_output_files_and_charts(sqlite_engine: Engine, tmp_path: Path) -> None:
    res = run_release(
        sqlite_engine,
        vault_home(sqlite_engine, tmp_path),
        ALICE,
        _req(measures=("count", "mean:age")),
        source=source(),
        policy=policy(),
    )
    j = write_output(res, tmp_path / "out" / "r.json")
    assert json.loads(j.read_text())["data_hash"] == res.data_hash
    c = write_output(res, tmp_path / "r.csv")
    assert pl.read_csv(c).height == len(KNOWN)
    assert "accuracy" in json.loads((tmp_path / "r.csv.meta.json").read_text())
    p = write_output(res, tmp_path / "r.parquet")
    meta = pl.read_parquet_metadata(p)
    assert "accuracy" in json.loads(meta["civicvault.release"])
    for ext in (".png", ".svg"):
        assert write_chart(res, tmp_path / f"chart{ext}").stat().st_size > 1000
    with pytest.raises(BadInput):
        write_output(res, tmp_path / "r.xlsx")


def test_segments_find_the_two_age_groups(sqlite_engine: Engine, tmp_path: Path) -> None:
    n = 3000
    frame = pl.DataFrame({"age": [25] * n + [75] * n, "turnout": [0] * n + [1] * n})
    res = run_segment(
        sqlite_engine,
        vault_home(sqlite_engine, tmp_path),
        ALICE,
        SegmentRequest("voters", ("age", "turnout"), 2, Fraction(2)),
        source=FrameSource({"voters": frame}),
        policy=policy(),
    )
    segs = sorted(res.to_json()["segments"], key=lambda s: s["centroid"][0])
    assert [round(s["centroid"][0]) for s in segs] == pytest.approx([25, 75], abs=3)
    assert all(abs(s["size"] - n) < 300 for s in segs)
    entry = [e for e in ledger_entries(sqlite_engine) if e["action"] == "release.dp"][-1]
    assert entry["details"]["kind"] == "segment"
    write_chart(res, tmp_path / "seg.png")


def test_unknown_dataset_is_bad_input_and_charges_nothing(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    pol = policy()
    pol.rules["donors"] = pol.rules["voters"]  # the policy knows it, the vault does not
    with pytest.raises(BadInput, match="unknown dataset 'donors'"):
        run_release(
            sqlite_engine,
            vault_home(sqlite_engine, tmp_path),
            ALICE,
            ReleaseRequest.build("donors", ["county"], ["count"], Fraction(1)),
            source=source(),
            policy=pol,
        )
    assert actions(sqlite_engine) == ["policy.denied"]
    with sqlite_engine.connect() as conn:
        assert budget.show_budgets(conn) == []


def test_erased_subjects_never_contribute(sqlite_engine: Engine, tmp_path: Path) -> None:
    from dp_helpers import Rule, TinyPolicy
    from vault_helpers import store, voters

    from vault.erase import erase
    from vault.keyring import Keyring
    from vault.keys import FileKeyProvider

    home = vault_home(sqlite_engine, tmp_path)
    keyring = Keyring(FileKeyProvider.create(home.kek_path))
    store(sqlite_engine, keyring, voters(300))  # 100 per county
    with sqlite_engine.begin() as conn:
        for i in range(0, 30, 3):  # ten WAKE voters
            erase(conn, keyring, "voters", {"voter_id": f"NC{i:08d}"}, actor="steward")
    pol = TinyPolicy(
        rules={"voters": {"county": Rule("county", ("WAKE", "CHATHAM", "ORANGE"), groupable=True)}},
        default=Fraction(100),
    )
    res = run_release(  # the default source: the vault store's decrypt path
        sqlite_engine, home, ALICE, _req(by=("county",), eps="50"), policy=pol
    )
    counts = {r["county"]: r["count"] for r in res.rows}
    assert counts["WAKE"] == pytest.approx(90, abs=2)  # noise scale 0.02
    assert counts["CHATHAM"] == pytest.approx(100, abs=2)
