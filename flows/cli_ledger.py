"""``civicvault ledger ...`` commands (placeholder, filled in by the ledger work)."""

from __future__ import annotations

import typer

app = typer.Typer(help="The verifiable audit ledger.", no_args_is_help=True)
