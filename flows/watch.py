"""Flow ``watch-folder``: ingest files dropped into a folder within seconds of their arrival.

A run watches the folder for ``window_seconds`` (default just under five minutes),
polling every ``poll_seconds``; the deployment starts a run every five minutes, so
a watcher is always there. A file is taken once it is *settled*: its size and
modification time are the same on two consecutive polls (writers that rename a
finished file into place are picked up on the next poll). Hidden files and
``*.part``/``*.tmp`` are ignored. Each settled file goes through the same tasks as
the ``ingest`` flow and is then moved to ``<folder>/.ingested/``; a file the vault
rejects as bad input is moved to ``<folder>/.rejected/`` so it is not retried
forever. Only paths and counts pass through Prefect.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flows import prefect_env

prefect_env.configure()

from prefect import flow, get_run_logger  # noqa: E402

from flows.flow_runtime import principal_for, vault_home  # noqa: E402
from flows.ingest import DATA_SUFFIXES, ingest_source  # noqa: E402
from vault.errors import BadInput  # noqa: E402
from vault.ingest import BATCH_ROWS  # noqa: E402

DONE_DIR = ".ingested"
REJECTED_DIR = ".rejected"
IGNORED_SUFFIXES = frozenset({".part", ".tmp", ".partial", ".crdownload"})

Stamp = tuple[int, int]


def candidates(folder: Path) -> dict[Path, Stamp]:
    """Visible data files directly in ``folder`` with their (size, mtime_ns)."""
    found: dict[Path, Stamp] = {}
    for p in folder.iterdir():
        if p.name.startswith(".") or p.suffix.lower() in IGNORED_SUFFIXES:
            continue
        if p.suffix.lower() not in DATA_SUFFIXES:
            continue
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        if p.is_file():
            found[p] = (st.st_size, st.st_mtime_ns)
    return found


def settled(previous: dict[Path, Stamp], current: dict[Path, Stamp]) -> list[Path]:
    """Files unchanged since the previous poll, oldest name first."""
    return sorted(p for p, stamp in current.items() if previous.get(p) == stamp and stamp[0] > 0)


def move_aside(path: Path, subfolder: str) -> Path:
    target_dir = path.parent / subfolder
    target_dir.mkdir(mode=0o700, exist_ok=True)
    target = target_dir / path.name
    if target.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        target = target_dir / f"{path.stem}.{stamp}{path.suffix}"
    path.rename(target)
    return target


@flow(name="watch-folder", persist_result=False, log_prints=False)
def watch_folder(folder: str, dataset: str, home: str | None = None,
                 token_file: str | None = None, window_seconds: float = 285.0,
                 poll_seconds: float = 0.25, batch_rows: int = BATCH_ROWS,
                 max_files: int | None = None) -> dict[str, Any]:
    """Ingest every file that settles in ``folder`` during the window; return counts."""
    logger = get_run_logger()
    vh = vault_home(home)
    principal = principal_for(vh, token_file)
    inbox = Path(folder)
    if not inbox.is_dir():
        raise BadInput(f"watch folder does not exist: {inbox}")
    totals = {"files": 0, "rejected": 0, "rows_added": 0, "rows_updated": 0,
              "duplicates_skipped": 0, "erased_suppressed": 0, "batches": 0}
    deadline = time.monotonic() + window_seconds
    seen: dict[Path, Stamp] = {}
    while True:
        current = candidates(inbox)
        for source in settled(seen, current):
            try:
                counts, _ = ingest_source(str(vh.root), principal, source, dataset, batch_rows)
            except BadInput as exc:
                move_aside(source, REJECTED_DIR)
                totals["rejected"] += 1
                logger.warning("file rejected: %s", exc.diagnostics().splitlines()[0])
                continue
            move_aside(source, DONE_DIR)
            totals["files"] += 1
            for key, value in counts.items():
                totals[key] += value
            current.pop(source, None)
        seen = current
        if max_files is not None and totals["files"] + totals["rejected"] >= max_files:
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(poll_seconds)
    logger.info("watch window over: %d files ingested, %d rejected", totals["files"],
                totals["rejected"])
    return {"dataset": dataset, **totals}
