"""Benchmark: a statewide-shaped voter file (default 20,000,000 rows x 70 columns),
generated on the fly to disk and removed after, ingested on SQLite and PostgreSQL,
then a DP release (count + mean by county x party x age band) over every row.

Each step runs in its own process so its **peak RSS** (``ru_maxrss``) is its own:

    python bench/scale.py [--rows 20000000] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]
                          [--chunk-mb 32] [--batch-rows 100000] [--dask-workers 2] [--tmp DIR]

Steps: generate; ingest SQLite (default runner); release on it; ingest SQLite with the
batches prepared on a local Dask cluster of ``--dask-workers`` worker processes
(``vault.ingest_parallel``; 0 skips it); ingest PostgreSQL; release on it; and, with
``--steps ...,dask-pg``, ingest PostgreSQL from the Dask cluster (not in the default set).
Each vault home is removed once its steps are done, so the disk holds the file and one or two
vaults at a time. Prints one JSON line per step (wall seconds, rows/s, peak RSS MiB;
for Dask also the workers' peaks) and a Markdown table, with the load average before
and after each step (the machine may be shared). Nothing it generates is real data:
names, streets and ids are counters and small fixed pools. Goals (issue 17): peak RSS
<= 4 GiB whatever the size; the release <= 20 s and <= 4 GiB. ``--steps`` picks some of
``sqlite,dask,pg`` (all by default). The release steps also print whether the release
streamed (``vault.dp.stream``) and the peak RSS the release's own ``--json`` reports.
``--keep-sqlite DIR`` keeps the SQLite vault as a fixture and, on the next run, reruns
only its release (the 20M-row ingest takes the better part of an hour). The ingest steps
report the allocator settings they ran with (``vault.allocators``);
``CIVICVAULT_ALLOCATORS=default python bench/scale.py ...`` runs them as they come.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pgdb import ADMIN_URL, drop_pg, fresh_pg

COUNTIES = ("ALAMANCE", "BUNCOMBE", "CHATHAM", "DURHAM", "FORSYTH", "GUILFORD", "MECKLENBURG",
            "ORANGE", "PITT", "WAKE", "WAYNE", "WILSON")
PARTIES = ("DEM", "REP", "UNA", "LIB", "GRE", "CST")
BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75+")
DISTRICTS = ("cong_dist", "nc_senate_dist", "nc_house_dist", "judic_dist", "school_dist",
             "fire_dist", "ward", "township", "munic_dist", "super_court", "sanit_dist",
             "water_dist", "sewer_dist", "park_dist", "transit_dist", "library_dist")
HISTORY = tuple(f"general_{y}" for y in range(1994, 2026))  # 32 vote-history flags
BLOCK = 500_000  # rows generated and appended at a time


def frame_block(start: int, n: int) -> Any:
    """Rows ``start .. start+n-1`` of the synthetic file: 70 columns, vectorised."""
    import polars as pl

    i = pl.int_range(start, start + n, eager=True, dtype=pl.Int64)

    def pick(pool: tuple[str, ...], salt: int) -> pl.Series:
        return pl.Series(pool).gather(((i * 2_654_435_761 + salt) % 4_294_967_291) % len(pool))

    cols: dict[str, pl.Series] = {
        "ncid": "NC" + i.cast(pl.String).str.zfill(10),
        "last_name": "Lastname" + (i % 49_999).cast(pl.String),
        "first_name": "First" + (i % 997).cast(pl.String),
        "middle_name": "M" + (i % 31).cast(pl.String),
        "name_suffix_lbl": pick(("", "JR", "SR", "II", "III"), 1),
        "res_street_address": (i % 9_973).cast(pl.String) + " Counter St Apt " +
        (i % 17).cast(pl.String),
        "res_city_desc": pick(("RALEIGH", "DURHAM", "CARY", "APEX", "WILSON"), 2),
        "mail_addr1": "PO BOX " + (i % 50_021).cast(pl.String),
        "zip_code": (27_000 + i % 1_900).cast(pl.String),
        "full_phone_number": "(919) 5" + (i % 10_000_000).cast(pl.String).str.zfill(7),
        "birth_year": (1920 + i % 86).cast(pl.String),
        "birth_age": (18 + i % 86).cast(pl.String),
        "age_band": pick(BANDS, 3),
        "county_desc": pick(COUNTIES, 4),
        "county_id": ((i * 7 + 3) % 100 + 1).cast(pl.String),
        "party_cd": pick(PARTIES, 5),
        "race_code": pick(("A", "B", "I", "M", "O", "P", "U", "W"), 6),
        "ethnic_code": pick(("HL", "NL", "UN"), 7),
        "gender_code": pick(("F", "M", "U"), 8),
        "status_cd": pick(("A", "I", "R", "S"), 9),
        "precinct_abbrv": "P" + (i % 2_700).cast(pl.String),
        "registr_dt": pick(tuple(f"{y}-0{m}-1{d}" for y in (1996, 2008, 2016, 2020)
                                 for m in (1, 6, 9) for d in (0, 5)), 10),
    }
    for k, name in enumerate(DISTRICTS):
        cols[name] = (i % (13 + k * 7)).cast(pl.String)
    for k, name in enumerate(HISTORY):
        cols[name] = pick(("Y", "N", "A", ""), 20 + k)
    assert len(cols) == 70, len(cols)
    return pl.DataFrame(cols)


def write_file(path: Path, rows: int) -> float:
    """Write the file block by block (bounded memory); returns seconds."""
    t0 = time.perf_counter()
    with path.open("wb") as fh:
        for start in range(0, rows, BLOCK):
            frame_block(start, min(BLOCK, rows - start)).write_csv(fh, include_header=start == 0)
    return time.perf_counter() - t0


def write_file_apart(path: Path, rows: int) -> None:
    """``write_file`` in a process of its own, so the caller stays free of Polars (and of
    the blocks' memory)."""
    subprocess.run([sys.executable, "-c",
                    "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
                    "from bench.scale import write_file; write_file(Path(sys.argv[2]), "
                    "int(sys.argv[3]))", str(Path(__file__).resolve().parents[1]),
                    str(path), str(rows)], check=True)


def _peak_mib() -> float:
    """This process's own peak RSS (VmHWM; ``ru_maxrss`` would also count the parent's
    memory at the fork that started it: the generator's blocks)."""
    from vault.dp.release import peak_rss_kib

    return peak_rss_kib() / 1024


def child_ingest(home_dir: str, db_url: str, path: str, batch_rows: int) -> dict[str, Any]:
    from vault.access import authenticate
    from vault.db import make_engine
    from vault.home import VaultHome
    from vault.ingest import ingest_path
    from vault.setup import init_home

    home = VaultHome(root=Path(home_dir), db_url_override=db_url or None)
    init_home(home)
    engine = make_engine(home.db_url)
    who = authenticate(engine, home, None)
    t0 = time.perf_counter()
    report = ingest_path(engine, home, who, Path(path), "statewide", batch_rows=batch_rows)
    seconds = time.perf_counter() - t0
    engine.dispose()
    import resource

    from vault import allocators

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": round(seconds, 2), "rows": report.rows_added,
            "rows_per_second": round(report.rows_added / seconds), "batches": report.batches,
            "peak_rss_mib": round(_peak_mib()), "allocators": allocators.applied(),
            "identity_cache_mb": os.environ.get("CIVICVAULT_IDENTITY_CACHE_MB") or "default",
            "user_s": round(usage.ru_utime, 1), "sys_s": round(usage.ru_stime, 1),
            "minor_faults": usage.ru_minflt}


