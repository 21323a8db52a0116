"""Benchmark: link a voter file to its vote history, then a linked turnout release.

Two steps, so the expensive vault is built once and timed many times:

``fixture``: synthetic data only (nothing real): ``--voters`` voters (ncid, party,
age band, person id) and ``--rows-per-voter`` history rows each on average (ncid,
election, method), sealed into a vault under ``/var/tmp/bench/link/`` (or
``$CV_BENCH_LINK_DIR``) through the pipelined bulk write path
(``vault.store.write_batches``: COPY on PostgreSQL). Reused when it exists
(``READY.json`` marks a finished fixture).

``run``: on a copy-free reuse of that vault, each repeat (medians printed):

* ``baseline``: a bare SQL join of the two datasets' blind-index columns (a count of
  right rows whose blind digest equals a left one: what the database alone costs);
* ``link``: ``vault.linkage.build_link`` from scratch (the link's rows are dropped
  first, untimed): open one record per distinct key, HMAC under the link key, one
  ``INSERT ... SELECT`` of the members, pair counts and the pairs hash, ledger;
* ``release``: ``run_linked_release`` of turnout by party x age band in one election
  (charge on both datasets, decrypt the needed columns, join, OpenDP, ledger).

Each step runs in its own child process, so its peak resident memory (``ru_maxrss``)
is its own. The output is one JSON line per step and a summary.

    python bench/link.py fixture --voters 1000000          # once (minutes)
    python bench/link.py run --voters 1000000 --repeat 3   # timed

``--db postgresql`` puts the vault in a kept database ``cv_bench_link_<voters>`` on
127.0.0.1:5432 (``--pg-admin-url``).

Goal (issue 15): 1M voters x 10M history rows, link <= 30 s, release <= 10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE = Path(os.environ.get("CV_BENCH_LINK_DIR", "/var/tmp/bench/link"))
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
POLICY = """
[datasets.nc_history]
columns = ["election_desc", "voting_method"]

