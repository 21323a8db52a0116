"""Benchmark: seal + store 1,000,000 voter rows (12 columns, 7 direct identifiers) and
decrypt the attributes of all rows for a release, on SQLite and PostgreSQL.

Baseline in the same run (the floor any encrypted store pays): polars read + one
AES-GCM per row + one HMAC per row + one sqlite3 executemany of the results; and
the same rows into PostgreSQL with one COPY, so each database is also compared
with a baseline on itself.

    python bench/vault.py [--rows 1000000] [--runs 3] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]
                          [--pg-foreign-keys] [--sqlite-foreign-keys] [--python-loops] [--json]

``--sqlite-foreign-keys`` / ``--pg-foreign-keys``: also time the store with the bulk
tables' per-row foreign keys put back (as before migrations 0014 / 0005), in the same run.

``--python-loops``: the vault's own Python loops for the batch cryptography instead of
``vault/_sealc.c`` (what an install without a C compiler runs; the figures say which).

It runs ``--runs`` rounds; a round times each measurement once, in the table's order, so
a machine that slows down during the run slows a round's baselines and loads alike.
Prints a table of medians: wall seconds, and the CPU seconds of this process (every
thread; PostgreSQL's server not included); for the loads, the ratio of the medians to the
SQLite baseline's ("x baseline", the issue's measure), the median of the rounds' own ratios
("by round"), and the ratio to the same database's baseline; then every round's wall
seconds. ``--json`` gives the same as JSON. A machine whose cores slow down stretches the
one-threaded baseline's wall more than the store's, which runs on every core and waits
on the disk: the CPU ratio beside the wall ratio tells the two apart. Each load goes
into a fresh database, and the one before it is removed between runs, untimed (the decrypt
step reads the last): with them kept, a third PostgreSQL load in one process ran 1.3-2 s
slower than the first two. Nothing it generates is real data.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# vault before Polars, as the CLI and the flows import it: its allocator settings
# (vault.allocators) apply only to a Polars loaded after them
import vault  # noqa: I001

import numpy as np
import polars as pl
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, create_engine, text

from bench.pgdb import ADMIN_URL, drop_pg, fresh_pg
from bench.timing import median_time, timed
from vault.db import make_engine, migrate
from vault.keyring import Keyring, now
from vault.keys import FileKeyProvider
from vault.store import (
    T_SOURCE,
    ColumnLayout,
    IdentityCache,
    StoredColumn,
    dataset_id,
    read_attributes,
    write_batches,
)

DIRECT = ["voter_id", "first_name", "last_name", "street", "phone", "email", "birth_date"]
ATTRS = ["county", "party", "gender", "age_band", "precinct"]
LAYOUT = ColumnLayout(
    columns=(
        StoredColumn("voter_id", "direct", "id"),
        StoredColumn("first_name", "direct"),
        StoredColumn("last_name", "direct"),
        StoredColumn("street", "direct"),
        StoredColumn("phone", "direct", "phone"),
        StoredColumn("email", "direct", "email"),
        StoredColumn("birth_date", "direct"),
        *(StoredColumn(a, "attribute") for a in ATTRS),
    ),
    identity="voter_id",
)
BATCH = 100_000


def synthetic(n: int, seed: int = 7) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    first = np.array(["JAMES", "MARY", "ROBERT", "PATRICIA", "JOHN", "JENNIFER", "MICHAEL",
                      "LINDA", "DAVID", "ELIZABETH", "MARIA", "JOSE"])
    last = np.array(["SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER",
                     "DAVIS", "RODRIGUEZ", "MARTINEZ", "HERNANDEZ", "LOPEZ"])
    ids = pl.Series(np.arange(n)).cast(pl.Utf8).str.zfill(9)
    return pl.DataFrame({
        "voter_id": "BN" + ids,
        "first_name": first[rng.integers(0, len(first), n)],
        "last_name": last[rng.integers(0, len(last), n)],
        "street": pl.Series(rng.integers(1, 9999, n)).cast(pl.Utf8) + " MAIN ST",
        "phone": "919" + pl.Series(rng.integers(0, 10**7, n)).cast(pl.Utf8).str.zfill(7),
        "email": "v" + ids + "@example.org",
        "birth_date": pl.Series(rng.integers(1930, 2006, n)).cast(pl.Utf8) + "-01-15",
        "county": pl.Series(rng.integers(1, 101, n)).cast(pl.Utf8),
        "party": np.array(["DEM", "REP", "UNA", "LIB", "GRE", "CST"])[rng.integers(0, 6, n)],
        "gender": np.array(["F", "M", "U"])[rng.integers(0, 3, n)],
        "age_band": np.array(["18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75+"])[
            rng.integers(0, 7, n)],
        "precinct": pl.Series(rng.integers(1, 900, n)).cast(pl.Utf8),
    })


def _baseline_rows(parquet: Path) -> list[tuple[int, bytes, bytes]]:
    df = pl.read_parquet(parquet)
    key, mac_key = AESGCM(os.urandom(32)), os.urandom(32)
    rows = []
    nonces = os.urandom(12 * df.height)
    for i, row in enumerate(df.iter_rows()):
        pt = "\x1f".join(row).encode()
        nonce = nonces[i * 12:(i + 1) * 12]
        rows.append((i, nonce + key.encrypt(nonce, pt, None),
                     hmac.digest(mac_key, row[0].encode(), hashlib.sha256)))
    return rows


def baseline(parquet: Path, db: Path) -> None:
    """The issue's bare baseline: polars read, AES-GCM + HMAC per row, sqlite3 executemany."""
    rows = _baseline_rows(parquet)
    if db.exists():
        db.unlink()
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, ct BLOB, mac BLOB)")
    with con:
        con.executemany("INSERT INTO r VALUES (?,?,?)", rows)
    con.close()


