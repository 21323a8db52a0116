"""Benchmark: PostgreSQL crash resume, a ``kill -9`` right after batch 1 of N, then the rerun.

For each run, on a fresh PostgreSQL database and a fresh vault home:

* ``clean``: ``civicvault ingest FILE`` of the whole file in one process (N batches);
  the clean cost of the remaining batches is ``clean * (N - 1) / N``.
* ``resume``: ``civicvault ingest FILE`` again in a fresh vault, killed with SIGKILL
  as soon as batch 1 is committed, then rerun; the rerun's wall time is the resume.

Both are real ``civicvault`` processes on synthetic voters (``flows.demo_data``
without its free-text column, so the figure is the database's, not Presidio's;
nothing real). ``--code DIR`` runs the CLI from another checkout (e.g. the
commit before a fix) for a before/after comparison in the same session.
Goal (issue 21): resume <= 2x the clean cost of the remaining batches.

    python bench/resume.py [--rows 300000] [--runs 3] [--code DIR]
                           [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]
    python bench/resume.py --lookup 1000000 [--runs 3]

``--lookup N``: the resume's dedup lookup alone, at scale: N subjects and 3N blind-index
rows put in by one bulk ``INSERT ... SELECT`` (autovacuum off, never analysed, as a
crash leaves them), then the lookup of one 100,000-row batch (50 chunks of 2,000
digests, half of them known) three ways: the previous ``IN``-list query, the same
after ``ANALYZE``, and the per-digest probe of ``vault.pg_planning`` without
statistics. Medians of ``--runs``.

Prints one JSON document with the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pgdb import ADMIN_URL  # noqa: E402
from flows import demo_data  # noqa: E402

CLI = [sys.executable, "-c", "from flows.cli import run; run()"]
SAMPLE = 2  # --lookup: chunks timed with the old IN-list query
CODE: Path | None = None  # --code: where the CLI's packages come from (default: this checkout)


def _fresh_pg(admin_url: str) -> str:
    name = f"cv_resume_{secrets.token_hex(5)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def _drop_pg(admin_url: str, url: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def _env(home: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICVAULT_")}
    env.update(CIVICVAULT_HOME=str(home), CIVICVAULT_DB_URL=url)
    if CODE is not None:
        env["PYTHONPATH"] = str(CODE)
    return env


def _init(home: Path, url: str) -> None:
    subprocess.run([*CLI, "init"], env=_env(home, url), check=True, capture_output=True)


def _ingest(home: Path, url: str, source: Path) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    done = subprocess.run([*CLI, "ingest", str(source), "--dataset", "voters", "--json"],
                          env=_env(home, url), check=True, capture_output=True, text=True)
    return time.perf_counter() - t0, json.loads(done.stdout.strip().splitlines()[-1])


def _batches(url: str) -> int:
    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM vault_batches")).scalar_one())
    finally:
        eng.dispose()


def _kill_after_first_batch(home: Path, url: str, source: Path) -> int:
    """Start an ingest, SIGKILL it once batch 1 is committed; returns the batches stored."""
    proc = subprocess.Popen([*CLI, "ingest", str(source), "--dataset", "voters"],
                            env=_env(home, url), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    eng = create_engine(url)
    try:
        while proc.poll() is None:
            with eng.connect() as conn:
                n = conn.execute(text("SELECT count(*) FROM vault_batches")).scalar_one()
            if n >= 1:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait()
    finally:
        eng.dispose()
    return _batches(url)


def _lookup_bench(admin_url: str, n: int, runs: int) -> dict[str, Any]:
    from sqlalchemy import select

    from vault import pg_planning
    from vault.db import make_engine, migrate
    from vault.store import T_BLIND, T_SUBJECT

    url = _fresh_pg(admin_url)
    eng = make_engine(url)
    try:
        migrate(eng)
        with eng.begin() as conn:
            for t in pg_planning.BULK_TABLES:
                conn.execute(text(f"ALTER TABLE {t} SET (autovacuum_enabled = false)"))
            conn.execute(text(
                "INSERT INTO vault_datasets (id, name, created, schema_hash, columns_json) "
                "VALUES (1, 'bench', '', '', '{}')"))
            conn.execute(text(
                "INSERT INTO vault_data_keys (id, dataset_id, purpose, version, kek_version, "
                "wrapped, messages_sealed, state, created) "
                "VALUES (1, 1, 'subject_wrap', 1, 1, '\\x00', 0, 'active', '')"))
            conn.execute(text(
                "INSERT INTO vault_sources (id, dataset_id, content_hash, rows, batches, created)"
                " VALUES (1, 1, 'x', 0, 1, '')"))
            conn.execute(text(
                "INSERT INTO vault_batches (id, dataset_id, source_id, batch_index, rows, "
                "data_hash, live_mask, created) VALUES (1, 1, 1, 0, 0, 'x', '\\x00', '')"))
            conn.execute(text(
                "INSERT INTO vault_subjects (id, dataset_id, key_id, wrapped_key, fingerprint, "
                "current_batch_id, current_row, erased_at) "
                "SELECT g, 1, 1, '\\x00', NULL, 1, g, NULL FROM generate_series(1, :n) g"),
                {"n": n})
            for col in ("ncid", "email_address", "full_phone_number"):
                conn.execute(text(
                    "INSERT INTO vault_blind_index (dataset_id, \"column\", digest, subject_id, "
                    "key_id) SELECT 1, CAST(:c AS varchar), "
                    "sha256(convert_to(CAST(:c AS varchar), 'UTF8') || int8send(g)), g, 1 "
                    "FROM generate_series(1, :n) g"), {"c": col, "n": n})
        import hashlib

        wanted = [hashlib.sha256(b"ncid" + i.to_bytes(8, "big", signed=True)).digest()
                  for i in range(n - 50_000 + 1, n + 50_001)]  # 50k known, 50k new
        chunks = [wanted[i:i + 2000] for i in range(0, len(wanted), 2000)]

        def in_list() -> None:  # the first SAMPLE chunks only: unanalysed, one takes minutes
            with eng.connect() as conn:
                for chunk in chunks[:SAMPLE]:
                    conn.execute(select(T_BLIND.c.digest, T_SUBJECT.c.id)
                                 .join(T_SUBJECT, T_SUBJECT.c.id == T_BLIND.c.subject_id)
                                 .where(T_BLIND.c.dataset_id == 1, T_BLIND.c.column == "ncid",
                                        T_BLIND.c.digest.in_(chunk),
                                        T_SUBJECT.c.erased_at.is_(None))).all()

        def probe() -> None:
            with eng.connect() as conn:
                found = 0
                for chunk in chunks:
                    found += len(conn.execute(pg_planning.lookup_sql(),
                                              {"wanted": chunk, "ds": 1, "col": "ncid"}).all())
                assert found == 50_000, found

        from bench.timing import median_time

        with eng.connect() as conn:
            stale = pg_planning.stale_tables(conn)
        probe_s = median_time(probe, runs)
        in_list_s = median_time(in_list, runs)
        with eng.begin() as conn:
            t0 = time.perf_counter()
            analysed = pg_planning.refresh_stale_statistics(conn)
            analyze_s = time.perf_counter() - t0
        in_list_analysed_s = median_time(in_list, runs)
        probe_analysed_s = median_time(probe, runs)
    finally:
        eng.dispose()
        _drop_pg(admin_url, url)
    return {"lookup_subjects": n, "lookup_batch_rows": len(wanted), "runs": runs,
            "stale_before": stale, "analysed": analysed,
            "in_list_chunks_timed": SAMPLE,
            "in_list_unanalysed_s_per_chunk": round(in_list_s / SAMPLE, 2),
            "in_list_unanalysed_s_all_chunks_extrapolated": round(in_list_s / SAMPLE
                                                                   * len(chunks), 1),
            "probe_unanalysed_s": round(probe_s, 2),
            "analyze_s": round(analyze_s, 2),
            "in_list_analysed_s_per_chunk": round(in_list_analysed_s / SAMPLE, 3),
            "probe_analysed_s": round(probe_analysed_s, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pg", default=ADMIN_URL)
    ap.add_argument("--code", type=Path, default=None)
    ap.add_argument("--lookup", type=int, default=0, metavar="N")
    args = ap.parse_args()
    if args.lookup:
        print(json.dumps(_lookup_bench(args.pg, args.lookup, args.runs), indent=1))
        return
    global CODE
    CODE = args.code
    from vault.ingest import BATCH_ROWS

    if args.rows <= BATCH_ROWS or args.runs < 1:
        ap.error(f"--rows must exceed one batch ({BATCH_ROWS:,} rows: a kill after the first "
                 "batch must leave some to resume) and --runs be at least 1")
    total_batches = -(-args.rows // BATCH_ROWS)
    clean: list[float] = []
    resume: list[float] = []
    stored_at_kill: list[int] = []
    with tempfile.TemporaryDirectory(prefix="cv-bench-resume-") as tmp:
        source = Path(tmp) / "voters.csv"
        demo_data.generate(args.rows, seed=5).drop("canvass_notes").write_csv(source)
        for run in range(args.runs):
            url = _fresh_pg(args.pg)
            try:
                home = Path(tmp) / f"clean{run}"
                _init(home, url)
                seconds, report = _ingest(home, url, source)
                assert report["rows_added"] == args.rows, report
                clean.append(seconds)
            finally:
                _drop_pg(args.pg, url)
            url = _fresh_pg(args.pg)
            try:
                home = Path(tmp) / f"resume{run}"
                _init(home, url)
                stored_at_kill.append(_kill_after_first_batch(home, url, source))
                seconds, report = _ingest(home, url, source)
                assert _batches(url) == total_batches, "the rerun did not finish the ingest"
                resume.append(seconds)
            finally:
                _drop_pg(args.pg, url)
    clean_remaining = [c * (total_batches - s) / total_batches
                       for c, s in zip(clean, stored_at_kill, strict=True)]
    doc = {
        "rows": args.rows, "batches": total_batches, "runs": args.runs,
        "batches_stored_at_kill": stored_at_kill,
        "clean_ingest_s": [round(x, 2) for x in clean],
        "resume_s": [round(x, 2) for x in resume],
        "median_clean_ingest_s": round(statistics.median(clean), 2),
        "median_clean_remaining_s": round(statistics.median(clean_remaining), 2),
        "median_resume_s": round(statistics.median(resume), 2),
        "resume_over_clean_remaining": round(statistics.median(resume)
                                             / statistics.median(clean_remaining), 2),
        "goal": "resume <= 2x clean remaining",
        "code": str(CODE or ROOT),
    }
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