def child_ingest_dask(home_dir: str, db_url: str, path: str, batch_rows: int,
                      workers: int) -> dict[str, Any]:
    import distributed

    from vault.access import authenticate
    from vault.db import make_engine
    from vault.home import VaultHome
    from vault.ingest import plan_ingest
    from vault.ingest_parallel import store_source_on
    from vault.setup import init_home

    home = VaultHome(root=Path(home_dir), db_url_override=db_url or None)
    init_home(home)
    engine = make_engine(home.db_url)
    who = authenticate(engine, home, None)
    cluster = distributed.LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    with cluster, distributed.Client(cluster) as client:  # type: ignore[no-untyped-call]
        t0 = time.perf_counter()
        plan = plan_ingest(engine, home, who, Path(path), "statewide", batch_rows=batch_rows)
        report = store_source_on(client, engine, home, who, plan)
        seconds = time.perf_counter() - t0
        worker_peaks = client.run(_peak_mib)
    engine.dispose()
    return {"seconds": round(seconds, 2), "rows": report.rows_added,
            "rows_per_second": round(report.rows_added / seconds), "batches": report.batches,
            "peak_rss_mib": round(_peak_mib()),
            "worker_peak_rss_mib": sorted(round(v) for v in worker_peaks.values())}


def child_release(home_dir: str, db_url: str, data_rows: int = 0) -> dict[str, Any]:
    from vault import access as _access
    from vault import principals
    from vault.access import authenticate
    from vault.budget import set_budget
    from vault.db import make_engine
    from vault.dp.release import run_release
    from vault.dp.request import ReleaseRequest
    from vault.home import VaultHome

    home = VaultHome(root=Path(home_dir), db_url_override=db_url or None)
    engine = make_engine(home.db_url)
    admin = authenticate(engine, home, None)
    name = f"scale-analyst-{os.getpid()}"  # a kept vault (--keep-sqlite) gets one per run
    with _access.access(engine, home, admin, "principals.add", f"principals/{name}") as conn:
        token = principals.add_principal(conn, name, "analyst")
    who = authenticate(engine, home, token)
    with _access.access(engine, home, admin, "budget.set", f"budgets/{who.id}") as conn:
        set_budget(conn, who.id, "statewide", Fraction(1), actor=admin.id)
    request = ReleaseRequest.build("statewide", ["county_desc", "party_cd", "age_band"],
                                   ["count", "mean:birth_age"], Fraction(1, 2))
    t0 = time.perf_counter()
    result = run_release(engine, home, who, request)
    seconds = time.perf_counter() - t0
    engine.dispose()
    rows = getattr(result, "rows", None)
    resources = result.to_json().get("resources", {})
    out: dict[str, Any] = {"seconds": round(seconds, 2),
                           "groups": len(rows) if rows is not None else None,
                           "streamed": resources.get("streamed"),
                           "release_json_peak_rss_mib": resources.get("process_peak_rss_mib"),
                           "peak_rss_mib": round(_peak_mib())}
    if data_rows:
        out["rows_per_second"] = round(data_rows / seconds)
    return out