def baseline_pg(parquet: Path, admin_url: str, made: list[str] | None = None) -> None:
    """The same on PostgreSQL: the rows go in with one COPY (psycopg's C row writer), into
    a fresh database, as the store's runs do. With ``made``, the database is left for the
    caller to drop (untimed, as the store's are); else it is dropped here."""
    url = fresh_pg(admin_url)
    try:
        rows = _baseline_rows(parquet)
        eng = create_engine(url)
        with eng.begin() as conn:
            conn.execute(text("CREATE TABLE r (id bigint PRIMARY KEY, ct bytea, mac bytea)"))
            raw: Any = conn.connection.dbapi_connection
            with raw.cursor() as cur, cur.copy("COPY r (id, ct, mac) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
        eng.dispose()
    finally:
        if made is None:
            drop_pg(admin_url, url)
        else:
            made.append(url)


def _restore_row_foreign_keys(engine: Engine) -> None:
    """Put back the per-row foreign keys migrations 0005 (PostgreSQL) and 0014 (SQLite)
    dropped, for the comparison."""
    import importlib

    if engine.dialect.name == "sqlite":  # 0014's downgrade rebuilds the (empty) tables
        from alembic import command

        from vault.db import _alembic_config

        command.downgrade(_alembic_config(engine), "0013")
        return

    m0005 = importlib.import_module("vault.migrations.versions.0005_bulk_tables_no_row_fk")
    with engine.begin() as conn:
        for table, column, parent in m0005.ROW_FOREIGN_KEYS:
            conn.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT {table}_{column}_fkey "
                              f"FOREIGN KEY ({column}) REFERENCES {parent} (id)"))


