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

SUFFIXES = {".csv", ".tsv", ".txt", ".parquet", ".jsonl", ".ndjson"}


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
    address = dask_address()
    for f in files:
        if address is None:
            r = ingest_path(session.engine, session.home, session.principal, f, dataset,
                            progress=progress)
        else:
            r = _ingest_on_dask(session, f, dataset, progress, address)
        totals["rows_added"] += r.rows_added
        totals["rows_updated"] += r.rows_updated
        totals["duplicates_skipped"] += r.duplicates_skipped
        totals["erased_suppressed"] += r.erased_suppressed
        totals["batches"] += r.batches
        totals["people"] += r.people or 0
        totals["columns"] = r.columns
    return totals


def _ingest_on_dask(session: Session, path: Path, dataset: str, progress: Progress | None,
                    address: str) -> Any:
    from vault.ingest import IngestReport, plan_ingest
    from vault.ingest_parallel import store_source_on

    plan = plan_ingest(session.engine, session.home, session.principal, path, dataset)
    if plan.already_ingested:
        return IngestReport(dataset, 0, 0, plan.rows, 0, plan.columns, already_ingested=True)
    with dask_client(address) as client:
        return store_source_on(client, session.engine, session.home, session.principal, plan,
                               progress=progress)


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
