"""Security headers on every response (a pure ASGI middleware: no body buffering).

* ``Content-Security-Policy``: scripts and styles only from this server, no inline
  script, no plugins, no framing, forms post only here. What the pages need beyond
  ``default-src 'self'`` and why: ``img-src data:`` (none today; kept for SVG charts a
  browser may turn into images when saved) -- nothing else: charts arrive as inline
  SVG markup inside JSON (no style attributes, no scripts), downloads are ``blob:``
  URLs made by our own script (navigations, which CSP does not govern). No web fonts
  (``font-src 'none'``): text uses the system ``system-ui``/``sans-serif``.
  ``/docs`` and ``/redoc`` get ``flows.api.docs.CSP`` (served offline, no inline
  script; ReDoc injects styles, so ``'unsafe-inline'`` for styles there only).
* ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``,
  ``X-Frame-Options: DENY`` (for browsers that ignore ``frame-ancestors``).
* ``Cache-Control: no-store`` on data (``/api/...``) and pages unless the route set its
  own (the public checkpoint's short cache, immutable tiles keep theirs).
"""

from __future__ import annotations

from typing import Any

from flows.api.docs import CSP as DOCS_CSP
from flows.api.docs import PAGES as _DOCS

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'none'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")
_ALWAYS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
           (b"x-frame-options", b"DENY"))


class SecurityHeaders:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        csp = (DOCS_CSP if path.startswith(_DOCS) else CSP).encode()
        static = path.startswith("/web/static/")

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in _ALWAYS if k not in have]
                if b"content-security-policy" not in have:
                    headers.append((b"content-security-policy", csp))
                if b"cache-control" not in have:
                    headers.append((b"cache-control", b"no-cache" if static else b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
