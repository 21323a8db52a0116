"""Benchmark: a new dataset's load into a vault that holds others, with the blind index's
second index kept up to date row by row ("upkeep") against dropped and rebuilt at the
load's end ("deferred"): the choice ``vault.store._large_new_dataset`` makes.

    python bench/later_load.py [--vault 2000000] [--loads 250000,500000,666667,1000000]
                               [--runs 2] [--db sqlite,postgresql]
                               [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

For each database, a vault of ``--vault`` rows (``bench/vault.py``'s synthetic voters and
layout, dataset ``a``) is built once, untimed. Each trial starts from a copy of it (a file
copy; ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL) and loads a new dataset ``b`` of N
rows through ``vault.store.write_batches``, in a child process of its own, with the
choice forced one way; the two ways alternate, ``--runs`` times each. Printed per
database and load: the vault's subjects per load row, each way's times, the way
``vault.store``'s rule picks, and whether it is the faster one by the medians ("even" within 5%)
(``--json``: the same as JSON).

Nothing it generates is real data; every file and database it made is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text

from bench.pgdb import ADMIN_URL, drop_pg, fresh_pg
from bench.vault import store_frame, synthetic
from vault import store
from vault.db import make_engine, migrate
from vault.keyring import Keyring
from vault.keys import FileKeyProvider

WAYS = ("deferred", "upkeep")
EVEN = 0.05  # medians this close: "even" (the runs of one way move by more)


def load(url: str, kek: Path, name: str, rows: int, seed: int) -> float:
    """Seconds ``bench/vault.py``'s store takes to store ``rows`` synthetic voters as a new
    dataset (its dataset and source rows, then ``write_batches``)."""
    df = synthetic(rows, seed=seed)
    engine = make_engine(url)
    try:
        migrate(engine)
        kr = Keyring(FileKeyProvider(kek))
        t0 = time.perf_counter()
        store_frame(engine, kr, name, df)
        return time.perf_counter() - t0
    finally:
        engine.dispose()


def trial(url: str, kek: Path, rows: int, way: str) -> dict[str, Any]:
    """One timed load of dataset ``b``, the second index ``way`` (in this process), and
    the way ``vault.store``'s rule would have taken."""
    rule, asked = store._large_new_dataset, []

    def forced(conn: Any, ids: Any, source_id: int) -> bool:
        asked.append(rule(conn, ids, source_id))
        return way == "deferred"

    store._large_new_dataset = forced
    seconds = load(url, kek, "b", rows, seed=2)
    if asked != [True] and asked != [False]:
        raise RuntimeError("the load did not ask the rule once")
    return {"s": seconds, "rule": "deferred" if asked[0] else "upkeep"}


def _admin(admin_url: str, sql: str) -> None:
    eng = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as c:
            c.execute(text(sql))
    finally:
        eng.dispose()


def _child(url: str, kek: Path, rows: int, way: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--trial", url, str(kek), str(rows), way],
        capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"error: a {way} load failed: {last}")
    got: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return got


def run_db(db: str, args: argparse.Namespace, tmp: Path, kek: Path) -> list[dict[str, Any]]:
    made: list[str] = []
    try:
        if db == "sqlite":
            base = tmp / "base.db"
            load(f"sqlite:///{base}", kek, "a", args.vault, seed=1)  # closed: no WAL left
            copy = tmp / "trial.db"

            def fresh() -> str:
                for f in tmp.glob("trial.db*"):
                    f.unlink()
                shutil.copyfile(base, copy)
                return f"sqlite:///{copy}"
        else:
            base_url = fresh_pg(args.pg, prefix="cv_bench_later")
            made.append(base_url)
            load(base_url, kek, "a", args.vault, seed=1)
            server = args.pg.rsplit("/", 1)[0]

            def fresh() -> str:
                name = f"cv_bench_later_{secrets.token_hex(4)}"
                _admin(args.pg, f'CREATE DATABASE "{name}" TEMPLATE '
                                f'"{base_url.rsplit("/", 1)[1]}"')
                made.append(f"{server}/{name}")
                return made[-1]

        out = []
        for rows in args.loads:
            times: dict[str, list[float]] = {w: [] for w in WAYS}
            rules = set()
            for _ in range(args.runs):
                for way in WAYS:
                    url = fresh()
                    got = _child(url, kek, rows, way)
                    times[way].append(float(got["s"]))
                    rules.add(str(got["rule"]))
                    if db == "postgresql":
                        drop_pg(args.pg, made.pop())
            [picked] = rules  # the same vault and load each time: one answer
            med = {w: statistics.median(times[w]) for w in WAYS}
            faster = min(WAYS, key=lambda w: med[w])
            if max(med.values()) <= min(med.values()) * (1 + EVEN):
                faster = "even"
            out.append({"db": db, "vault": args.vault, "load": rows,
                        "vault_per_load": round(args.vault / rows, 2),
                        **{f"{w}_s": [round(t, 2) for t in times[w]] for w in WAYS},
                        "rule": picked, "faster": faster})
            if not args.json:
                verdict = faster if faster == "even" else "yes" if picked == faster else "NO"
                print(f"{db:<10} {args.vault:>11,} {rows:>10,} {args.vault / rows:>6.2f}x "
                      f"{' / '.join(f'{t:.2f}' for t in times['deferred']):>15} "
                      f"{' / '.join(f'{t:.2f}' for t in times['upkeep']):>15} "
                      f"{picked:>9} {verdict:>6}", flush=True)
        return out
    finally:
        for url in made:
            drop_pg(args.pg, url)


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--trial":
        _, _, url, kek_file, rows, way = sys.argv
        print(json.dumps(trial(url, Path(kek_file), int(rows), way)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vault", type=int, default=2_000_000, help="rows already in the vault")
    ap.add_argument("--loads", default="250000,500000,666667,1000000",
                    help="comma-separated sizes of the new dataset's load")
    ap.add_argument("--runs", type=int, default=2, help="loads of each way per size")
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--pg", default=ADMIN_URL,
                    help="PostgreSQL admin URL")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        args.loads = [int(x) for x in args.loads.split(",")]
    except ValueError:
        ap.error("--loads takes comma-separated whole numbers")
    if args.vault < 1 or args.runs < 1 or min(args.loads) < 1:
        ap.error("--vault, --loads and --runs must be at least 1")
    dbs = args.db.split(",")
    if not set(dbs) <= {"sqlite", "postgresql"}:
        ap.error("--db takes sqlite, postgresql or both")
    if not args.json:
        print(f"{'database':<10} {'vault rows':>11} {'load rows':>10} {'share':>7} "
              f"{'deferred s':>15} {'upkeep s':>15} {'rule':>9} {'faster':>6}")
    rows_out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cvlater-") as t:
        tmp = Path(t)
        kek = tmp / "kek.json"
        FileKeyProvider.create(kek)
        for db in dbs:
            rows_out += run_db(db, args, tmp, kek)
    if args.json:
        print(json.dumps({"rows": rows_out}, indent=1))


if __name__ == "__main__":
    main()
