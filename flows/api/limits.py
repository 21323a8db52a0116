"""Limits of the HTTP API: request bodies capped, repeated denials counted instead of ledgered.

**Body limit** (:class:`BodyLimit`, a pure ASGI middleware, outermost but for the
tiles): a request whose ``Content-Length`` is over the cap is refused (413 problem)
without reading a byte; otherwise the body is read here, counting the bytes of every
chunk (chunked or streamed bodies too) and refused as soon as the count passes the
cap. Only then does the request reach routing, authentication and parsing, with the
buffered body replayed (and kept in the scope, so error details can refuse to echo it).

**Repeated denials** (:class:`DenialLimiter`): a denial (403, or the 401 of a revoked
principal's token, ledgered as ``auth.denied``) is ledgered by the vault as always. The
API then remembers, for a window (``window_seconds``, default 30), the exact request
that was denied: the token (one principal's), method, route, query and body, as one
SHA-256 fingerprint. The same request from the same principal inside the window is
answered 429 (``Retry-After``: seconds until the window closes) **without**
authenticating, asking the policy or writing the ledger; it is counted. An unknown
token's 401 writes nothing and is never limited. When the window has closed, the count
of repeats is ledgered as one ``policy.denied.repeated`` entry (details: ``count``,
``window_seconds``, ``route``, ``request`` fingerprint, ``error``), at the next
authenticated request the API serves or when the server stops. A repeat after the
window is decided (and ledgered) afresh, opening a new window if denied again. A request
that differs in any byte is decided as usual. Memory is bounded (``max_windows``: the
oldest window is closed early, its count ledgered like the others).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from flows.api.problems import BODY_KEY, PROBLEM_JSON, problem_bytes
from vault.access import Principal

MAX_BODY_BYTES = 1 << 20  # 1 MiB: ample for every body of the API (notes, policy files)
DENIAL_WINDOW_SECONDS = 30

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (413) before anything else looks at them."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send, status: int, kind: str, detail: str) -> None:
        body = problem_bytes(status, kind, detail)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request bodies are capped at {self.max_bytes} bytes"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit():
                    await self._refuse(send, 400, "bad-request",
                                       "Content-Length is not a byte count")
                    return
                if int(value) > self.max_bytes:
                    await self._refuse(send, 413, "request-too-large", too_large)
                    return
        chunks: list[bytes] = []
        seen = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await self._refuse(send, 413, "request-too-large", too_large)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app({**scope, BODY_KEY: body}, replay, send)


@dataclass
class Window:
    """One denied request's window: who, what (route and fingerprint), how many repeats."""

    principal: Principal
    route: str
    request: str
    error: str
    opened: float
    count: int = 0


class DenialLimiter:
    """Windows of denied requests (see the module docstring). Thread-safe."""

    def __init__(self, window_seconds: int = DENIAL_WINDOW_SECONDS, *,
                 clock: Callable[[], float] = time.monotonic, max_windows: int = 10_000) -> None:
        self.window_seconds = window_seconds
        self.clock = clock
        self.max_windows = max_windows
        self._open: OrderedDict[str, Window] = OrderedDict()
        self._closed: list[Window] = []
        self._lock = threading.Lock()

    @staticmethod
    def fingerprint(token: str, method: str, route: str, query: bytes, body: bytes) -> str:
        """The identity of a request: the bearer token (one principal's), method, route,
        query and body, hashed (the token and the body are never kept)."""
        h = hashlib.sha256(b"civicvault/denial-window/v1\0")
        for part in (hashlib.sha256(token.encode()).digest(), method.encode(), route.encode(),
                     query, hashlib.sha256(body).digest()):
            h.update(len(part).to_bytes(8, "big") + part)
        return h.hexdigest()[:32]

    def retry_after(self, key: str) -> int | None:
        """Seconds left in ``key``'s window (and the repeat counted), or None: decide it."""
        now = self.clock()
        with self._lock:
            w = self._open.get(key)
            if w is None:
                return None
            left = w.opened + self.window_seconds - now
            if left <= 0:
                self._close(key)
                return None
            w.count += 1
            return max(1, math.ceil(left))

    def denied(self, key: str, principal: Principal, route: str, error: str) -> None:
        """``key`` was just denied (and ledgered): open its window."""
        now = self.clock()
        with self._lock:
            if key in self._open:
                self._close(key)
            self._open[key] = Window(principal, route, key[:16], error, now)
            while len(self._open) > self.max_windows:
                self._close(next(iter(self._open)))

    def _close(self, key: str) -> None:
        w = self._open.pop(key)
        if w.count:
            self._closed.append(w)

    def keep(self, windows: list[Window]) -> None:
        """Closed windows whose counts could not be ledgered yet: offered again by ``due``."""
        with self._lock:
            self._closed[:0] = windows

    def due(self, *, everything: bool = False) -> list[Window]:
        """Closed windows with repeats, to ledger now (``everything``: close all first)."""
        now = self.clock()
        with self._lock:
            while self._open:  # oldest first: windows are kept in the order they opened
                key, w = next(iter(self._open.items()))
                if not everything and w.opened + self.window_seconds > now:
                    break
                self._close(key)
            done, self._closed = self._closed, []
        return done
