"""``civicvault demo`` and ``civicvault deploy``: the Prefect side of the CLI.

Prefect is imported only inside the commands (after ``flows.prefect_env`` has set
telemetry off and a private ``PREFECT_HOME``), so ``civicvault --help`` stays fast.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from flows.output import console, emit_json
from vault.errors import BadInput
from vault.home import HOME_ENV


def _fresh_home(home: Path | None) -> Path:
    """``--home``, else an unused ``CIVICVAULT_HOME``, else a new private temp folder."""
    if home is not None:
        return home
    env = os.environ.get(HOME_ENV)
    if env:
        candidate = Path(env).expanduser()
        if not candidate.exists() or (candidate.is_dir() and not any(candidate.iterdir())):
            return candidate
    return Path(tempfile.mkdtemp(prefix="civicvault-demo-"))


def demo(
    rows: Annotated[int, typer.Option("--rows", min=1, help="Synthetic voters to generate.")]
    = 100_000,
    home: Annotated[Path | None, typer.Option(
        "--home", help="Fresh vault home to create (default: an unused CIVICVAULT_HOME, "
        "else a new temporary folder).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the synthetic data.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run the main job end to end: init, synthetic voter file, ingest, two DP releases, audit."""
    from flows.demo import run_demo
    from flows.ephemeral import terminate_as_interrupt

    target = _fresh_home(home)
    made_here = home is None and target.name.startswith("civicvault-demo-") and target.is_dir()
    step = None if as_json else (lambda msg: console.print(f"- {msg}", markup=False))
    done = False
    try:
        with terminate_as_interrupt():
            summary = run_demo(rows, target, seed=seed, step=step)
        done = True
    finally:
        if not done and made_here:  # a failed or interrupted demo leaves no temp vault behind
            shutil.rmtree(target, ignore_errors=True)
    if as_json:
        emit_json(summary.to_json())
        return
    console.print(f"vault home        {summary.home}", markup=False)
    console.print(f"rows ingested     {summary.rows_added:,} of {summary.rows:,}", markup=False)
    console.print(f"columns protected {summary.columns_protected} of {summary.columns}",
                  markup=False)
    for r in summary.releases:
        acc = ", ".join(f"{k} ±{v}" if isinstance(v, int | float) else f"{k} {v}"
                        for k, v in (r.get("accuracy") or {}).items())
        console.print(f"release           {' x '.join(r['by'] or [])}: {r['groups']} groups, "
                      f"epsilon {r['epsilon']}, accuracy at {r.get('confidence')}: {acc}",
                      markup=False)
    console.print(f"ledger            {summary.ledger_size} entries, root {summary.ledger_root}",
                  markup=False)
    console.print(f"audit             {summary.verdict} (checkpoint {summary.checkpoint})",
                  markup=False)
    console.print(f"time              {summary.seconds.get('total', 0):.1f} s", markup=False)


def deploy(
    watch: Annotated[Path | None, typer.Option(
        "--watch", help="Folder to ingest new files from (watch-folder deployment).")] = None,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset for watched files.")]
    = "voters",
    audit_cron: Annotated[str, typer.Option("--audit-cron")] = "15 2 * * *",
    watch_cron: Annotated[str, typer.Option("--watch-cron")] = "*/5 * * * *",
    rotate_cron: Annotated[str, typer.Option("--rotate-cron")] = "30 3 1 * *",
    dask_address: Annotated[str | None, typer.Option(
        "--dask-address", envvar="CIVICVAULT_DASK_ADDRESS",
        help="Run ingest batches on this Dask cluster.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List deployments, serve none.")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: one JSON value.")]
    = False,
) -> None:
    """Serve the flows with cron schedules (audit nightly, watch folder, monthly rotation)."""
    if watch is not None and not watch.is_dir():
        raise BadInput(f"watch folder does not exist: {watch}")
    from flows.deploy import DeployConfig, build_deployments, describe, serve_forever
    from vault.home import VaultHome

    config = DeployConfig(home=str(VaultHome.from_env().root),
                          watch_folder=str(watch.absolute()) if watch else None,
                          dataset=dataset, audit_cron=audit_cron, watch_cron=watch_cron,
                          rotate_cron=rotate_cron, dask_address=dask_address)
    if dry_run:
        rows = describe(build_deployments(config))
        if as_json:
            emit_json({"deployments": rows})
        else:
            for r in rows:
                console.print(f"{r['flow']}/{r['name']}  {' '.join(r['cron']) or 'on demand'}",
                              markup=False)
        return
    if not os.environ.get("PREFECT_API_URL"):
        raise BadInput("deploy needs a Prefect server: run 'prefect server start' and set "
                       "PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
    serve_forever(config)


def register(app: typer.Typer) -> None:
    """Add ``demo`` and ``deploy`` to the main app."""
    app.command("demo")(demo)
    app.command("deploy")(deploy)
