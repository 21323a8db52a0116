"""The streaming release (vault.dp.stream, issue 17): same statistics as the materialising
path, at most k rows per person across batches, the privacy loss checked by OpenDP before
any data is read, and peak memory that does not grow with the rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from vault.dp.plan import PERSON, Plan, Unit, build_plan, keys_frame, prepare, prepared_schema
from vault.dp.request import Bounds, CheckedRequest, Measure, ReleaseRequest
from vault.dp.stream import KeptPerPerson, stream_plan, truncate

GROUPS = ("a", "b", "c", "d")
PARTIES = ("DEM", "REP")


def _checked(measures: tuple[Measure, ...], *, by: tuple[str, ...] = ("g", "p"),
             epsilon: str = "1", delta: float | None = None, zcdp: bool = False,
             keys: bool = True, real: bool = False) -> CheckedRequest:
    req = ReleaseRequest("t", by, measures, Fraction(epsilon), delta=delta, zcdp=zcdp)
    pools = {"g": GROUPS, "p": PARTIES}
    return CheckedRequest(req, {c: (pools[c] if keys else None) for c in by},
                          {"age": Bounds(18, 110, real=real)})


def _plan(checked: CheckedRequest, tmp_path: Path, k: int = 2) -> Plan:
    return build_plan(checked, prepared_schema(checked), Unit(k, 10**5), tmp_path)


def _frame(rows: int, *, people_rows: int = 2, seed: int = 7) -> pl.DataFrame:
    """``rows`` rows, each person with ``people_rows`` of them (spread over the file),
    some values outside the key set, missing or unparseable, ages out of bounds."""
    rng = np.random.default_rng(seed)
    person = [f"p{(i * 7919) % (rows // people_rows + 1)}" for i in range(rows)]
    g = rng.choice(np.array([*GROUPS, "zz", None], dtype=object), rows).tolist()
    age = rng.integers(0, 140, rows).astype(str).astype(object)
    age[::17] = None
    age[::29] = "n/a"
    return pl.DataFrame({PERSON: person, "g": g, "p": rng.choice(PARTIES, rows).tolist(),
                         "age": age.tolist()}, schema={PERSON: pl.String, "g": pl.String,
                                                       "p": pl.String, "age": pl.String})


def _reference(plan: Plan, frame: pl.DataFrame) -> pl.DataFrame:
    """The materialising path's statistics without the noise: every row prepared as
    ``Plan.run`` prepares it (no person has more than k rows here, so OpenDP's
    truncation keeps them all), grouped, joined onto the public key set."""
    checked = plan.checked
    by = list(checked.request.by)
    lf = prepare(frame.lazy(), checked, plan.schema)
    aggs = [pl.len().cast(pl.Int64).alias("__count"),
            pl.col("age").sum().cast(pl.Int64).alias("__sum_age")]
    got = lf.group_by(by).agg(aggs).collect()
    return (keys_frame(checked, plan.schema).join(got, on=by, how="left", nulls_equal=True)
            .fill_null(0).select([*by, "__count", "__sum_age"]))


def _sorted(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    return frame.sort(by) if by else frame


def test_streamed_statistics_equal_the_materialising_path_whatever_the_batch_size(
        tmp_path: Path) -> None:
    checked = _checked((Measure("count"), Measure("mean", "age")))
    plan = _plan(checked, tmp_path)
    streamed = stream_plan(plan)
    assert streamed is not None
    frame = _frame(5_000)
    want = _sorted(_reference(plan, frame), ["g", "p"])
    assert want.get_column("__count").sum() > 0
    for size in (5_000, 997, 64, 1):
        got = _sorted(streamed.exact(frame.iter_slices(size)), ["g", "p"])
        assert got.equals(want), size
    # and the noisy release is shaped like OpenDP's: one row per key, every statistic noisy
    out = streamed.run(frame.iter_slices(1_000))
    assert out.height == len(GROUPS) * len(PARTIES)
    assert out.select("__count", "__sum_age").dtypes == [pl.Int64, pl.Int64]


def test_no_group_by_and_an_empty_dataset_give_zero_statistics(tmp_path: Path) -> None:
    checked = _checked((Measure("count"), Measure("sum", "age")), by=())
    streamed = stream_plan(_plan(checked, tmp_path))
    assert streamed is not None
    frame = _frame(300)
    got = streamed.exact(frame.iter_slices(50))
    assert got.to_dicts() == _reference_total(streamed.plan, frame)
    assert streamed.exact([]).to_dicts() == [{"__count": 0, "__sum_age": 0}]
    assert streamed.exact([frame.clear()]).to_dicts() == [{"__count": 0, "__sum_age": 0}]


def _reference_total(plan: Plan, frame: pl.DataFrame) -> list[dict[str, int]]:
    lf = prepare(frame.lazy(), plan.checked, plan.schema)
    return lf.select(pl.len().cast(pl.Int64).alias("__count"),
                     pl.col("age").sum().cast(pl.Int64).alias("__sum_age")).collect().to_dicts()


def test_a_person_with_ten_rows_in_ten_batches_counts_k_rows(tmp_path: Path) -> None:
    """The contribution bound holds across batches, not only within one."""
    checked = _checked((Measure("count"),), by=("g",))
    streamed = stream_plan(_plan(checked, tmp_path, k=2))
    assert streamed is not None
    others = pl.DataFrame({PERSON: [f"o{i}" for i in range(30)], "g": ["a"] * 30})
    target = pl.DataFrame({PERSON: ["t"] * 10, "g": ["b"] * 10})
    batches = [pl.concat([others.slice(3 * i, 3), target.slice(i, 1)]) for i in range(10)]
    got = dict(streamed.exact(batches).select("g", "__count").iter_rows())
    assert got == {"a": 30, "b": 2, "c": 0, "d": 0}
    # the same person spread over several groups: still k rows in all
    spread = pl.DataFrame({PERSON: ["t"] * 4, "g": ["a", "b", "c", "d"]})
    got = dict(streamed.exact([spread.slice(0, 1), spread.slice(1, 3)])
               .select("g", "__count").iter_rows())
    assert sum(got.values()) == 2 and got["a"] == 1


def test_kept_per_person_survives_many_merges() -> None:
    seen = KeptPerPerson()
    rng = np.random.default_rng(1)
    truth: dict[int, int] = {}
    for _ in range(200):
        frame = pl.DataFrame({PERSON: [f"p{x}" for x in rng.integers(0, 3_000, 50)]})
        kept = truncate(frame, seen, 3)
        for p in kept.get_column(PERSON).to_list():
            truth[p] = truth.get(p, 0) + 1
    assert max(truth.values()) <= 3
    assert len(seen) >= len(truth)  # runs may hold a person twice until merged
    digests = pl.Series(list(truth)).hash(seed=0x5EED).to_numpy()
    assert seen.kept(digests).tolist() == list(truth.values())


@pytest.mark.parametrize(("kwargs", "streams"), [
    ({}, True),
    ({"zcdp": True, "delta": 1e-7}, True),
    ({"delta": 1e-7}, True),  # approximate DP over public keys: Laplace, no threshold
    ({"delta": 1e-7, "keys": False}, False),  # DP key release: OpenDP end to end
    ({"real": True}, False),  # a float sum: OpenDP end to end
])
def test_streaming_applies_only_where_its_loss_is_checked(
        kwargs: dict[str, object], streams: bool, tmp_path: Path) -> None:
    checked = _checked((Measure("count"), Measure("sum", "age")), **kwargs)  # type: ignore[arg-type]
    plan = _plan(checked, tmp_path)
    streamed = stream_plan(plan)
    assert (streamed is not None) is streams
    if streamed is None:
        return
    # OpenDP's maps at the distances one person can move each statistic (k rows, values
    # clamped to [18, 110]) add up to no more than the request's loss
    assert [s.distance for s in streamed.statistics] == [2, 2 * 110]
    losses = [s.measurement.map(s.distance) for s in streamed.statistics]
    total = sum(float(v[0] if isinstance(v, tuple) else v) for v in losses)
    target = float(checked.request.epsilon)
    if checked.request.zcdp:
        from vault.dp.plan import zcdp_rho

        target = zcdp_rho(target, 1e-7)
    assert 0.99 * target <= total <= target
    # the noise is the plan's own: same scales as the accuracy the analyst is shown
    scales = {c.label: c.scale for c in plan.accuracy.columns}
    assert [s.scale for s in streamed.statistics] == pytest.approx(
        [scales["count"], scales["sum_age"]], rel=1e-9)


def test_noise_is_added_to_every_key(tmp_path: Path) -> None:
    checked = _checked((Measure("count"),), by=("g",), epsilon="0.01")
    streamed = stream_plan(_plan(checked, tmp_path))
    assert streamed is not None
    outs = [streamed.run([pl.DataFrame({PERSON: ["x"], "g": ["a"]})]) for _ in range(5)]
    values = {tuple(o.get_column("__count").to_list()) for o in outs}
    assert len(values) > 1  # scale ~200: five identical draws would be a bug
    assert all(o.get_column("g").to_list() == list(GROUPS) for o in outs)


_RSS_SCRIPT = r"""
import json, sys
from fractions import Fraction
from collections.abc import Iterator
from pathlib import Path
from vault import access as _access, principals
from vault.access import authenticate
from vault.budget import set_budget
from vault.db import make_engine
from vault.dp.release import peak_rss_kib, preview_release, run_release
from vault.dp.request import ReleaseRequest
from vault.dp.source import VaultSource
from vault.home import VaultHome

