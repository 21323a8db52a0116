"""Flow ``ingest``: plan each source file, then store its batches.

Reads like what it does: for every file (a file, or the data files of a folder),
register the source by content hash and classify its columns once
(``vault.ingest.plan_ingest``), then store its batches: in one task that seals
batch k+1 while batch k is written (``vault.ingest.store_source``, 3-4x faster on
a 1M-row file than a task per batch), or, when the flow runs on Dask, one task per
batch (``vault.ingest.ingest_batch``) so the cluster's workers share them. Both
steps are idempotent, so a rerun adds nothing and a run killed half-way is
finished by the next one, each row once.

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
from prefect.futures import PrefectFuture  # noqa: E402
from prefect.tasks import Task, exponential_backoff  # noqa: E402

from flows.flow_runtime import (  # noqa: E402
    is_transient,
    principal_for,
    scrubbed,
    vault_for,
    vault_home,
)
from vault.errors import BadInput  # noqa: E402
from vault.ingest import BATCH_ROWS, IngestPlan  # noqa: E402
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
    raise BadInput(f"no such file or folder: {path}")


@task(name="plan-source", cache_policy=NO_CACHE, persist_result=False, retries=RETRIES,
      retry_delay_seconds=exponential_backoff(backoff_factor=0.5), retry_jitter_factor=0.5,
      retry_condition_fn=retry_if_transient)
def plan_source(home: str, principal: Principal, path: str, dataset: str,
                batch_rows: int) -> IngestPlan:
    """Register the source by content hash and classify it once (touches plaintext)."""
    vh = vault_home(home)
    with scrubbed("plan", dataset=dataset):
        return vault_for(vh, principal).ingest_plan(Path(path), dataset, batch_rows=batch_rows)


@task(name="store-batch", cache_policy=NO_CACHE, persist_result=False, retries=RETRIES,
      retry_delay_seconds=exponential_backoff(backoff_factor=0.5), retry_jitter_factor=0.5,
      retry_condition_fn=retry_if_transient,
      task_run_name="store-batch-{plan.source_id}-{batch_index}")
def store_batch(home: str, principal: Principal, plan: IngestPlan,
                batch_index: int) -> dict[str, int]:
    """Seal and store one batch with its ledger entry (touches plaintext; idempotent)."""
    vh = vault_home(home)
    with scrubbed("store-batch", source=plan.source_id, batch=batch_index):
        return vault_for(vh, principal).ingest_batch(plan, batch_index)


@task(name="store-source", cache_policy=NO_CACHE, persist_result=False, retries=RETRIES,
      retry_delay_seconds=exponential_backoff(backoff_factor=0.5), retry_jitter_factor=0.5,
      retry_condition_fn=retry_if_transient, task_run_name="store-source-{plan.source_id}")
def store_batches(home: str, principal: Principal, plan: IngestPlan) -> dict[str, int]:
    """Seal and store every batch of a source, pipelined (touches plaintext; idempotent)."""
    vh = vault_home(home)
    with scrubbed("store-source", source=plan.source_id):
        r = vault_for(vh, principal).ingest_planned(plan)
    return {"rows_added": r.rows_added, "rows_updated": r.rows_updated,
            "duplicates_skipped": r.duplicates_skipped,
            "erased_suppressed": r.erased_suppressed, "batches": r.batches,
            "people": r.people or 0}


def _distributed() -> bool:
    """Does this flow run hand tasks to other workers (Dask)?"""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return ctx is not None and "Dask" in type(ctx.task_runner).__name__


def ingest_source(home: str, principal: Principal, source: Path, dataset: str,
                  batch_rows: int) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Plan one file, then store its batches: one pipelined task, or on Dask one task
    per batch (call inside a flow)."""
    logger = get_run_logger()
    counts = {"rows_added": 0, "rows_updated": 0, "duplicates_skipped": 0,
              "erased_suppressed": 0, "batches": 0, "people": 0}
    plan = plan_source(home, principal, str(source), dataset, batch_rows)
    if plan.already_ingested:
        logger.info("source %s already ingested: nothing to add", plan.source_id)
        counts["duplicates_skipped"] = plan.rows
        return counts, plan.columns
    if not _distributed():
        counts = store_batches(home, principal, plan)
        logger.info("source %s: %d batches stored", plan.source_id, counts["batches"])
        return counts, plan.columns
    futures: list[PrefectFuture[dict[str, int]]] = [
        store_batch.submit(home, principal, plan, i) for i in range(plan.batches)]
    for result in (f.result() for f in futures):
        counts["rows_added"] += result["added"]
        counts["rows_updated"] += result["updated"]
        counts["duplicates_skipped"] += result["skipped"]
        counts["erased_suppressed"] += result.get("suppressed", 0)
        counts["batches"] += 0 if result["already_stored"] else 1
    logger.info("source %s: %d batches stored", plan.source_id, counts["batches"])
    return counts, plan.columns


@flow(name="ingest", persist_result=False, log_prints=False, validate_parameters=True)
def ingest(path: str, dataset: str, home: str | None = None, token_file: str | None = None,
           batch_rows: int = BATCH_ROWS) -> dict[str, Any]:
    """Ingest a file or a folder of files into ``dataset``; returns counts and column classes."""
    vh = vault_home(home)
    principal = principal_for(vh, token_file)
    totals = {"rows_added": 0, "rows_updated": 0, "duplicates_skipped": 0,
              "erased_suppressed": 0, "batches": 0, "people": 0}  # people: summed per source
    columns: list[dict[str, Any]] = []
    files = source_files(Path(path))
    for source in files:
        counts, cols = ingest_source(str(vh.root), principal, source, dataset, batch_rows)
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
