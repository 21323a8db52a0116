"""What ``civicvault ingest`` runs: one file or every file of a folder.

With a Prefect API configured (``PREFECT_API_URL``, i.e. production with a
server and deployments) or ``--prefect``, the CLI runs the ``ingest`` flow, so
the run shows in the Prefect UI like scheduled ones. Embedded and without a
server it calls the same vault operations in-process (the flow's tasks call
them too) and spares a 12-16 s ephemeral server start for each command.

With ``CIVICVAULT_DASK_ADDRESS`` set (``tcp://scheduler:8786`` for a user's cluster,
``local`` or ``local:N`` for N worker processes on this machine) the batches are
prepared on Dask workers and stored by one ordered writer here
(``vault.ingest_parallel``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.dask_cluster import dask_address, dask_client
from flows.session import Session

if TYPE_CHECKING:  # vault.ingest loads Presidio: only when a file is really ingested
    from vault.ingest import Progress


def prefect_configured() -> bool:
    return bool(os.environ.get("PREFECT_API_URL"))


def source_files(path: Path) -> list[Path]:
    from vault.service import source_files as files_of

    return files_of(path)


def run_ingest(session: Session, path: Path, dataset: str, progress: Progress | None, *,
               via_prefect: bool | None = None, token: str | None = None) -> dict[str, Any]:
    source_files(path)
    if via_prefect if via_prefect is not None else prefect_configured():
        return _run_flow(session, path, dataset, token)
    address = dask_address()
    if address is None:
        return session.vault.ingest(path, dataset, progress=progress)
    with dask_client(address) as client:
        return session.vault.ingest(path, dataset, progress=progress, client=client)


def _run_flow(session: Session, path: Path, dataset: str, token: str | None) -> dict[str, Any]:
    """The ``ingest`` flow; the token travels as a 0600 file path, never as a parameter,
    and the file's path as a reference (Prefect stores and shows parameters)."""
    from flows.ephemeral import prefect_api
    from flows.flow_runtime import path_ref_for, token_file_for

    with prefect_api(), token_file_for(session.home, token) as token_file, \
            path_ref_for(session.home, path) as ref:
        from flows.ingest import ingest_flow

        result = ingest_flow()(path=ref, dataset=dataset, home=str(session.home.root),
                               token_file=token_file)
    return {k: result.get(k, 0) for k in ("dataset", "rows_added", "rows_updated",
                                          "duplicates_skipped", "erased_suppressed", "batches",
                                          "people", "columns")}
