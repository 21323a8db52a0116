"""Scheduled deployments of civicvault's flows, served from this process (``civicvault deploy``).

Schedules (cron, UTC, all overridable):

- ``nightly-audit``: the ``audit`` flow at 02:15 every night;
- ``watch-folder-ingest``: the ``watch-folder`` flow every 5 minutes, each run
  watching the folder for just under 5 minutes (a new file lands in the vault
  within seconds), one run at a time;
- ``monthly-key-rotation``: the ``rotate`` flow at 03:30 on the 1st of each month;
- ``ingest``, ``release``, ``erasure``: unscheduled, run on demand
  (``prefect deployment run 'ingest/ingest' -p path=... -p dataset=...``).

Serving needs a Prefect server (``prefect server start``; ``PREFECT_API_URL``): the
schedules are made by its scheduler service. For work pools, ``prefect.yaml`` at the
repository root declares the same deployments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flows import prefect_env

prefect_env.configure()

from prefect import serve  # noqa: E402
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy  # noqa: E402
from prefect.deployments.runner import RunnerDeployment  # noqa: E402

from flows.audit import audit  # noqa: E402
from flows.erasure import erasure  # noqa: E402
from flows.ingest import ingest_flow  # noqa: E402
from flows.release import release  # noqa: E402
from flows.rotate import rotate  # noqa: E402
from flows.watch import watch_folder  # noqa: E402

AUDIT_CRON = "15 2 * * *"
WATCH_CRON = "*/5 * * * *"
ROTATE_CRON = "30 3 1 * *"
TIMEZONE = "UTC"


@dataclass(frozen=True)
class DeployConfig:
    home: str | None = None
    watch_folder: str | None = None
    dataset: str = "voters"
    audit_cron: str = AUDIT_CRON
    watch_cron: str = WATCH_CRON
    rotate_cron: str = ROTATE_CRON
    watch_window_seconds: float = 285.0
    dask_address: str | None = None


def _home(config: DeployConfig) -> dict[str, Any]:
    return {"home": config.home} if config.home else {}


def build_deployments(config: DeployConfig) -> list[RunnerDeployment]:
    """The runner deployments ``civicvault deploy`` serves (parameters: paths and ids only)."""
    one_at_a_time = ConcurrencyLimitConfig(
        limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    tags = ["civicvault"]
    out: list[Any] = [
        audit.to_deployment(name="nightly-audit", cron=config.audit_cron, tags=tags,
                            parameters=_home(config), concurrency_limit=one_at_a_time,
                            description="Verify ledger + vault, checkpoint, consistency."),
        rotate.to_deployment(name="monthly-key-rotation", cron=config.rotate_cron, tags=tags,
                             parameters=_home(config), concurrency_limit=one_at_a_time,
                             description="New KEK version, rewrap, re-encrypt."),
        ingest_flow(config.dask_address).to_deployment(
            name="ingest", tags=tags, parameters=_home(config),
            description="Ingest a file or folder on demand (path, dataset)."),
        release.to_deployment(name="release", tags=tags, parameters=_home(config),
                              description="An analyst's DP release on demand."),
        erasure.to_deployment(name="erasure", tags=tags, parameters=_home(config),
                              description="A file of erasure requests on demand."),
    ]
    if config.watch_folder:
        out.append(watch_folder.to_deployment(
            name="watch-folder-ingest", cron=config.watch_cron, tags=tags,
            concurrency_limit=one_at_a_time,
            parameters={**_home(config), "folder": config.watch_folder,
                        "dataset": config.dataset,
                        "window_seconds": config.watch_window_seconds},
            description="Ingest files dropped into the watch folder within seconds."))
    return [d for d in out if isinstance(d, RunnerDeployment)]


def describe(deployments: list[RunnerDeployment]) -> list[dict[str, Any]]:
    """Names, flows, schedules and parameters (for ``deploy --dry-run --json``)."""
    rows: list[dict[str, Any]] = []
    for d in deployments:
        crons = [getattr(s.schedule, "cron", None) for s in d.schedules or []]
        rows.append({"name": d.name, "flow": d.flow_name, "cron": [c for c in crons if c],
                     "parameters": d.parameters})
    return rows


def serve_forever(config: DeployConfig, *, limit: int | None = None) -> None:
    """Serve every deployment until interrupted (runs flows in subprocesses)."""
    serve(*build_deployments(config), limit=limit, print_starting_message=True)
