"""``civicvault serve``: the HTTP API (OpenAPI at /openapi.json) and the dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.output import console
from vault.errors import BadInput


def _tls_files(cert: Path | None, key: Path | None) -> tuple[str, str] | None:
    """Both TLS files, checked before anything starts (one line each, exit 2), or None."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise BadInput("--tls-cert and --tls-key go together: give both")
    import ssl

    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file():  # the option, not the path typed for it (it may name a person)
            raise BadInput(f"{option}: no such file")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError, ValueError):
        raise BadInput("--tls-cert/--tls-key: not a PEM certificate and its matching private "
                       "key (unencrypted)") from None
    return str(cert), str(key)


def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    tls_cert: Annotated[Path | None, typer.Option(
        "--tls-cert", help="PEM certificate (chain): serve HTTPS. With --tls-key.")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        "--tls-key", help="PEM private key of --tls-cert (unencrypted).")] = None,
) -> None:
    """Serve the API (bearer tokens) and the dashboard until interrupted."""
    import uvicorn

    from flows.api import create_app
    from flows.api.tiles import TilesFirst
    from flows.session import open_home

    if not 0 < port < 65536:
        raise BadInput("--port must be 1-65535")
    tls = _tls_files(tls_cert, tls_key)
    home, engine = open_home()
    scheme = "https" if tls else "http"
    console.print(f"civicvault API on {scheme}://{host}:{port}  (OpenAPI: /openapi.json, "
                  "docs: /docs)")
    uvicorn.run(TilesFirst(create_app(home, engine)), host=host, port=port,
                ssl_certfile=tls[0] if tls else None, ssl_keyfile=tls[1] if tls else None,
                log_level="warning", access_log=False)  # access logs: query strings, off


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