[datasets.nc_history.group_by]
election_desc = ["11/06/2018 GENERAL", "05/08/2018 PRIMARY"]
"""


def fixture_dir(args: argparse.Namespace) -> Path:
    return BASE / f"{args.db}-{args.voters}x{args.rows_per_voter}"


def pg_url(args: argparse.Namespace) -> str:
    return str(args.pg_admin_url).rsplit("/", 1)[0] + f"/cv_bench_link_{args.voters}"


def _home(args: argparse.Namespace) -> Any:
    from vault.home import VaultHome

    url = (pg_url(args).replace("postgresql+psycopg://", "postgresql://")
           if args.db == "postgresql" else None)
    return VaultHome(fixture_dir(args) / "home", db_url_override=url)


def build_fixture(args: argparse.Namespace) -> None:
    """Build the vault once (skipped when READY.json is there)."""
    import numpy as np
    import polars as pl
    from sqlalchemy import create_engine, text

    from policies.load import default_policy_text
    from vault.db import make_engine
    from vault.identity import pseudonyms
    from vault.keyring import Keyring, now
    from vault.keys import provider_for
    from vault.principals import add_principal
    from vault.setup import init_home
    from vault.store import (
        T_SOURCE,
        ColumnLayout,
        IdentityCache,
        StoredColumn,
        dataset_id,
        write_batches,
    )

    where = fixture_dir(args)
    if (where / "READY.json").exists():
        print(f"fixture ready: {where}", file=sys.stderr)
        return
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True, mode=0o700)
    if args.db == "postgresql":
        eng = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
        name = pg_url(args).rsplit("/", 1)[1]
        with eng.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            c.execute(text(f'CREATE DATABASE "{name}"'))
        eng.dispose()
    home = _home(args)
    init_home(home)
    home.policy_path.write_text(default_policy_text().replace(
        "analyst_cap = 3.0", "analyst_cap = 1000000.0") + POLICY)
    engine = make_engine(home.db_url)
    keyring = Keyring(provider_for(home))
    person_key = secrets.token_bytes(32)
    voters_layout = ColumnLayout(columns=(
        StoredColumn("ncid", "direct", "id"), StoredColumn("party_cd", "attribute"),
        StoredColumn("age_band", "attribute"), StoredColumn("__person", "attribute")),
        identity="ncid")
    history_layout = ColumnLayout(columns=(
        StoredColumn("ncid", "direct", "id"), StoredColumn("election_desc", "attribute"),
        StoredColumn("voting_method", "attribute"), StoredColumn("__person", "attribute")))
    rng = np.random.default_rng(7)
    n = args.voters
    ids = pl.Series("ncid", [f"BB{i:08d}" for i in range(n)])
    parties = np.array(["DEM", "REP", "UNA"])
    bands = np.array(["18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75+"])
    per = rng.poisson(args.rows_per_voter, n)
    elections = np.array(["11/06/2018 GENERAL", "05/08/2018 PRIMARY"])
    t0 = time.perf_counter()

    def store(name: str, layout: ColumnLayout, frame: pl.DataFrame) -> None:
        with engine.begin() as conn:
            ds = dataset_id(conn, name, create_with=("bench", layout.to_json()))
            src = int(conn.execute(T_SOURCE.insert().values(
                dataset_id=ds, content_hash=secrets.token_hex(16), rows=frame.height,
                batches=1, created=now()).returning(T_SOURCE.c.id)).scalar_one())
        batches = ((b, frame.slice(start, args.batch))
                   for b, start in enumerate(range(0, frame.height, args.batch)))
        for _ in write_batches(engine.begin, keyring, ds_id=ds, dataset=name, source_id=src,
                               batches=batches, layout=layout, actor="bench",
                               cache=IdentityCache()):
            pass

    store("nc_voters", voters_layout, pl.DataFrame({
        "ncid": ids, "party_cd": parties[rng.integers(0, 3, n)],
        "age_band": bands[rng.integers(0, 7, n)],
        "__person": pseudonyms(person_key, ("VOTER_ID:" + ids).alias("p"))}))
    hist = pl.DataFrame({"ncid": ids}).with_columns(per=pl.Series(per)).filter(
        pl.col("per") > 0).select(pl.col("ncid").repeat_by("per")).explode("ncid")
    hist = hist.with_columns(
        election_desc=pl.Series(elections[rng.integers(0, 2, hist.height)]),
        voting_method=pl.lit("IN-PERSON"), __person=pl.lit("x"))
    store("nc_history", history_layout, hist)
    with engine.begin() as conn:
        for k in range(args.analysts):
            add_principal(conn, f"ana{k}", "analyst")
    (where / "READY.json").write_text(json.dumps({
        "voters": n, "history_rows": hist.height, "db": args.db, "db_url": home.db_url,
        "fixture_s": round(time.perf_counter() - t0, 1)}))
    print(f"fixture built in {time.perf_counter() - t0:.0f} s: {where}", file=sys.stderr)


def _peak_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def one_step(args: argparse.Namespace) -> None:
    """One timed step in this (child) process; prints one JSON line."""
    from sqlalchemy import delete, select, text

    from vault.access import Principal, installed_policy
    from vault.db import make_engine
    from vault.dp.linked import LinkedRequest, run_linked_release
    from vault.keyring import Keyring
    from vault.keys import provider_for
    from vault.link_tables import T_CUT, T_KEYS, T_LINK, T_MEMBER
    from vault.linkage import build_link, dataset_ids

    home = _home(args)
    engine = make_engine(home.db_url)
    keyring = Keyring(provider_for(home))
    rule = installed_policy(home).links["nc_voter_history"]
    out: dict[str, Any] = {"step": args.step, "db": engine.dialect.name}
    if args.step == "baseline":
        with engine.connect() as conn:
            ids = dataset_ids(conn, ["nc_voters", "nc_history"])
            t0 = time.perf_counter()
            n = conn.execute(text(
                "SELECT count(*) FROM vault_blind_index r JOIN vault_blind_index l "
                "ON l.digest = r.digest AND l.dataset_id = :l AND l.\"column\" = 'ncid' "
                "WHERE r.dataset_id = :r AND r.\"column\" = 'ncid'"),
                {"l": ids["nc_voters"], "r": ids["nc_history"]}).scalar_one()
            out["seconds"] = time.perf_counter() - t0
            out["rows"] = int(n)
            # (per-dataset blind keys differ, so this equi-join finds ~nothing: it is the
            # cost of the database's join over both index columns, not a link)
    elif args.step == "link":
        with engine.begin() as conn:  # untimed: start from no link at all
            row = conn.execute(select(T_LINK.c.id).where(T_LINK.c.name == rule.name)).first()
            if row is not None:  # the bench vault has this one link: empty the table
                # whole (SQLite's truncate path; a WHERE deletes 11M rows one by one)
                conn.execute(delete(T_MEMBER))
                conn.execute(delete(T_KEYS))
                conn.execute(delete(T_CUT))
                conn.execute(delete(T_LINK).where(T_LINK.c.id == int(row.id)))
        t0 = time.perf_counter()
        with engine.begin() as conn:
            stats = build_link(conn, keyring, rule, "bench")
        out["seconds"] = time.perf_counter() - t0
        out["pairs"] = stats.pairs
    else:
        analyst = f"ana{args.run_index % args.analysts}"
        t0 = time.perf_counter()
        result = run_linked_release(engine, home, Principal(analyst, "analyst"), LinkedRequest(
            "nc_voters", "nc_history", ("party_cd", "age_band"), ("turnout",), Fraction(1, 100),
            where=(("election_desc", ("11/06/2018 GENERAL",)),)))
        out["seconds"] = time.perf_counter() - t0
        out["groups"] = len(result.rows)
    out["seconds"] = round(out["seconds"], 2)
    out["peak_rss_mb"] = _peak_mb()
    print(json.dumps(out))


def run(args: argparse.Namespace) -> None:
    ready = fixture_dir(args) / "READY.json"
    if not ready.exists():
        sys.exit(f"no fixture at {ready.parent}: run `python bench/link.py fixture "
                 f"--voters {args.voters} --db {args.db}` first")
    info = json.loads(ready.read_text())
    results: dict[str, list[dict[str, Any]]] = {"baseline": [], "link": [], "release": []}
    base = [sys.executable, __file__, "step", "--voters", str(args.voters),
            "--rows-per-voter", str(args.rows_per_voter), "--db", args.db,
            "--pg-admin-url", args.pg_admin_url, "--analysts", str(args.analysts)]
    for i in range(args.repeat):
        for step in ("baseline", "link", "release"):
            if step not in args.steps:
                continue
            done = subprocess.run([*base, "--step", step, "--run-index", str(i)],
                                  check=True, capture_output=True, text=True)
            line = json.loads(done.stdout.strip().splitlines()[-1])
            print(json.dumps({"run": i, **line}), flush=True)
            results[step].append(line)
    summary = {"voters": info["voters"], "history_rows": info["history_rows"], "db": args.db,
               "repeat": args.repeat, "loadavg_1m": round(os.getloadavg()[0], 1)}
    for step, lines in results.items():
        if lines:
            summary[f"{step}_median_s"] = round(statistics.median(
                x["seconds"] for x in lines), 2)
            summary[f"{step}_peak_rss_mb"] = max(x["peak_rss_mb"] for x in lines)
    print(json.dumps(summary))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["fixture", "run", "step"])
    ap.add_argument("--voters", type=int, default=1_000_000)
    ap.add_argument("--rows-per-voter", type=int, default=10)
    ap.add_argument("--batch", type=int, default=250_000)
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--pg-admin-url", default=PG_ADMIN)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", default="baseline,link,release")
    ap.add_argument("--analysts", type=int, default=4)
    ap.add_argument("--step", default="link")
    ap.add_argument("--run-index", type=int, default=0)
    ap.add_argument("--profile", default="", help="step only: write cProfile stats here")
    args = ap.parse_args()
    args.steps = args.steps.split(",")
    if args.what == "step" and args.profile:  # where the time goes (cProfile, to a file)
        import cProfile

        cProfile.runctx("one_step(args)", globals(), {"args": args, "one_step": one_step},
                        args.profile)
        return
    if args.what == "fixture":
        build_fixture(args)
    elif args.what == "run":
        run(args)
    else:
        one_step(args)


if __name__ == "__main__":
    main()
