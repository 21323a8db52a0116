"""``civicvault serve``: the HTTP API (OpenAPI at /openapi.json) and the dashboard."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.output import console
from vault.errors import BadInput


def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
) -> None:
    """Serve the API (bearer tokens) and the dashboard until interrupted."""
    import uvicorn

    from flows.api import create_app
    from flows.session import open_home

    if not 0 < port < 65536:
        raise BadInput("--port must be 1-65535")
    home, engine = open_home()
    console.print(f"civicvault API on http://{host}:{port}  (OpenAPI: /openapi.json)")
    from flows.api_tiles import TilesFirst

    uvicorn.run(TilesFirst(create_app(home, engine)), host=host, port=port,
                log_level="warning", access_log=False)  # access logs: query strings, off


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
