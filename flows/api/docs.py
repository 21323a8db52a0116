"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) served offline, from our own server.

The assets (Swagger UI's bundle and CSS, ReDoc's standalone bundle, a favicon) are the
files the ``fastapi-offline`` package ships; we serve them under ``/docs-assets/`` (a
fixed list of names, nothing else from that folder). The pages hold no inline script
(Swagger UI starts from ``/docs-assets/swagger-init.js``), so they work under a CSP
that allows only our own scripts; they load no web font and nothing from elsewhere.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.exceptions import HTTPException

ASSETS = "/docs-assets"
PAGES = ("/docs", "/redoc")
#: The Content-Security-Policy these pages need: ours only, no inline script; ReDoc injects
#: its styles (styled-components), hence 'unsafe-inline' for styles, on these pages only.
#: Checked in headless Chromium (both pages draw their operations under it; under
#: ``style-src 'self'`` Swagger UI still draws, ReDoc does not).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}


def _static() -> Path:
    return Path(str(resources.files("fastapi_offline") / "static"))


def _page(title: str, head: str, body: str) -> str:
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title><link rel=\"icon\" href=\"{ASSETS}/favicon.png\">"
            f"{head}</head><body>{body}</body></html>\n")


def mount(app: FastAPI) -> None:
    """Add ``/docs``, ``/redoc`` and their assets to ``app`` (built with docs_url=None)."""
    static = _static()
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return HTMLResponse(_page(
            f"{app.title} API - Swagger UI",
            f'<link rel="stylesheet" href="{root}{ASSETS}/swagger-ui.css">',
            f'<div id="swagger-ui" data-openapi="{root}{openapi_url}"></div>'
            f'<script src="{root}{ASSETS}/swagger-ui-bundle.js"></script>'
            f'<script src="{root}{ASSETS}/swagger-init.js"></script>'))

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return HTMLResponse(_page(
            f"{app.title} API - ReDoc", "",
            f'<redoc spec-url="{root}{openapi_url}"></redoc>'
            f'<script src="{root}{ASSETS}/redoc.standalone.js"></script>'))

    init = ("(function () {\n"
            "  var el = document.getElementById('swagger-ui');\n"
            "  window.ui = SwaggerUIBundle({url: el.getAttribute('data-openapi'),\n"
            "    dom_id: '#swagger-ui', validatorUrl: null, deepLinking: true,\n"
            "    presets: [SwaggerUIBundle.presets.apis], layout: 'BaseLayout',\n"
            "    persistAuthorization: false});\n"
            "})();\n")

    @app.get(ASSETS + "/swagger-init.js", include_in_schema=False)
    def swagger_init() -> Response:
        return Response(init, media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "public, max-age=3600"})

    @app.get(ASSETS + "/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        media = _FILES.get(name)
        if media is None:
            raise HTTPException(404, "no such documentation asset")
        return FileResponse(static / name, media_type=media,
                            headers={"Cache-Control": "public, max-age=86400"})
