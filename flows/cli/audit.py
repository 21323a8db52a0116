"""``civicvault audit report``: the compliance officer's view, as a self-contained HTML file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from flows.output import console, emit_json
from flows.outputs import check_output, publish
from flows.session import open_session
from vault.errors import BadInput

app = typer.Typer(help="Audit reports for compliance officers.", no_args_is_help=True)

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?Z?)?$")


@app.command("report")
def report(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Where to write the HTML report.")],
    since: Annotated[str | None, typer.Option("--since", help="Only entries from this date "
                                              "(YYYY-MM-DD or RFC 3339, UTC).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON value.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite an existing --out file (never inside the vault home).")
    ] = False,
) -> None:
    """Verify the ledger and the vault, and write who did what, when and why."""
    from flows.report_html import render_report

    if since is not None and not _DATE.match(since):
        raise BadInput("--since takes YYYY-MM-DD or an RFC 3339 UTC time")
    out = check_output(out, option="--out", force=force, suffixes=(".html", ".htm"))
    done = open_session(ctx).vault.audit(since=since)  # checkpoint: the one store's newest
    verdict, summary = done.verdict, done.summary
    html = render_report(origin=done.origin, vkey=done.vkey, verdict=verdict,
                         summary=summary, checkpoint=done.checkpoint, since=since)
    publish(out, lambda p: p.write_text(html, encoding="utf-8"), force=force)
    if json_out:
        # "out": the report went to the --out file; its path (the caller's typing) is not echoed
        emit_json({"out": True, "verdict": verdict.to_json(), "summary": summary.to_json()})
    else:
        state = "verified" if verdict.ok else f"VERIFICATION FAILED: {verdict.problem}"
        console.print(f"wrote the --out file: {summary.entries} entries, ledger {state}",
                      markup=False)
    if not verdict.ok:
        raise typer.Exit(1)