home = VaultHome(root=Path(sys.argv[1]), db_url_override=None)
engine = make_engine(home.db_url)
admin = authenticate(engine, home, None)
name = "rss-" + sys.argv[2]
with _access.access(engine, home, admin, "principals.add", "principals/" + name) as conn:
    token = principals.add_principal(conn, name, "analyst")
who = authenticate(engine, home, token)
with _access.access(engine, home, admin, "budget.set", f"budgets/{who.id}") as conn:
    set_budget(conn, who.id, "voters", Fraction(1), actor=admin.id)
request = ReleaseRequest.build("voters", ["county_desc", "party_cd", "age_band"],
                               ["count", "mean:birth_age"], Fraction(1, 4))

class Materialising:  # the old path: no batches, so run_release cannot stream
    def __init__(self, home):
        self.inner = VaultSource(home)
    def check(self, conn, dataset):
        return self.inner.check(conn, dataset)
    def scan(self, conn, dataset, columns):
        return self.inner.scan(conn, dataset, columns)

source = Materialising(home) if sys.argv[2] == "materialise" else None
preview_release(engine, home, who, request)  # OpenDP and the plan warm, no data read
before = peak_rss_kib() / 1024  # VmHWM: this program's own peak (not the test's)
result = run_release(engine, home, who, request, source=source)
peak = peak_rss_kib() / 1024
print(json.dumps({"before_mib": before, "peak_mib": peak, "groups": len(result.rows),
                  "resources": result.to_json()["resources"]}))
