"""Flow ``ingest``: plan each source file, then store its batches.

Reads like what it does: for every file (a file, or the data files of a folder),
register the source by content hash and classify its columns once
(``vault.ingest.plan_ingest``), then store its batches in one task that seals
batch k+1 while batch k is written (``vault.ingest.store_source``); when the flow
runs on Dask, that task hands the preparation of each batch to the cluster's
workers and stays the one ordered writer (``vault.ingest_parallel``). Both steps
are idempotent, so a rerun adds nothing and a run killed half-way is finished by
the next one, each row once.

Nothing with plaintext crosses Prefect: parameters are a path, a dataset name and
the vault home's path; tasks return ids and counts; caching and result persistence
are off; transient database errors (``OperationalError``) are retried with
exponential backoff. Batches can run on Dask (``CIVICVAULT_DASK_ADDRESS`` or the
``dask_address`` argument of :func:`ingest_flow`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flows import prefect_env

prefect_env.configure()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.client.schemas.objects import State, TaskRun  # noqa: E402
from prefect.flows import Flow  # noqa: E402
from prefect.tasks import Task, exponential_backoff  # noqa: E402

from flows.flow_runtime import (  # noqa: E402
    is_transient,
    principal_for,
    scrubbed,
    typed_path,
    vault_for,
    vault_home,
)
from vault.errors import BadInput  # noqa: E402
from vault.ingest import BATCH_ROWS, IngestPlan, source_label  # noqa: E402
from vault.service import Principal  # noqa: E402

DATA_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".parquet", ".json", ".jsonl", ".ndjson"})
RETRIES = 4


def retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only database hiccups; a bad file or a denial will not get better."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, re-raised by result()
        return is_transient(exc)
    return False


def source_files(path: Path) -> list[Path]:
    """The file itself, or the visible data files directly inside a folder, by name."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir()
                      if p.is_file() and not p.name.startswith(".")
                      and p.suffix.lower() in DATA_SUFFIXES)
    raise BadInput("the file or folder given to ingest does not exist")  # never the path


@task(name="plan-source", cache_policy=NO_CACHE, persist_result=False, retries=RETRIES,
      retry_delay_seconds=exponential_backoff(backoff_factor=0.5), retry_jitter_factor=0.5,
      retry_condition_fn=retry_if_transient)
def plan_source(home: str, principal: Principal, path: str, dataset: str,
                batch_rows: int, label: str | None = None) -> IngestPlan:
    """Register the source by content hash and classify it once (touches plaintext);
    errors name it as ``label`` (its place in the folder), never by its path."""
    vh = vault_home(home)
    with scrubbed("plan", dataset=dataset):
        return vault_for(vh, principal).ingest_plan(Path(path), dataset, batch_rows=batch_rows,
                                                    label=label)


@task(name="store-source", cache_policy=NO_CACHE, persist_result=False, retries=RETRIES,
      retry_delay_seconds=exponential_backoff(backoff_factor=0.5), retry_jitter_factor=0.5,
      retry_condition_fn=retry_if_transient, task_run_name="store-source-{plan.source_id}")
def store_batches(home: str, principal: Principal, plan: IngestPlan,
                  dask_address: str | None = None) -> dict[str, int]:
    """Seal and store every batch of a source, pipelined (touches plaintext; idempotent);
    on Dask (``dask_address``) the workers prepare the batches, this task writes them."""
    vh = vault_home(home)
    with scrubbed("store-source", source=plan.source_id):
        if dask_address is None:
            r = vault_for(vh, principal).ingest_planned(plan)
        else:
            from flows.dask_cluster import dask_client

            with dask_client(dask_address) as client:
                r = vault_for(vh, principal).ingest_planned(plan, client=client)
        vault_for(vh, principal).refresh_links(plan.dataset)  # declared links see the rows
    return {"rows_added": r.rows_added, "rows_updated": r.rows_updated,
            "duplicates_skipped": r.duplicates_skipped,
            "erased_suppressed": r.erased_suppressed, "batches": r.batches,
            "people": r.people or 0}


def _dask_address() -> str | None:
    """The Dask scheduler this flow runs on, if any (its tasks then run on workers)."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    runner = ctx.task_runner if ctx is not None else None
    if runner is None or "Dask" not in type(runner).__name__:
        return None
    return str(getattr(runner, "address", None) or os.environ.get(prefect_env.DASK_ADDRESS_ENV)
               or "local")


def ingest_source(home: str, principal: Principal, source: Path, dataset: str,
                  batch_rows: int, label: str | None = None,
                  ) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Plan one file, then store its batches in one pipelined task (on Dask, with the
    batches prepared by the workers); call inside a flow. ``label``: how errors name
    the file (``vault.ingest.source_label``)."""
    logger = get_run_logger()
    counts = {"rows_added": 0, "rows_updated": 0, "duplicates_skipped": 0,
              "erased_suppressed": 0, "batches": 0, "people": 0}
    plan = plan_source(home, principal, str(source), dataset, batch_rows, label)
    if plan.already_ingested:
        logger.info("source %s already ingested: nothing to add", plan.source_id)
        counts["duplicates_skipped"] = plan.rows
        return counts, plan.columns
    address = _dask_address()
    counts = store_batches(home, principal, plan, address)
    logger.info("source %s: %d batches stored%s", plan.source_id, counts["batches"],
                " (prepared on Dask)" if address else "")
    return counts, plan.columns


@flow(name="ingest", persist_result=False, log_prints=False, validate_parameters=True)
def ingest(path: str, dataset: str, home: str | None = None, token_file: str | None = None,
           batch_rows: int = BATCH_ROWS) -> dict[str, Any]:
    """Ingest a file or a folder of files into ``dataset``; returns counts and column classes.

    ``path``: the file or folder, or (from the CLI) a reference to it
    (``flow_runtime.path_ref_for``), so that Prefect's stored parameters hold no path."""
    vh = vault_home(home)
    source_path = typed_path(vh, path)
    principal = principal_for(vh, token_file)
    totals = {"rows_added": 0, "rows_updated": 0, "duplicates_skipped": 0,
              "erased_suppressed": 0, "batches": 0, "people": 0}  # people: summed per source
    columns: list[dict[str, Any]] = []
    files = source_files(source_path)
    for i, source in enumerate(files, start=1):
        label = source_label(i, len(files), folder=source_path.is_dir())
        counts, cols = ingest_source(str(vh.root), principal, source, dataset, batch_rows,
                                     label)
        columns = columns or cols
        for key, value in counts.items():
            totals[key] += value
    return {"dataset": dataset, **totals, "files": len(files), "columns": columns}


def ingest_flow(dask_address: str | None = None) -> Flow[..., dict[str, Any]]:
    """The ingest flow, on the Dask cluster at ``dask_address`` (or the env's) if one is given."""
    address = dask_address or os.environ.get(prefect_env.DASK_ADDRESS_ENV) or None
    if address is None:
        return ingest
    from prefect_dask.task_runners import DaskTaskRunner

    runner: Any = DaskTaskRunner(address=address)
    return ingest.with_options(task_runner=runner)
