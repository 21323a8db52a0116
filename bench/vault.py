"""Benchmark: seal + store 1,000,000 voter rows (12 columns, 7 direct identifiers) and
decrypt the attributes of all rows for a release, on SQLite and PostgreSQL.

Baseline in the same run (the floor any encrypted store pays): polars read + one
AES-GCM per row + one HMAC per row + one sqlite3 executemany of the results; and
the same rows into PostgreSQL with one COPY, so each database is also compared
with a baseline on itself.

    python bench/vault.py [--rows 1000000] [--runs 3] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]
                          [--pg-foreign-keys] [--sqlite-foreign-keys] [--python-loops]

``--sqlite-foreign-keys`` / ``--pg-foreign-keys``: also time the store with the bulk
tables' per-row foreign keys put back (as before migrations 0014 / 0005), in the same run.

``--python-loops``: the vault's own Python loops for the batch cryptography instead of
``vault/_sealc.c`` (what an install without a C compiler runs; the figures say which).

Prints a table of medians: wall seconds, and the CPU seconds of this process (every
thread; PostgreSQL's server not included). A machine whose cores slow down stretches the
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
import os
import secrets
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pgdb import drop_pg, fresh_pg
from bench.timing import median_time, median_wall_and_cpu
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pg-foreign-keys", action="store_true",
                    help="also time PostgreSQL with the bulk tables' foreign keys put back")
    ap.add_argument("--sqlite-foreign-keys", action="store_true",
                    help="also time SQLite with the bulk tables' foreign keys put back")
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                    help="PostgreSQL admin URL ('' to skip)")
    ap.add_argument("--python-loops", action="store_true",
                    help="seal with the Python loops, not vault/_sealc.c")
    args = ap.parse_args()
    from vault import _aead

    if args.python_loops:
        _aead.NATIVE = False
    with tempfile.TemporaryDirectory(prefix="cvbench-") as t:
        tmp = Path(t)
        parquet, kek = write_fixture(tmp, args.rows)
        results: list[tuple[str, float, float | None]] = []
        base, base_cpu = median_wall_and_cpu(lambda: baseline(parquet, tmp / "base.db"),
                                             args.runs)
        results.append(("baseline: polars + AES-GCM/row + HMAC/row + sqlite3 executemany", base,
                        base_cpu))

        urls: list[str] = []
        def sqlite_run() -> None:
            url = fresh_sqlite(tmp)
            urls.append(url)
            civicvault_store(parquet, url, kek)()
        def sqlite_tidy() -> None:  # each run's vault goes before the next run; the last
            if len(urls) == args.runs:  # run's stays (the decrypt step reads it)
                return
            old = Path(urls[-1].split("///", 1)[1])
            for f in (old, old.with_name(old.name + "-wal"), old.with_name(old.name + "-shm")):
                f.unlink(missing_ok=True)
        results.append(("civicvault seal+store, SQLite (WAL, synchronous=FULL)",
                        *median_wall_and_cpu(sqlite_run, args.runs, sqlite_tidy)))
        sqlite_url = urls[-1]
        if args.sqlite_foreign_keys:
            def sqlite_fk_run() -> None:
                civicvault_store(parquet, fresh_sqlite(tmp), kek, row_foreign_keys=True)()
            results.append(("  same, with the per-row foreign keys (before migration 0014)",
                            *median_wall_and_cpu(sqlite_fk_run, args.runs)))
        base_pg = None
        if args.pg:
            base_dbs: list[str] = []
            def base_tidy() -> None:  # dropped untimed, as the store's databases are
                while base_dbs:
                    drop_pg(args.pg, base_dbs.pop())
            base_pg = median_time(lambda: baseline_pg(parquet, args.pg, base_dbs), args.runs,
                                  base_tidy)
            results.append(("baseline, PostgreSQL: the same rows with one COPY", base_pg, None))
            pg_urls: list[str] = []
            def pg_run() -> None:
                url = fresh_pg(args.pg)
                pg_urls.append(url)
                civicvault_store(parquet, url, kek)()
            def pg_tidy() -> None:  # an earlier run's database, kept, slowed the next:
                if len(pg_urls) < args.runs:  # each goes before the next run, the last stays
                    drop_pg(args.pg, pg_urls[-1])
            results.append(("civicvault seal+store, PostgreSQL (COPY)",
                            median_time(pg_run, args.runs, pg_tidy), None))
            if args.pg_foreign_keys:
                def pg_fk_run() -> None:
                    url = fresh_pg(args.pg)
                    try:
                        civicvault_store(parquet, url, kek, row_foreign_keys=True)()
                    finally:
                        drop_pg(args.pg, url)
                results.append(("  same, with the per-row foreign keys (before migration 0005)",
                                median_time(pg_fk_run, args.runs), None))

        engine = make_engine(sqlite_url)
        kr = Keyring(FileKeyProvider(kek))
        def decrypt() -> None:
            with engine.connect() as conn:
                frame = read_attributes(conn, Keyring(kr.provider), "bench",
                                        ["county", "party", "age_band"])
                assert frame.height == args.rows
        results.append(("decrypt 3 attribute columns of all rows (SQLite)",
                        median_time(decrypt, args.runs), None))
        if args.pg:
            pg_engine = make_engine(pg_urls[-1])
            def decrypt_pg() -> None:
                with pg_engine.connect() as conn:
                    read_attributes(conn, Keyring(kr.provider), "bench",
                                    ["county", "party", "age_band"])
            results.append(("decrypt 3 attribute columns of all rows (PostgreSQL)",
                            median_time(decrypt_pg, args.runs), None))
            pg_engine.dispose()
            for u in pg_urls:
                drop_pg(args.pg, u)
        engine.dispose()

    loops = "vault/_sealc.c" if _aead.NATIVE else "Python"
    print(f"\nrows={args.rows:,}  runs={args.runs} (medians)  cores={os.cpu_count()}  "
          f"batch cryptography: {loops}  load at end: {os.getloadavg()[0]:.2f}")
    print(f"{'measurement':<66} {'seconds':>8} {'x baseline':>10} {'x same-DB baseline':>18} "
          f"{'CPU s':>7} {'CPU x baseline':>14}")
    for name, secs, cpu in results:
        ratio = f"{secs / base:.2f}" if "seal+store" in name or "foreign keys" in name else ""
        own = ""
        if "seal+store" in name or "foreign keys" in name:
            own_base = base_pg if "PostgreSQL" in name or "foreign keys" in name else base
            own = f"{secs / own_base:.2f}" if own_base else ""
        cpu_s = f"{cpu:.2f}" if cpu is not None else ""
        cpu_ratio = f"{cpu / base_cpu:.2f}" if cpu is not None and ratio else ""
        print(f"{name:<66} {secs:>8.2f} {ratio:>10} {own:>18} {cpu_s:>7} {cpu_ratio:>14}")


if __name__ == "__main__":
    main()
