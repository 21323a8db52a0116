"""Flow ``watch-folder``: one long-running run that ingests files dropped into a folder.

``civicvault deploy --watch-folder DIR`` keeps exactly one run of this flow going for as
long as it serves (restarting it if it ever fails), so the folder is always watched:
no schedule, no gaps between runs, no overlapping runs for Prefect to cancel. The run
polls every ``poll_seconds`` (0.25 s); a settled file goes through the same tasks as
the ``ingest`` flow within about a second of landing. What happens to the file after
(shredded by default, kept on request, refused ones quarantined outside the folder
with a retention limit) is ``flows.folder_watch``. Prefect keeps counts and, from
``civicvault deploy``, the folder as a reference (``flow_runtime.kept_path_ref``: a
folder's name may name a person, and a deployment keeps its parameters), never its
path. ``window_seconds`` (default: forever) and ``max_files`` bound a run for tests
and one-off use.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flows import prefect_env

prefect_env.configure()

from prefect import flow, get_run_logger  # noqa: E402

from flows.flow_runtime import principal_for, typed_path, vault_home  # noqa: E402
from flows.folder_watch import (  # noqa: E402
    DEFAULT_QUARANTINE_MAX,
    DEFAULT_RETENTION_DAYS,
    QUARANTINE_DIR,
    FolderWatcher,
)
from flows.ingest import ingest_source  # noqa: E402
from vault.ingest import BATCH_ROWS  # noqa: E402


def warm_up() -> None:
    """Load the PII engine (Presidio + spaCy) now, not when the first file lands."""
    from vault.pii.engine import get_analyzer

    get_analyzer()


@flow(name="watch-folder", persist_result=False, log_prints=False)
def watch_folder(folder: str, dataset: str, home: str | None = None,
                 token_file: str | None = None, window_seconds: float | None = None,
                 poll_seconds: float = 0.25, batch_rows: int = BATCH_ROWS,
                 max_files: int | None = None, after_ingest: str = "delete",
                 quarantine_days: float = DEFAULT_RETENTION_DAYS,
                 quarantine_max_files: int = DEFAULT_QUARANTINE_MAX,
                 settle_seconds: float = 1.0) -> dict[str, Any]:
    """Ingest every file that settles in ``folder`` until the window (if any) ends.

    ``folder``: a reference to it (``civicvault deploy`` passes a kept one), or the path."""
    logger = get_run_logger()
    vh = vault_home(home)
    watched = typed_path(vh, folder)
    principal = principal_for(vh, token_file)

    def ingest_one(source: Path) -> dict[str, int]:
        counts, _ = ingest_source(str(vh.root), principal, source, dataset, batch_rows)
        return counts

    watcher = FolderWatcher(
        folder=watched, quarantine_dir=vh.root / QUARANTINE_DIR, ingest=ingest_one,
        after_ingest=after_ingest, retention_seconds=quarantine_days * 86400,
        quarantine_max_files=quarantine_max_files, settle_seconds=settle_seconds,
        info=logger.info, warn=logger.warning)
    warm_up()
    logger.info("watching the folder as %s", principal.id)  # its path: not logged
    deadline = None if window_seconds is None else time.monotonic() + window_seconds
    while True:
        watcher.poll()
        done = watcher.totals.files + watcher.totals.rejected
        if max_files is not None and done >= max_files:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        time.sleep(poll_seconds)
    logger.info("watch over: %d files ingested, %d quarantined", watcher.totals.files,
                watcher.totals.rejected)
    return {"dataset": dataset, **watcher.totals.to_json()}
