"""Scheduled deployments of civicvault's flows, served from this process (``civicvault deploy``).

Schedules (cron, UTC, all overridable):

- ``nightly-audit``: the ``audit`` flow at 02:15 every night;
- ``watch-folder``: with ``--watch-folder DIR``, one long-running run of the
  ``watch-folder`` flow, started by this process as soon as it serves and restarted
  if it ever ends, so a dropped file is in the vault and on the ledger within
  seconds at any time (``watch-folder-ingest`` is also served, unscheduled, for a
  manual run);
- ``monthly-key-rotation``: the ``rotate`` flow at 03:30 on the 1st of each month;
- ``ingest``, ``release``, ``linked-release``, ``erasure``: unscheduled, run on demand
  (``prefect deployment run 'ingest/ingest' -p path=... -p dataset=...``).

Scheduled flows act as service principals that ``civicvault deploy`` creates
(``flows.service_principals``): the watch folder and ``ingest`` as ``svc-ingestor``,
the audit as ``svc-auditor``; only key rotation uses the admin token.

Serving needs a Prefect server (``prefect server start``; ``PREFECT_API_URL``): the
schedules are made by its scheduler service. For work pools, ``prefect.yaml`` at the
repository root declares the same deployments.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
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
from flows.linked_release import linked_release  # noqa: E402
from flows.release import release  # noqa: E402
from flows.rotate import rotate  # noqa: E402
from flows.watch import watch_folder  # noqa: E402

AUDIT_CRON = "15 2 * * *"
ROTATE_CRON = "30 3 1 * *"
TIMEZONE = "UTC"


@dataclass(frozen=True)
class DeployConfig:
    """What ``civicvault deploy`` serves. ``watch_folder`` goes into the watch deployment's
    parameters, which Prefect keeps and shows: the CLI gives a reference to the folder
    (``flow_runtime.kept_path_ref``), never its path."""

    home: str | None = None
    watch_folder: str | None = None
    dataset: str = "voters"
    audit_cron: str = AUDIT_CRON
    rotate_cron: str = ROTATE_CRON
    dask_address: str | None = None
    after_ingest: str = "delete"
    quarantine_days: float = 7.0
    ingestor_token_file: str | None = None
    auditor_token_file: str | None = None


def _home(config: DeployConfig) -> dict[str, Any]:
    return {"home": config.home} if config.home else {}


def _as(token_file: str | None) -> dict[str, Any]:
    return {"token_file": token_file} if token_file else {}


def watch_parameters(config: DeployConfig) -> dict[str, Any]:
    """The long-running watch run's parameters (the folder's reference, paths of the home
    and token file, names and settings)."""
    return {**_home(config), **_as(config.ingestor_token_file),
            "folder": config.watch_folder, "dataset": config.dataset,
            "after_ingest": config.after_ingest, "quarantine_days": config.quarantine_days}


def build_deployments(config: DeployConfig) -> list[RunnerDeployment]:
    """The runner deployments ``civicvault deploy`` serves (parameters: paths and ids only)."""
    one_at_a_time = ConcurrencyLimitConfig(
        limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    tags = ["civicvault"]
    out: list[Any] = [
        audit.to_deployment(name="nightly-audit", cron=config.audit_cron, tags=tags,
                            parameters={**_home(config), **_as(config.auditor_token_file)},
                            concurrency_limit=one_at_a_time,
                            description="Verify ledger + vault, checkpoint, consistency."),
        rotate.to_deployment(name="monthly-key-rotation", cron=config.rotate_cron, tags=tags,
                             parameters=_home(config), concurrency_limit=one_at_a_time,
                             description="New KEK version, rewrap, re-encrypt."),
        ingest_flow(config.dask_address).to_deployment(
            name="ingest", tags=tags,
            parameters={**_home(config), **_as(config.ingestor_token_file)},
            description="Ingest a file or folder on demand (path, dataset)."),
        release.to_deployment(name="release", tags=tags, parameters=_home(config),
                              description="An analyst's DP release on demand."),
        linked_release.to_deployment(
            name="linked-release", tags=tags, parameters=_home(config),
            description="An analyst's DP release across two linked datasets on demand."),
        erasure.to_deployment(name="erasure", tags=tags, parameters=_home(config),
                              description="A file of erasure requests on demand."),
    ]
    if config.watch_folder:
        out.append(watch_folder.to_deployment(
            name="watch-folder-ingest", tags=tags, concurrency_limit=one_at_a_time,
            parameters=watch_parameters(config),
            description="Ingest files dropped into the watch folder within seconds "
                        "('civicvault deploy --watch-folder' keeps one run going)."))
    return [d for d in out if isinstance(d, RunnerDeployment)]


def describe(deployments: list[RunnerDeployment]) -> list[dict[str, Any]]:
    """Names, flows, schedules and parameters (for ``deploy --dry-run --json``)."""
    rows: list[dict[str, Any]] = []
    for d in deployments:
        crons = [getattr(s.schedule, "cron", None) for s in d.schedules or []]
        rows.append({"name": d.name, "flow": d.flow_name, "cron": [c for c in crons if c],
                     "parameters": d.parameters})
    return rows


class WatchKeeper:
    """Keeps one run of the ``watch-folder`` flow going in a background thread of this
    process; a run that ends or fails is started again after ``restart_seconds``."""

    def __init__(self, config: DeployConfig, restart_seconds: float = 5.0) -> None:
        self.parameters = watch_parameters(config)
        self.restart_seconds = restart_seconds
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="civicvault-watch",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        log = logging.getLogger("civicvault.deploy")
        while not self._stop.is_set():
            self.runs += 1
            try:
                watch_folder(**self.parameters)
            except Exception as exc:  # the run is on Prefect with its (scrubbed) error
                log.warning("watch-folder run ended (%s); restarting", type(exc).__name__)
            if self._stop.wait(self.restart_seconds):
                break


def serve_forever(config: DeployConfig, *, limit: int | None = None) -> None:
    """Serve every deployment until interrupted (runs flows in subprocesses); with a
    watch folder, keep one watch run going beside them."""
    from flows.prefect_console import served_console

    served_console()  # before the watcher and the runner log anything
    # Prefect's runner, stopped by SIGTERM, drops its own stop coroutine unawaited; the
    # warning (and its hint to enable tracemalloc) would be the log's last lines
    warnings.filterwarnings("ignore", message="coroutine 'Runner.astop' was never awaited")
    keeper = WatchKeeper(config) if config.watch_folder else None
    if keeper is not None:
        keeper.start()
        time.sleep(0)  # let the watcher register its run before the runner's banner
    try:
        serve(*build_deployments(config), limit=limit, print_starting_message=True)
    finally:
        if keeper is not None:
            keeper.stop()
