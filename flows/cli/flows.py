"""``civicvault demo``, ``deploy`` and ``path-ref``: the Prefect side of the CLI.

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

from flows.output import console, emit_json, err_console
from vault.errors import BadInput
from vault.home import HOME_ENV, VaultHome


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
    ctx: typer.Context,
    watch: Annotated[Path | None, typer.Option(
        "--watch-folder", "--watch",
        help="Folder to ingest new files from: one watcher runs as long as deploy does.")]
    = None,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset for watched files.")]
    = "voters",
    after_ingest: Annotated[str, typer.Option(
        "--after-ingest", help="What happens to an ingested file: 'delete' (shred, the "
        "default) or 'keep' (moved to <folder>/.ingested, plaintext: a warning is logged).")]
    = "delete",
    quarantine_days: Annotated[float, typer.Option(
        "--quarantine-days", min=0.0, help="Days refused files stay in <home>/quarantine.")]
    = 7.0,
    audit_cron: Annotated[str, typer.Option("--audit-cron")] = "15 2 * * *",
    rotate_cron: Annotated[str, typer.Option("--rotate-cron")] = "30 3 1 * *",
    dask_address: Annotated[str | None, typer.Option(
        "--dask-address", envvar="CIVICVAULT_DASK_ADDRESS",
        help="Run ingest batches on this Dask cluster.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List deployments, serve none.")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: one JSON value.")]
    = False,
) -> None:
    """Serve the flows (audit nightly, monthly rotation, on-demand ingest/release/erasure)
    and, with --watch-folder, keep one watch-folder ingest running."""
    if watch is not None and not watch.is_dir():
        raise BadInput("--watch-folder: no such folder")  # the option, not the typed path
    if after_ingest not in ("delete", "keep"):
        raise BadInput("--after-ingest must be 'delete' or 'keep'")
    if not dry_run and not os.environ.get("PREFECT_API_URL"):
        raise BadInput("deploy needs a Prefect server: run 'prefect server start' and set "
                       "PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
    tokens: dict[str, str | None] = {"ingestor": None, "auditor": None}
    if not dry_run:
        tokens = _service_tokens(ctx)
    from flows.deploy import DeployConfig, build_deployments, describe, serve_forever

    home = VaultHome.from_env()
    config = DeployConfig(home=str(home.root), watch_folder=_folder_ref(home, watch, dry_run),
                          dataset=dataset, audit_cron=audit_cron, rotate_cron=rotate_cron,
                          dask_address=dask_address, after_ingest=after_ingest,
                          quarantine_days=quarantine_days,
                          ingestor_token_file=tokens["ingestor"],
                          auditor_token_file=tokens["auditor"])
    if dry_run:
        rows = describe(build_deployments(config))
        if as_json:
            emit_json({"deployments": rows})
        else:
            for r in rows:
                console.print(f"{r['flow']}/{r['name']}  {' '.join(r['cron']) or 'on demand'}",
                              markup=False)
        return
    if after_ingest == "keep":
        err_console.print("warning: --after-ingest keep leaves every ingested file in "
                          "plaintext under the watch folder's .ingested/", markup=False)
    serve_forever(config)


def _folder_ref(home: VaultHome, watch: Path | None, dry_run: bool) -> str | None:
    """The watch folder as the deployment's parameter: a kept reference to it, never its
    path (Prefect keeps and shows a deployment's parameters; a folder's name may name a
    person). A dry run writes nothing: it shows the reference a serving run would reuse,
    or where a new one would go."""
    from flows.flow_runtime import KEPT_PATHS_DIR, PATH_REF, existing_kept_path_ref, kept_path_ref

    if watch is None:
        return None
    if not dry_run:
        return kept_path_ref(home, watch)
    return existing_kept_path_ref(home, watch) or f"{PATH_REF}{KEPT_PATHS_DIR}/(new when served)"


def path_ref(
    path: Annotated[Path, typer.Argument(
        help="A file or folder a flow run reads, or a file it writes (its folder must "
        "exist).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON value.")] = False,
) -> None:
    """Print a reference to PATH to give a deployment or a Prefect run instead of the path
    (Prefect keeps and shows flow parameters; a file or folder name may name a person).

    The reference is a 0600 file in the vault home's flow-paths/ that holds the path,
    kept until removed by hand; asking again for the same path gives the same one. Every
    flow parameter that takes a path takes a reference:
    prefect deployment run ingest/ingest -p path=$(civicvault path-ref FILE)"""
    from flows.flow_runtime import kept_path_ref

    home = VaultHome.from_env()
    home.require_initialised()
    if not path.expanduser().exists() and not path.expanduser().absolute().parent.is_dir():
        raise BadInput("PATH: neither it nor its folder exists")  # not the typed path
    ref = kept_path_ref(home, path.expanduser())
    if as_json:
        emit_json({"ref": ref})
    else:
        console.print(ref, markup=False, soft_wrap=True)


def _service_tokens(ctx: typer.Context) -> dict[str, str | None]:
    """Make (or reuse) the ingestor and auditor principals; their token files' paths."""
    from flows.service_principals import AUDITOR, INGESTOR, ensure_service_principal
    from flows.session import open_session

    session = open_session(ctx)
    try:
        return {"ingestor": str(ensure_service_principal(
                    session.engine, session.home, session.principal, *INGESTOR)),
                "auditor": str(ensure_service_principal(
                    session.engine, session.home, session.principal, *AUDITOR))}
    finally:
        session.engine.dispose()


def register(app: typer.Typer) -> None:
    """Add ``demo``, ``deploy`` and ``path-ref`` to the main app."""
    app.command("demo")(demo)
    app.command("deploy")(deploy)
    app.command("path-ref")(path_ref)
