"""What ``civicvault ingest`` runs: one file or every file of a folder.

With a Prefect API configured (``PREFECT_API_URL``, i.e. production with a
server and deployments) or ``--prefect``, the CLI runs the ``ingest`` flow, so
the run shows in the Prefect UI like scheduled ones. Embedded and without a
server it calls the same vault operations in-process (the flow's tasks call
them too) and spares a 12-16 s ephemeral server start for each command.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.session import Session
from vault.errors import BadInput

if TYPE_CHECKING:  # vault.ingest loads Presidio: only when a file is really ingested
    from vault.ingest import Progress

SUFFIXES = {".csv", ".tsv", ".txt", ".parquet", ".jsonl", ".ndjson"}


def prefect_configured() -> bool:
    return bool(os.environ.get("PREFECT_API_URL"))


def source_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise BadInput(f"no ingestible files in folder {path}")
        return files
    if not path.exists():
        raise BadInput(f"no such file: {path}")
    return [path]


def run_ingest(session: Session, path: Path, dataset: str, progress: Progress | None, *,
               via_prefect: bool | None = None, token: str | None = None) -> dict[str, Any]:
    files = source_files(path)
    if via_prefect if via_prefect is not None else prefect_configured():
        return _run_flow(session, path, dataset, token)
    from vault.ingest import ingest_path

    totals: dict[str, Any] = {"dataset": dataset, "rows_added": 0, "rows_updated": 0,
                              "duplicates_skipped": 0, "erased_suppressed": 0, "batches": 0,
                              "people": 0, "columns": []}  # people: summed per source file
    for f in files:
        r = ingest_path(session.engine, session.home, session.principal, f, dataset,
                        progress=progress)
        totals["rows_added"] += r.rows_added
        totals["rows_updated"] += r.rows_updated
        totals["duplicates_skipped"] += r.duplicates_skipped
        totals["erased_suppressed"] += r.erased_suppressed
        totals["batches"] += r.batches
        totals["people"] += r.people or 0
        totals["columns"] = r.columns
    return totals


def _run_flow(session: Session, path: Path, dataset: str, token: str | None) -> dict[str, Any]:
    """The ``ingest`` flow; the token travels as a 0600 file path, never as a parameter."""
    from flows.ephemeral import prefect_api
    from flows.flow_runtime import token_file_for

    with prefect_api(), token_file_for(session.home, token) as token_file:
        from flows.ingest import ingest_flow

        result = ingest_flow()(path=str(path.absolute()), dataset=dataset,
                               home=str(session.home.root), token_file=token_file)
    return {k: result.get(k, 0) for k in ("dataset", "rows_added", "rows_updated",
                                          "duplicates_skipped", "erased_suppressed", "batches",
                                          "people", "columns")}
