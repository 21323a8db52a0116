"""Benchmark: a DP release of count + mean(turnout) by county x age band x party.

100 counties x 8 age bands x 3 parties = 2,400 public segments (policy key sets),
over synthetic voter rows (nothing here is real data). Per run it times:

* ``civicvault``: the release pipeline of ``vault.dp`` on the plaintext frame:
  plan (OpenDP measurement, noise scale, accuracy), spill to a private Parquet
  file, OpenDP over the scan, post-processing, canonical output + hash. With
  ``--full`` (needs the ledger layer) it is ``run_release`` itself on a SQLite
  vault: access check, budget spend, ledger entry included.
* ``decrypt`` / ``end_to_end`` (``--store``): the rows are first sealed into a
  SQLite vault by the vault store (not timed as part of the release); then
  ``decrypt`` times ``vault.store.read_attributes`` of the 4 columns and
  ``end_to_end`` times ``run_release`` reading through the store (access check,
  budget spend, decryption, DP, ledger entry). The goal (<= 3 s at 1M rows,
  <= 20 s at 10M) is on ``end_to_end``.
* ``opendp``: the baseline, OpenDP alone on the same plaintext frame as its
  documentation shows it: ``dp.Context.compositor`` over the in-memory LazyFrame,
  ``group_by(...).agg([dp.len(), dp.mean()]).with_keys(keys)``, ``release()``.

    python bench/release.py [--rows 1000000 ...] [--runs 3] [--full] [--store]

Prints medians (seconds) and one JSON line per size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import median_time
from policies.model import PrivacyUnit
from vault.dp.plan import Unit, build_plan, opendp, prepared_schema, row_bound_for
from vault.dp.release import ReleaseResult, canonical, rows_of
from vault.dp.request import ReleaseRequest, validate
from vault.dp.source import FrameSource

COUNTIES = tuple(f"county-{i:03d}" for i in range(100))
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75-84", "85+")
PARTIES = ("DEM", "REP", "UNA")
BY = ("county", "age_band", "party")
MEASURES = ("count", "mean:turnout")
EPSILON = Fraction(1)


@dataclass(frozen=True)
class _Rule:
    name: str
    keys: tuple[str, ...] | None = None
    lower: float | None = None
    upper: float | None = None

    @property
    def groupable(self) -> bool:
        return self.keys is not None


class BenchPolicy:
    """The slice of a policy a release reads (``vault.dp.request.ReleasePolicy``): public
    key sets only, so pure DP, no delta."""

    def columns_for(self, dataset: str) -> dict[str, _Rule]:
        return {
            "county": _Rule("county", COUNTIES),
            "age_band": _Rule("age_band", AGE_BANDS),
            "party": _Rule("party", PARTIES),
            "turnout": _Rule("turnout", None, 0, 1),
        }

    def budget_default(self, dataset: str) -> Fraction:
        return Fraction(1000)

    def dataset_cap(self, dataset: str) -> Fraction:
        return Fraction(10**6)

    def delta_default(self, dataset: str) -> Fraction:
        return Fraction(0)

    def delta_cap(self, dataset: str) -> Fraction:
        return Fraction(0)

    def delta_per_release(self, dataset: str) -> Fraction:
        return Fraction(0)

    def privacy_unit(self, dataset: str) -> PrivacyUnit:
        return PrivacyUnit()  # the default policy's: a row a person, at most 2**25 people

    def analyst_caps(self) -> tuple[Fraction | None, Fraction | None]:
        return None, None


def synthetic(rows: int, seed: int = 7) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "county": pl.Series(np.array(COUNTIES)[rng.integers(0, len(COUNTIES), rows)]),
            "age_band": pl.Series(np.array(AGE_BANDS)[rng.integers(0, len(AGE_BANDS), rows)]),
            "party": pl.Series(np.array(PARTIES)[rng.integers(0, len(PARTIES), rows)]),
            "turnout": pl.Series(rng.integers(0, 2, rows), dtype=pl.Int64),
        }
    )


def civicvault_pipeline(frame: pl.DataFrame) -> int:
    """``run_release`` minus the database: what the DP part costs."""
    request = ReleaseRequest.build("voters", BY, MEASURES, EPSILON)
    checked = validate(request, BenchPolicy())
    src = FrameSource({"voters": frame})
    with tempfile.TemporaryDirectory() as tmp:
        unit = Unit(max_people=row_bound_for(frame.height))
        plan = build_plan(checked, prepared_schema(checked), unit, Path(tmp))
        with src.scan(None, "voters", list(checked.columns)) as lf:  # type: ignore[arg-type]
            out = plan.run(lf)
    result = ReleaseResult("voters", EPSILON, None, request, rows_of(plan, out), plan.accuracy)
    hashlib.sha256(canonical(result.document())).hexdigest()  # the ledger's data_hash
    return len(result.rows)


def new_home(root: Path) -> Any:
    """A vault home: default policy installed (for access decisions), an analyst 'bench'."""
    from policies.load import default_policy_text
    from vault.db import make_engine, migrate
    from vault.home import VaultHome
    from vault.principals import add_principal

    home = VaultHome(root)
    home.root.mkdir(mode=0o700)
    home.policy_path.write_text(default_policy_text(), encoding="utf-8")
    engine = make_engine(home.db_url)
    migrate(engine)
    with engine.begin() as conn:
        add_principal(conn, "bench", "analyst")
    engine.dispose()
    return home


def civicvault_full(frame: pl.DataFrame, workdir: Path) -> Callable[[], int]:
    """``run_release`` itself on a SQLite vault (access, budget, ledger, DP) over the frame."""
    from vault.access import Principal
    from vault.db import make_engine
    from vault.dp import run_release

    home = new_home(workdir / "full")
    engine = make_engine(home.db_url)
    src = FrameSource({"voters": frame})
    request = ReleaseRequest.build("voters", BY, MEASURES, EPSILON)
    who = Principal("bench", "analyst")

    def run() -> int:
        res = run_release(engine, home, who, request, source=src, policy=BenchPolicy())
        return len(res.rows)

    return run


def opendp_alone(frame: pl.DataFrame) -> int:
    dp = opendp()
    keys = (
        pl.DataFrame({"county": COUNTIES})
        .join(pl.DataFrame({"age_band": AGE_BANDS}), how="cross")
        .join(pl.DataFrame({"party": PARTIES}), how="cross")
    )
    context = dp.Context.compositor(
        data=frame.lazy(),
        privacy_unit=dp.unit_of(contributions=1),
        privacy_loss=dp.loss_of(epsilon=float(EPSILON)),
        split_evenly_over=1,
        margins=[dp.polars.Margin(by=[], max_length=row_bound_for(frame.height))],
    )
    query = (
        context.query()
        .group_by(list(BY))
        .agg([dp.len(signed=True), pl.col("turnout").dp.mean((0, 1))])  # type: ignore[attr-defined]
        .with_keys(keys)
    )
    query.summarize(alpha=0.05)  # the accuracy civicvault reports too
    out: pl.DataFrame = query.release().collect()
    return out.height


def stored_vault(frame: pl.DataFrame, workdir: Path) -> Any:
    """Seal ``frame`` into a fresh SQLite vault (batches of 100,000 rows); returns its home."""
    import secrets

    from vault.db import make_engine
    from vault.keyring import Keyring, now
    from vault.keys import FileKeyProvider
    from vault.store import T_SOURCE, ColumnLayout, StoredColumn, dataset_id, write_batch

    layout = ColumnLayout(
        columns=(
            StoredColumn("voter_id", "direct", "id"),
            *(StoredColumn(c, "attribute") for c in (*BY, "turnout")),
        ),
        identity="voter_id",
    )
    home = new_home(workdir / "vault")
    keyring = Keyring(FileKeyProvider.create(home.kek_path))
    engine = make_engine(home.db_url)
    ids = pl.Series(np.arange(frame.height)).cast(pl.Utf8).str.zfill(9)
    rows = frame.with_columns(("B" + ids).alias("voter_id"))
    batch = 100_000
    with engine.begin() as conn:
        ds = dataset_id(conn, "voters", create_with=("bench", layout.to_json()))
        src = conn.execute(
            T_SOURCE.insert()
            .values(
                dataset_id=ds,
                content_hash=secrets.token_hex(16),
                rows=rows.height,
                batches=-(-rows.height // batch),
                created=now(),
            )
            .returning(T_SOURCE.c.id)
        ).scalar_one()
    for b in range(-(-rows.height // batch)):
        with engine.begin() as conn:
            write_batch(
                conn,
                keyring,
                ds_id=ds,
                dataset="voters",
                source_id=int(src),
                batch_index=b,
                frame=rows.slice(b * batch, batch),
                layout=layout,
                actor="bench",
            )
    engine.dispose()
    return home


def decrypt_hook(frame: pl.DataFrame, workdir: Path) -> tuple[Callable[[], int], Callable[[], int]]:
    """The vault store's columnar decryption, alone and inside ``run_release``.

    Returns (decrypt only: ``vault.store.read_attributes``, end to end: ``run_release``
    reading through ``VaultSource``: access, budget, decrypt, DP, ledger).
    """
    from vault.access import Principal
    from vault.db import make_engine
    from vault.dp import run_release
    from vault.keyring import Keyring
    from vault.keys import provider_for
    from vault.store import read_attributes

    home = stored_vault(frame, workdir)
    engine = make_engine(home.db_url)
    request = ReleaseRequest.build("voters", BY, MEASURES, EPSILON)

    def decrypt() -> int:
        with engine.connect() as conn:
            return read_attributes(
                conn, Keyring(provider_for(home)), "voters", [*BY, "turnout"]
            ).height

    def end_to_end() -> int:
        res = run_release(
            engine, home, Principal("bench", "analyst"), request, policy=BenchPolicy()
        )
        return len(res.rows)

    return decrypt, end_to_end


def bench_size(rows: int, runs: int, *, full: bool, store: bool) -> dict[str, Any]:
    frame = synthetic(rows)
    assert civicvault_pipeline(frame) == 2400
    report: dict[str, Any] = {"rows": rows, "segments": 2400, "runs": runs}
    with tempfile.TemporaryDirectory() as tmp:
        report["civicvault_s"] = round(median_time(lambda: civicvault_pipeline(frame), runs), 3)
        if full:
            report["civicvault_full_s"] = round(
                median_time(civicvault_full(frame, Path(tmp)), runs), 3
            )
        report["decrypt_s"] = report["end_to_end_s"] = None
        if store:
            t0 = time.perf_counter()
            decrypt, end_to_end = decrypt_hook(frame, Path(tmp))
            report["seal_store_s"] = round(time.perf_counter() - t0, 1)
            report["decrypt_s"] = round(median_time(decrypt, runs), 3)
            report["end_to_end_s"] = round(median_time(end_to_end, runs), 3)
        report["opendp_alone_s"] = round(median_time(lambda: opendp_alone(frame), runs), 3)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rows", type=int, action="append", help="rows (repeatable)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="time run_release on a SQLite vault")
    ap.add_argument("--store", action="store_true", help="time the store's decryption hook")
    args = ap.parse_args()
    opendp()
    for rows in args.rows or [1_000_000]:
        report = bench_size(rows, args.runs, full=args.full, store=args.store)
        full_part = f" (full run_release {report['civicvault_full_s']:.2f} s)" if args.full else ""
        stored = (
            f"  decrypt {report['decrypt_s']:.2f} s  end-to-end {report['end_to_end_s']:.2f} s"
            if args.store
            else ""
        )
        print(
            f"{rows:>11,} rows  civicvault DP {report['civicvault_s']:.2f} s{full_part}{stored}"
            f"  OpenDP alone {report['opendp_alone_s']:.2f} s"
        )
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