def _run_child(*args: str, **setting: str) -> dict[str, Any]:
    """Run one step in a fresh process (``setting``: environment variables for it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CIVICVAULT_HOME",
                                                            "CIVICVAULT_DB_URL")}
    env.update(setting)
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                         text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--batch-rows", type=int, default=100_000)
    ap.add_argument("--chunk-mb", type=int, default=None,
                    help="read chunk (CIVICVAULT_READ_CHUNK_MB); default: the vault's")
    ap.add_argument("--pg", default=ADMIN_URL,
                    help="PostgreSQL admin URL ('' to skip)")
    ap.add_argument("--tmp", default=None, help="folder for the file and the vault homes")
    ap.add_argument("--steps", default="sqlite,dask,pg",
                    help="which of sqlite (default runner + release), dask, pg, dask-pg "
                    "(PostgreSQL from a local Dask cluster) to run")
    ap.add_argument("--dask-workers", type=int, default=2,
                    help="worker processes of the local Dask cluster (0: skip that step)")
    ap.add_argument("--keep-sqlite", default=None, metavar="DIR",
                    help="keep the SQLite vault as DIR/sqlite-<rows> (a cacheable fixture); "
                    "when it is already there, skip generating and ingesting and rerun "
                    "only its release (e.g. --steps sqlite --keep-sqlite /var/tmp/bench/scale)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "ingest":
            result = child_ingest(rest[0], rest[1], rest[2], int(rest[3]))
        elif kind == "ingest-dask":
            result = child_ingest_dask(rest[0], rest[1], rest[2], int(rest[3]), int(rest[4]))
        else:
            result = child_release(rest[0], rest[1], int(rest[2]) if len(rest) > 2 else 0)
        print(json.dumps(result))
        return
    if args.chunk_mb:
        os.environ["CIVICVAULT_READ_CHUNK_MB"] = str(args.chunk_mb)
    results: list[tuple[str, dict[str, Any]]] = []
    steps = set(args.steps.split(","))
    kept = Path(args.keep_sqlite) / f"sqlite-{args.rows}" if args.keep_sqlite else None
    reuse = kept is not None and (kept / ".complete").exists()
    need_file = ("sqlite" in steps and not reuse) or (args.dask_workers > 0 and "dask" in steps) \
        or bool(args.pg and steps & {"pg", "dask-pg"})
    size_mib = 0.0
    with tempfile.TemporaryDirectory(prefix="cvscale-", dir=args.tmp) as t:
        tmp = Path(t)
        path = tmp / "statewide.csv"
        if need_file:
            gen_s = write_file(path, args.rows)
            size_mib = path.stat().st_size / (1 << 20)
            print(json.dumps({"step": "generate", "rows": args.rows, "seconds": round(gen_s, 1),
                              "file_mib": round(size_mib)}), flush=True)
        sqlite_home = kept if kept is not None else tmp / "home-sqlite"

        def step(name: str, *child: str) -> None:
            before = os.getloadavg()
            r = _run_child(*child)
            r["load_before_after"] = [round(before[0], 2), round(os.getloadavg()[0], 2)]
            results.append((name, r))
            print(json.dumps({"step": name, **r}), flush=True)

        if "sqlite" in steps:
            if not reuse:
                if kept is not None and kept.exists():
                    shutil.rmtree(kept)  # an unfinished fixture
                step("ingest, SQLite", "ingest", str(sqlite_home), "", str(path),
                     str(args.batch_rows))
                if kept is not None:
                    (kept / ".complete").touch()
            step("release count + mean by county x party x age band, SQLite",
                 "release", str(sqlite_home), "", str(args.rows))
            if kept is None:
                shutil.rmtree(sqlite_home)
        if args.dask_workers > 0 and "dask" in steps:
            dask_home = tmp / "home-dask"
            step(f"ingest, SQLite, {args.dask_workers} local Dask workers",
                 "ingest-dask", str(dask_home), "", str(path), str(args.batch_rows),
                 str(args.dask_workers))
            shutil.rmtree(dask_home)
        if args.pg and "pg" in steps:
            url = fresh_pg(args.pg, "cv_scale")
            try:
                step("ingest, PostgreSQL", "ingest", str(tmp / "home-pg"), url, str(path),
                     str(args.batch_rows))
                step("release count + mean by county x party x age band, PostgreSQL",
                     "release", str(tmp / "home-pg"), url, str(args.rows))
            finally:
                drop_pg(args.pg, url)
        if args.pg and args.dask_workers > 0 and "dask-pg" in steps:
            url = fresh_pg(args.pg, "cv_scale")
            try:
                step(f"ingest, PostgreSQL, {args.dask_workers} local Dask workers",
                     "ingest-dask", str(tmp / "home-dask-pg"), url, str(path),
                     str(args.batch_rows), str(args.dask_workers))
            finally:
                drop_pg(args.pg, url)
        path.unlink(missing_ok=True)
    print(f"\nrows={args.rows:,} columns=70 file={size_mib:,.0f} MiB cores={os.cpu_count()}")
    print("| step | seconds | rows/s | peak RSS MiB | load 1-min before/after |\n"
          "|---|---:|---:|---:|---|")
    for name, r in results:
        workers = r.get("worker_peak_rss_mib")
        peak = f"{r['peak_rss_mib']}" + (f" (+ workers {workers})" if workers else "")
        print(f"| {name} | {r['seconds']} | {r.get('rows_per_second', '')} | {peak} | "
              f"{r['load_before_after'][0]} / {r['load_before_after'][1]} |")


if __name__ == "__main__":
    main()