def store_frame(engine: Engine, kr: Keyring, name: str, df: pl.DataFrame) -> None:
    """Store ``df`` as dataset ``name`` (created here, with its source row) through the
    pipelined write path, in batches of ``BATCH`` rows."""
    with engine.begin() as conn:
        ds = dataset_id(conn, name, create_with=(name, LAYOUT.to_json()))
        src = conn.execute(T_SOURCE.insert().values(
            dataset_id=ds, content_hash=secrets.token_hex(16), rows=df.height,
            batches=-(-df.height // BATCH), created=now()).returning(T_SOURCE.c.id)
        ).scalar_one()
    frames = ((b, df.slice(b * BATCH, BATCH)) for b in range(-(-df.height // BATCH)))
    # as vault.ingest.ingest_path does: sealing batch k+1 overlaps writing batch k
    for _ in write_batches(engine.begin, kr, ds_id=ds, dataset=name, source_id=int(src),
                           batches=frames, layout=LAYOUT, actor="bench",
                           cache=IdentityCache()):
        pass


def civicvault_store(parquet: Path, url: str, kek: Path,
                     row_foreign_keys: bool = False) -> Callable[[], None]:
    def run() -> None:
        engine = make_engine(url)
        migrate(engine)
        if row_foreign_keys:
            _restore_row_foreign_keys(engine)
        store_frame(engine, Keyring(FileKeyProvider(kek)), "bench", pl.read_parquet(parquet))
        engine.dispose()
    return run


def fresh_sqlite(tmp: Path) -> str:
    db = tmp / f"v{secrets.token_hex(3)}.db"
    return f"sqlite:///{db}"


def write_fixture(tmp: Path, rows: int) -> tuple[Path, Path]:
    """The synthetic voter file as Parquet and a fresh file KEK, both under tmp."""
    parquet = tmp / "voters.parquet"
    synthetic(rows).write_parquet(parquet)
    kek = tmp / "kek.json"
    FileKeyProvider.create(kek)
    return parquet, kek


def _rounds(args: argparse.Namespace, parquet: Path, kek: Path, tmp: Path,
            urls: list[str], pg_urls: list[str]) -> dict[str, list[tuple[float, float]]]:
    """Each measurement's wall and CPU seconds, one of each per round: a round runs every
    measurement once, in the table's order, so a machine that slows down during the run
    slows a round's baseline and its loads alike (all the baselines first, then all the
    loads, had put 5.07 and 6.30 s baselines beside the same loads)."""
    times: dict[str, list[tuple[float, float]]] = {}

    def note(name: str, took: tuple[float, float]) -> None:
        times.setdefault(name, []).append(took)

    base_dbs: list[str] = []  # the PostgreSQL baseline's, dropped untimed as the store's are
    for r in range(args.runs):
        last = r == args.runs - 1
        note(BASE, timed(lambda: baseline(parquet, tmp / "base.db")))
        url = fresh_sqlite(tmp)
        urls.append(url)
        note(SQLITE, timed(civicvault_store(parquet, url, kek)))
        if not last:  # each run's vault goes before the next run; the last run's stays
            old = Path(url.split("///", 1)[1])  # (the decrypt step reads it)
            for f in (old, old.with_name(old.name + "-wal"), old.with_name(old.name + "-shm")):
                f.unlink(missing_ok=True)
        if args.sqlite_foreign_keys:
            note(SQLITE_FK, timed(civicvault_store(parquet, fresh_sqlite(tmp), kek,
                                                    row_foreign_keys=True)))
        if not args.pg:
            continue
        note(BASE_PG, timed(lambda: baseline_pg(parquet, args.pg, base_dbs)))
        while base_dbs:
            drop_pg(args.pg, base_dbs.pop())
        pg_url = fresh_pg(args.pg)
        pg_urls.append(pg_url)
        note(PG, timed(civicvault_store(parquet, pg_url, kek)))
        if not last:  # an earlier run's database, kept, slowed the next
            drop_pg(args.pg, pg_url)
        if args.pg_foreign_keys:
            fk_url = fresh_pg(args.pg)
            try:
                note(PG_FK, timed(civicvault_store(parquet, fk_url, kek,
                                                    row_foreign_keys=True)))
            finally:
                drop_pg(args.pg, fk_url)
    return times


BASE = "baseline: polars + AES-GCM/row + HMAC/row + sqlite3 executemany"
SQLITE = "civicvault seal+store, SQLite (WAL, synchronous=FULL)"
SQLITE_FK = "  same, with the per-row foreign keys (before migration 0014)"
BASE_PG = "baseline, PostgreSQL: the same rows with one COPY"
PG = "civicvault seal+store, PostgreSQL (COPY)"
PG_FK = "  same, with the per-row foreign keys (before migration 0005)"
_OWN_BASE = {SQLITE: BASE, SQLITE_FK: BASE, PG: BASE_PG, PG_FK: BASE_PG}


def report(times: dict[str, list[tuple[float, float]]]) -> list[dict[str, Any]]:
    """One row per measurement: median wall and CPU seconds, and for the loads the
    ratio of the medians and the median of the rounds' own ratios, against the SQLite
    baseline and against the same database's."""
    base = [w for w, _ in times[BASE]]
    rows: list[dict[str, Any]] = []
    for name, runs in times.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        row: dict[str, Any] = {"measurement": name, "seconds": statistics.median(walls),
                               "runs": walls}
        if name in (BASE, SQLITE, SQLITE_FK):  # this process's CPU; a server's is not in it
            row["cpu_s"] = statistics.median(cpus)
        if name in _OWN_BASE:
            own = [w for w, _ in times[_OWN_BASE[name]]]
            row["x_baseline"] = row["seconds"] / statistics.median(base)
            row["x_baseline_by_round"] = statistics.median(
                w / b for w, b in zip(walls, base, strict=True))
            row["x_same_db_baseline"] = row["seconds"] / statistics.median(own)
            if "cpu_s" in row:
                row["cpu_x_baseline"] = row["cpu_s"] / statistics.median(c for _, c in times[BASE])
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pg-foreign-keys", action="store_true",
                    help="also time PostgreSQL with the bulk tables' foreign keys put back")
    ap.add_argument("--sqlite-foreign-keys", action="store_true",
                    help="also time SQLite with the bulk tables' foreign keys put back")
    ap.add_argument("--pg", default=ADMIN_URL,
                    help="PostgreSQL admin URL ('' to skip)")
    ap.add_argument("--python-loops", action="store_true",
                    help="seal with the Python loops, not vault/_sealc.c")
    ap.add_argument("--json", action="store_true", help="the table as JSON")
    args = ap.parse_args()
    if args.rows < 1 or args.runs < 1:
        ap.error("--rows and --runs must be at least 1")
    from vault import _aead

    if args.python_loops:
        _aead.NATIVE = False
    with tempfile.TemporaryDirectory(prefix="cvbench-") as t:
        tmp = Path(t)
        parquet, kek = write_fixture(tmp, args.rows)
        urls: list[str] = []
        pg_urls: list[str] = []
        try:
            times = _rounds(args, parquet, kek, tmp, urls, pg_urls)
            rows = report(times)
            engine = make_engine(urls[-1])
            kr = Keyring(FileKeyProvider(kek))
            def decrypt() -> None:
                with engine.connect() as conn:
                    frame = read_attributes(conn, Keyring(kr.provider), "bench",
                                            ["county", "party", "age_band"])
                    assert frame.height == args.rows
            rows.append({"measurement": "decrypt 3 attribute columns of all rows (SQLite)",
                         "seconds": median_time(decrypt, args.runs)})
            engine.dispose()
            if pg_urls:
                pg_engine = make_engine(pg_urls[-1])
                def decrypt_pg() -> None:
                    with pg_engine.connect() as conn:
                        read_attributes(conn, Keyring(kr.provider), "bench",
                                        ["county", "party", "age_band"])
                rows.append({"measurement": "decrypt 3 attribute columns of all rows "
                                            "(PostgreSQL)",
                             "seconds": median_time(decrypt_pg, args.runs)})
                pg_engine.dispose()
        finally:
            for u in pg_urls[-1:]:  # the others were dropped as their rounds ended
                drop_pg(args.pg, u)

    loops = "vault/_sealc.c" if _aead.NATIVE else "Python"
    head = {"rows": args.rows, "runs": args.runs, "cores": os.cpu_count(),
            "batch_cryptography": loops, "load_at_end": round(os.getloadavg()[0], 2),
            "allocators": vault.allocators.applied()}
    if args.json:
        def rounded(v: Any) -> Any:
            return (round(v, 4) if isinstance(v, float) else
                    [rounded(x) for x in v] if isinstance(v, list) else v)
        print(json.dumps({**head, "measurements": [{k: rounded(v) for k, v in r.items()}
                                                   for r in rows]}, indent=1))
        return
    print(f"\nrows={args.rows:,}  runs={args.runs} (medians; a round runs each measurement "
          f"once)  cores={os.cpu_count()}  batch cryptography: {loops}  "
          f"load at end: {os.getloadavg()[0]:.2f}")
    print("allocators: " + ", ".join(f"{k} {v}" for k, v in head["allocators"].items()))
    print(f"{'measurement':<66} {'seconds':>8} {'x baseline':>10} {'by round':>8} "
          f"{'x same-DB baseline':>18} {'CPU s':>7} {'CPU x baseline':>14}")

    def num(row: dict[str, Any], key: str, width: int) -> str:
        return f"{row[key]:>{width}.2f}" if key in row else " " * width

    for row in rows:
        print(f"{row['measurement']:<66} {row['seconds']:>8.2f} {num(row, 'x_baseline', 10)} "
              f"{num(row, 'x_baseline_by_round', 8)} {num(row, 'x_same_db_baseline', 18)} "
              f"{num(row, 'cpu_s', 7)} {num(row, 'cpu_x_baseline', 14)}")
    print("\nper round, wall seconds:")
    for row in rows:
        if "runs" in row:
            print(f"  {row['measurement'][:64]:<64} "
                  + " ".join(f"{w:6.2f}" for w in row["runs"]))


if __name__ == "__main__":
    main()