"""


def _voters(path: Path, rows: int) -> Path:
    i = pl.int_range(0, rows, eager=True)
    pl.DataFrame({
        "voter_reg_num": (1_000_000 + i).cast(pl.String),
        "county_desc": pl.Series(["WAKE", "DURHAM", "ORANGE", "CHATHAM"]).gather(i % 4),
        "party_cd": pl.Series(["DEM", "REP", "UNA"]).gather((i // 4) % 3),
        "age_band": pl.Series(["18-24", "25-34", "35-44", "45-54"]).gather((i // 12) % 4),
        "birth_age": (18 + i % 80).cast(pl.String),
    }).write_csv(path)
    return path


@pytest.mark.slow
def test_release_peak_rss_stays_flat_when_the_rows_grow_4x(tmp_path: Path) -> None:
    """10 stored batches or 40: the streaming release holds one batch, so its peak (and
    what it adds to the process after the plan is built) does not follow the rows; the
    materialising path's does (measured alongside: the check has power). Peaks are each
    program's own (VmHWM), not ``ru_maxrss``, which would count this test process too."""
    from vault.access import authenticate
    from vault.db import make_engine
    from vault.home import VaultHome
    from vault.ingest import ingest_path
    from vault.setup import init_home

    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICVAULT_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    env["MALLOC_ARENA_MAX"] = "2"  # see test_ingest_streaming: the peak, not the scheduler
    got: dict[tuple[int, str], dict[str, object]] = {}
    for rows in (30_000, 120_000):
        home = VaultHome(root=tmp_path / f"h{rows}", db_url_override=None)
        init_home(home)
        engine = make_engine(home.db_url)
        who = authenticate(engine, home, None)
        report = ingest_path(engine, home, who, _voters(tmp_path / f"v{rows}.csv", rows),
                             "voters", batch_rows=3_000)
        engine.dispose()
        assert report.rows_added == rows
        for how in ("stream", "materialise"):
            out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(home.root), how],
                                 capture_output=True, text=True, env=env, check=True)
            got[rows, how] = json.loads(out.stdout.strip().splitlines()[-1])
    print("release RSS MiB:", {k: (round(v["before_mib"]), round(v["peak_mib"]))  # type: ignore[call-overload]
                               for k, v in got.items()})
    small, large = got[30_000, "stream"], got[120_000, "stream"]
    assert small["resources"] == {"streamed": True, "process_peak_rss_mib": small["resources"][  # type: ignore[index]
        "process_peak_rss_mib"]}
    assert got[30_000, "materialise"]["resources"]["streamed"] is False  # type: ignore[index]
    assert small["groups"] == large["groups"] == 100 * 6 * 7  # the policy's key sets
    peak_s, peak_l = float(small["peak_mib"]), float(large["peak_mib"])  # type: ignore[arg-type]
    add_s = peak_s - float(small["before_mib"])  # type: ignore[arg-type]
    add_l = peak_l - float(large["before_mib"])  # type: ignore[arg-type]
    assert peak_l <= 1.2 * peak_s, (peak_s, peak_l)
    # what the release itself adds after the plan is built (preview): one batch at a time,
    # plus SQLite's page cache filling towards its 64 MiB cap (the slack)
    assert add_l <= 1.25 * add_s + 16, (add_s, add_l)
    # the check has power: the materialising path's addition follows the rows
    old_s = float(got[30_000, "materialise"]["peak_mib"]) - float(  # type: ignore[arg-type]
        got[30_000, "materialise"]["before_mib"])  # type: ignore[arg-type]
    old_l = float(got[120_000, "materialise"]["peak_mib"]) - float(  # type: ignore[arg-type]
        got[120_000, "materialise"]["before_mib"])  # type: ignore[arg-type]
    assert old_l > 1.25 * old_s + 16, (old_s, old_l)


def test_read_ahead_yields_every_batch_in_order_and_reraises_a_failure() -> None:
    from vault.dp.stream import read_ahead

    frames = [pl.DataFrame({"x": [i]}) for i in range(20)]
    assert [f.item() for f in read_ahead(iter(frames))] == list(range(20))

    closed: list[bool] = []

    def failing() -> Iterator[pl.DataFrame]:
        try:
            yield frames[0]
            raise ValueError("batch 2 does not open")
        finally:
            closed.append(True)

    got = []
    with pytest.raises(ValueError, match="does not open"):
        for f in read_ahead(failing()):
            got.append(f.item())
    assert got == [0] and closed == [True]
    # a consumer that stops early stops the reader, which closes its source
    closed.clear()

    def endless() -> Iterator[pl.DataFrame]:
        try:
            while True:
                yield frames[1]
        finally:
            closed.append(True)

    for _ in read_ahead(endless()):
        break
    assert closed == [True]
