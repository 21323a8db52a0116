"""Benchmark: the end of a first SQLite load alone, i.e. building the blind index's lookup
index, against the layouts it could have had.

A first load appends its blind-index rows to ``vault_blind_index`` (subject first,
migration 0013) and builds ``ix_vault_blind_lookup`` once at its end (``vault.store``);
that build is the largest single step of a 1M-voter load. This times it, with the
inserts before it, on synthetic rows (random digests, nothing real) of the same shape:
``--voters`` subjects x 3 looked-up columns, as ``bench/vault.py``.

Variants, each in the same run as the current layout (the baseline row):
- ``page N``: the database's page size (a new vault's is 8192, ``vault.db.PAGE_SIZE``;
  SQLite's default, and every vault's before 2026-12-06, 4096);
- ``digest first``: the lookup index ordered ``(digest, "column", dataset_id, ...)``
  (PostgreSQL's key order since migration 0012);
- ``column codes``: ``"column"`` stored as a small integer instead of its name.

    python bench/sqlite_index_build.py [--voters 1000000] [--runs 3] [--dir /var/tmp]

Prints medians; the database file is removed after each run.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

COLUMNS = ("voter_id", "phone", "email")
BATCH = 100_000


class Variant(NamedTuple):
    name: str
    page: int = 8192  # vault.db.PAGE_SIZE (not imported: this script needs only sqlite3)
    order: str = 'dataset_id, "column", digest, subject_id, key_id'
    codes: bool = False


VARIANTS = (
    Variant("current layout (baseline)"),
    Variant("page 4096", page=4096),
    Variant("page 16384", page=16384),
    Variant("page 65536", page=65536),
    Variant("digest first", order='digest, "column", dataset_id, subject_id, key_id'),
    Variant("column codes", codes=True),
)


def run(variant: Variant, voters: int, folder: Path) -> tuple[float, float, int]:
    """(inserts s, index build s, file bytes) of one load into a fresh file."""
    path = folder / f"ix-{os.getpid()}.db"
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute(f"PRAGMA page_size={variant.page}")
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA cache_size=-65536")  # as vault.db
        kind = "INTEGER" if variant.codes else "VARCHAR(256)"
        con.execute(f'CREATE TABLE b (dataset_id INTEGER NOT NULL, "column" {kind} NOT NULL, '
                    "digest BLOB NOT NULL, subject_id BIGINT NOT NULL, key_id INTEGER NOT "
                    'NULL, PRIMARY KEY (subject_id, "column", digest, dataset_id)) WITHOUT ROWID')
        inserts = 0.0
        for first in range(0, voters, BATCH):
            rows = [(1, k if variant.codes else name, os.urandom(32), s, 3)
                    for s in range(first, min(first + BATCH, voters))
                    for k, name in enumerate(COLUMNS)]
            t = time.perf_counter()
            con.execute("BEGIN")
            con.executemany("INSERT INTO b VALUES (?, ?, ?, ?, ?)", rows)
            con.execute("COMMIT")
            inserts += time.perf_counter() - t
        con.execute("PRAGMA threads=2")  # as vault.store's build
        con.execute("PRAGMA cache_size=-16384")
        t = time.perf_counter()
        con.execute(f"CREATE INDEX ix ON b ({variant.order})")
        build = time.perf_counter() - t
        size = sum(p.stat().st_size for p in folder.glob(f"{path.name}*"))
        return inserts, build, size
    finally:
        con.close()
        for p in folder.glob(f"{path.name}*"):
            p.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voters", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()
    if args.voters < 1 or args.runs < 1:
        ap.error("--voters and --runs must be at least 1")
    times: dict[str, list[tuple[float, float, int]]] = {v.name: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for _ in range(args.runs):  # interleaved, so drift hits every variant alike
            for v in VARIANTS:
                times[v.name].append(run(v, args.voters, Path(tmp)))
    base = statistics.median(b for _, b, _ in times[VARIANTS[0].name])
    print(f"voters={args.voters:,} rows={args.voters * len(COLUMNS):,} runs={args.runs} "
          f"(medians) load at end: {os.getloadavg()[0]:.2f}")
    print(f"{'layout':28s} {'inserts':>9s} {'index':>8s} {'x baseline':>10s} {'file':>9s}")
    for v in VARIANTS:
        ins = statistics.median(i for i, _, _ in times[v.name])
        build = statistics.median(b for _, b, _ in times[v.name])
        size = statistics.median(s for _, _, s in times[v.name])
        print(f"{v.name:28s} {ins:8.2f}s {build:7.2f}s {build / base:10.2f} "
              f"{size / 1e6:7.0f}MB")


if __name__ == "__main__":
    main()
