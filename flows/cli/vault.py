"""``civicvault init | ingest | erase | keys rotate``: vault-core commands."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from flows.output import console, emit_json
from flows.purpose import PurposeOpt, checked_purpose
from flows.session import open_session
from policies.validate import parse_name
from vault.errors import BadInput
from vault.home import VaultHome

keys_app = typer.Typer(help="Key management.", no_args_is_help=True)

SPREADSHEETS = frozenset({".xlsx", ".xls", ".xlsm", ".ods", ".numbers"})
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON value.")]


def init(json_out: JsonOpt = False) -> None:
    """Create the vault home: database schema, KEK, signing key, default policy, admin token."""
    from vault.setup import init_home

    report = init_home(VaultHome.from_env())
    if json_out:
        emit_json(report.__dict__)
        return
    console.print(f"vault initialised at {report.home}")
    console.print(f"  identity (checkpoint origin): {report.identity}")
    console.print(f"  database: {report.database}")
    console.print(f"  admin token: {report.admin_token_path} (mode 0600)")
    console.print(f"  ledger verifier key: {report.vkey}")


def _parse_match(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        col, sep, value = item.partition("=")
        if not sep or not col.strip():
            raise BadInput("--match takes COL=VALUE")
        out[parse_name(col.strip(), "column", what="--match column")] = value
    return out


def ingest(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="CSV/TSV/Parquet/JSONL file, or a folder of them.")],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name.")],
    json_out: JsonOpt = False,
    prefect: Annotated[bool | None, typer.Option(
        "--prefect/--no-prefect", help="Run as the Prefect 'ingest' flow (default: when "
        "PREFECT_API_URL is set).")] = None,
) -> None:
    """Classify, encrypt and store a file or folder; every batch lands on the ledger."""
    if not path.exists():  # before the vault, Presidio or Prefect are loaded; the path
        # is the caller's typing (a file name may name a person): never echoed
        raise BadInput("the file or folder given to ingest does not exist")
    if path.suffix.lower() in SPREADSHEETS:
        raise BadInput(f"{path.suffix} spreadsheets are not read: save the sheet as CSV "
                       "(UTF-8) or Parquet and ingest that file")
    from flows.ingest_runner import prefect_configured, run_ingest

    session = open_session(ctx)
    via_prefect = prefect if prefect is not None else prefect_configured()
    token = (ctx.find_root().obj or {}).get("token")
    if json_out or via_prefect:  # no progress bar: stdout carries one JSON value / flow logs
        report = run_ingest(session, path, dataset, progress=None, via_prefect=via_prefect,
                            token=token)
    else:
        from flows.ingest_runner import source_files

        sizes = [max(1, f.stat().st_size) for f in source_files(path)]
        with Progress(TextColumn("[bold]ingest[/] {task.description}"), BarColumn(),
                      DownloadColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                      TextColumn("ETA"), TimeRemainingColumn(), console=console,
                      transient=True) as bar:
            # the total is known up front: the bytes of the source file(s); a file's share
            # advances with its rows stored (reading and classifying come first)
            task = bar.add_task(dataset, total=sum(sizes), rate="")
            at = {"file": 0, "base": 0, "rows": 0}
            started = time.monotonic()

            def progress(done: int, total: int) -> None:  # rows stored, rows in the file
                i = min(at["file"], len(sizes) - 1)
                bar.update(task, completed=at["base"] + sizes[i] * done // max(1, total))
                elapsed = max(1e-6, time.monotonic() - started)
                bar.update(task, rate=f"{(at['rows'] + done) / elapsed:,.0f} rows/s")
                if done >= total:
                    at["file"], at["base"] = at["file"] + 1, at["base"] + sizes[i]
                    at["rows"] += total
                    # a file's rows are stored; a large load builds its deferred indexes
                    # now, which takes seconds to minutes with the bar full: the rate's
                    # place says so (a fixed text; the next batch's rate replaces it)
                    bar.update(task, rate=FINISHING, refresh=True)

            report = run_ingest(session, path, dataset, progress=progress, via_prefect=False)
    if json_out:
        emit_json(report)
        return
    console.print(f"dataset {report['dataset']}: {report['rows_added']} rows added, "
                  f"{report.get('rows_updated', 0)} updated, "
                  f"{report['duplicates_skipped']} duplicates skipped, "
                  + (f"{report['erased_suppressed']} rows of erased subjects not added back, "
                     if report.get("erased_suppressed") else "")
                  + f"{report['batches']} batches")
    for col in report["columns"]:
        console.print(f"  {col['name']:<28} {col['category']:<10} {col['handling']}")


FINISHING = "rows stored, finishing indexes"


def erase(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name.")],
    match: Annotated[list[str], typer.Option("--match", help="COL=VALUE on a lookup column; "
                                             "repeat to require several.")],
    purpose: PurposeOpt = None,
    json_out: JsonOpt = False,
    receipt_out: Annotated[Path | None, typer.Option(
        "--receipt", help="Write the erasure's receipt (C2SP tlog-proof) to FILE.")] = None,
) -> None:
    """Erase every subject matching the lookup values (crypto-shredding)."""
    from flows.receipts import receipts, write_receipt

    parse_name(dataset, "dataset")  # before the name reaches the ledger as a resource
    why = checked_purpose(purpose)
    criteria = _parse_match(match)
    if receipt_out is not None:
        from flows.outputs import check_output

        receipt_out = check_output(receipt_out, option="--receipt", force=False)
    session = open_session(ctx)
    report, seq = session.vault.erase(dataset, criteria, purpose=why)
    receipt = receipts(session.vault, [seq])[0] if seq is not None else None
    if receipt_out is not None and receipt is not None:
        write_receipt(receipt_out, receipt)
    if json_out:
        emit_json({**report.__dict__, "ledger_seq": seq, "receipt": receipt})
    elif report.subjects_erased:
        console.print(f"erased {report.subjects_erased} subject(s) from {dataset}; "
                      f"{report.batches_resealed} batch(es) re-sealed")
    else:
        console.print(f"no subject of {dataset} matched; nothing erased (the request is ledgered)")


@keys_app.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    json_out: JsonOpt = False,
    reencrypt_data: Annotated[bool, typer.Option(
        "--reencrypt/--no-reencrypt", help="Also move data off retired keys now.")] = True,
) -> None:
    """New KEK version, rewrap every data key, then re-encrypt data under retired keys."""
    done = open_session(ctx).vault.keys_rotate(reencrypt=reencrypt_data)
    kek, rewrapped = done["kek_version"], done["data_keys_rewrapped"]
    batches, subjects, destroyed = (done.get(k, 0) for k in (
        "batches_resealed", "subject_keys_rewrapped", "keys_destroyed"))
    out = {"kek_version": kek, "data_keys_rewrapped": rewrapped, "batches_resealed": batches,
           "subject_keys_rewrapped": subjects, "keys_destroyed": destroyed}
    if json_out:
        emit_json(out)
    else:
        console.print(f"KEK version {kek} is current; {rewrapped} data keys rewrapped; "
                      f"{batches} batches re-sealed, {subjects} subject keys rewrapped, "
                      f"{destroyed} retired keys destroyed")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("ingest")(ingest)
    app.command("erase")(erase)
    app.add_typer(keys_app, name="keys")
