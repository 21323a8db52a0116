"""``civicvault classify PATH [--json]``: a dry run of PII classification.

Reads the file once, streaming, with every check ``ingest`` makes (so it refuses
exactly what ``ingest`` refuses, with the same message), classifies its columns
(names + an evenly spaced sample of values) and prints per column the entity,
category, confidence, handling and the evidence line (what the name and the sampled
values said, as shares). Stores nothing and never prints a data value. Inside an
initialised vault the request is
authorised (ingestor, steward, admin), ledgered, and the vault's installed
policy decides the handling; with no vault it is a local dry run under the
default policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.output import console, emit_json
from vault.home import VaultHome


def classify(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="CSV/TSV, Parquet or JSON Lines file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON value.")] = False,
    sample_rows: Annotated[
        int, typer.Option("--sample-rows", min=10, help="Values sampled per column.")
    ] = 300,
) -> None:
    """Dry run: per column label, confidence and handling (stores nothing)."""
    # the same streaming pass and checks as ``ingest``: what one refuses, so does the other
    home = VaultHome.from_env()
    if home.identity_path.exists():
        from flows.session import open_session

        done = open_session(ctx).vault.classify(path, sample_rows=sample_rows)
    else:
        from vault.service import classify_locally

        done = classify_locally(path, sample_rows=sample_rows)
    classes = done.classes
    if as_json:
        emit_json({"rows": done.rows, "columns": [c.as_json() for c in classes]})
        return
    # the file's name is the caller's typing (it may name a person): not echoed
    table = Table(title=f"the file: {done.rows} rows, {done.columns} columns")
    for header in ("column", "entity", "category", "confidence", "handling", "lookup"):
        table.add_column(header)
    for c in classes:
        table.add_row(c.name, c.entity, c.category, f"{c.confidence:.2f}", c.handling,
                      "yes" if c.lookup_key else "")
    console.print(table)
    # one evidence line per column, below the table so that narrow terminals keep it whole
    console.print("evidence:", markup=False, highlight=False)
    for c in classes:
        console.print(f"  {c.name}: {c.reason}", markup=False, highlight=False,
                      soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``classify`` to the main app."""
    app.command("classify")(classify)
