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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.session import Session
from vault.errors import BadInput

if TYPE_CHECKING:  # vault.ingest loads Presidio: only when a file is really ingested
    from vault.ingest import Progress


DASK_ADDRESS_ENV = "CIVICVAULT_DASK_ADDRESS"


def dask_address() -> str | None:
    return os.environ.get(DASK_ADDRESS_ENV) or None


@contextmanager
def dask_client(address: str) -> Iterator[Any]:
    """A ``distributed.Client`` for ``address``: a scheduler's address, or ``local[:N]``
    for a cluster of N worker processes (default 2) that lives as long as the block.
    Inside a Dask task, the worker's own client (the task secedes while it waits)."""
    import distributed

    try:
        distributed.get_worker()
    except ValueError:
        pass
    else:
        with distributed.worker_client() as client:
            yield client
        return
    kind, _, count = address.partition(":")
    if kind == "local":
        if count and not count.isdigit():
            raise BadInput(f"{DASK_ADDRESS_ENV}: 'local' or 'local:N' (N worker processes)")
        cluster = distributed.LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=int(count or 2), threads_per_worker=1, processes=True,
            dashboard_address=":0")
        with cluster, distributed.Client(cluster) as client:  # type: ignore[no-untyped-call]
            yield client
        return
    with distributed.Client(address) as client:  # type: ignore[no-untyped-call]
        yield client


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
