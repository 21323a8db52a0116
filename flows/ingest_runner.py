"""What ``civicvault ingest`` runs: one file or every file of a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.session import Session
from vault.errors import BadInput
from vault.ingest import Progress, ingest_path

SUFFIXES = {".csv", ".tsv", ".txt", ".parquet", ".jsonl", ".ndjson"}


def source_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise BadInput(f"no ingestible files in folder {path}")
        return files
    if not path.exists():
        raise BadInput(f"no such file: {path}")
    return [path]


def run_ingest(session: Session, path: Path, dataset: str,
               progress: Progress | None) -> dict[str, Any]:
    totals: dict[str, Any] = {"dataset": dataset, "rows_added": 0, "rows_updated": 0,
                              "duplicates_skipped": 0, "batches": 0, "columns": []}
    for f in source_files(path):
        r = ingest_path(session.engine, session.home, session.principal, f, dataset,
                        progress=progress)
        totals["rows_added"] += r.rows_added
        totals["rows_updated"] += r.rows_updated
        totals["duplicates_skipped"] += r.duplicates_skipped
        totals["batches"] += r.batches
        totals["columns"] = r.columns
    return totals
