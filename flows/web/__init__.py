"""The workbench in the browser: pages, their static files and JSON endpoints.

``install(app, public)`` adds, to the HTTP API's app:

* (``SecurityHeaders``, from ``flows.web.headers``, is added by ``create_app`` as the
  outermost middleware, so every answer carries it);
* the pages (``/`` sign-in, ``/web/analyst``, ``/web/compliance``, ``/web/steward``):
  plain HTML files with no inline script; ``/web/static/`` serves their script,
  style sheet and nothing else (no CDN, no web font: everything is served here);
* the JSON endpoints (``flows.web.routes``), which call only ``vault.service.Vault``.

A page holds the principal token in ``sessionStorage`` (gone with the tab) and sends
it as ``Authorization: Bearer``; pages themselves are public and hold no data.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from flows.web.headers import SecurityHeaders
from vault.service import Vault

__all__ = ["PAGES", "SecurityHeaders", "install"]

HERE = Path(__file__).parent
PAGES = ("analyst", "compliance", "steward")


def _page(name: str) -> Callable[[], FileResponse]:
    path = HERE / "pages" / f"{name}.html"

    def page() -> FileResponse:
        return FileResponse(path, media_type="text/html")

    return page


def install(app: FastAPI, public: Vault) -> None:
    """Add the workbench to ``app``: call before the app's own ``/`` route."""
    from flows.web.routes import build_router

    @app.get("/", include_in_schema=False)
    def login() -> FileResponse:
        return FileResponse(HERE / "pages" / "login.html", media_type="text/html")

    for name in PAGES:
        app.add_api_route(f"/web/{name}", _page(name), methods=["GET"],
                          include_in_schema=False, name=f"page_{name}")

    app.include_router(build_router(public))
    app.mount("/web/static", StaticFiles(directory=HERE / "static"), name="web-static")
