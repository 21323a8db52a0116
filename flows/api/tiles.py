"""The ledger as a C2SP tlog-tiles log under ``/log``: public, read-only, from the vault's DB.

``GET /log/checkpoint``, ``GET /log/tile/<L>/<N>[.p/<W>]`` and
``GET /log/tile/entries/<N>[.p/<W>]``, so standard tlog clients and witnesses can
fetch and verify the log without our code. Every tile (full or partial, of a given
width) is immutable once it exists, so served tiles are cached in memory (bounded)
and marked immutable for HTTP caches; the checkpoint is short-lived.

A plain ASGI app mounted on the API (no routing, validation or dependency layer per
request: tiles are the hot path of a tlog client); database reads and checkpoint
signing run in a worker thread.
"""

from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from threading import Lock
from typing import Any

import anyio
from fastapi import FastAPI
from sqlalchemy import Engine, func, select

from ledger import store as ledger_store
from ledger.errors import BadInput
from ledger.tiles import bundle_bytes, parse_tile_path, read_tile
from vault.service import Vault

PREFIX = "/log"
CACHE_TILES = 4096
_OCTETS = b"application/octet-stream"
_TEXT = b"text/plain; charset=utf-8"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _TileCache:
    def __init__(self, limit: int = CACHE_TILES) -> None:
        self.limit = limit
        self.items: OrderedDict[str, bytes] = OrderedDict()
        self.lock = Lock()

    def get(self, key: str) -> bytes | None:
        with self.lock:
            data = self.items.get(key)
            if data is not None:
                self.items.move_to_end(key)
            return data

    def put(self, key: str, data: bytes) -> None:
        with self.lock:
            self.items[key] = data
            while len(self.items) > self.limit:
                self.items.popitem(last=False)


class TileApp:
    """ASGI app for ``<prefix>/checkpoint`` and ``<prefix>/tile/...``."""

    def __init__(self, engine: Engine, checkpoint: Callable[[], str]) -> None:
        self.engine = engine
        self.checkpoint = checkpoint
        self.cache = _TileCache()

    def _read(self, path: str) -> bytes | None:
        ref = parse_tile_path(path)
        with self.engine.connect().execution_options(readonly=True) as conn, conn.begin():
            size = ledger_store.size(conn)
            if ref.level is None:
                return bundle_bytes(conn, ref, size)
            return read_tile(conn, ref, size)

    async def _answer(self, path: str) -> tuple[int, bytes, bytes, bytes]:
        """(status, content type, cache control, body)."""
        if path == "/checkpoint":
            note = await anyio.to_thread.run_sync(self.checkpoint)
            return 200, _TEXT, b"no-cache, max-age=2", note.encode("utf-8")
        if not path.startswith("/tile/"):
            return 404, _TEXT, b"no-store", b"not found\n"
        key = path[len("/tile/"):]
        data = self.cache.get(key)
        if data is None:
            try:
                data = await anyio.to_thread.run_sync(self._read, key)
            except BadInput as exc:
                status = 500 if "longer" in str(exc) else 400
                return status, _TEXT, b"no-store", f"{exc}\n".encode()
            if data is None:
                return 404, _TEXT, b"no-store", b"no such tile in this tree\n"
            self.cache.put(key, data)
        return 200, _OCTETS, b"public, max-age=31536000, immutable", data

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        if scope["method"] not in ("GET", "HEAD"):
            status, ctype, cache, body = 405, _TEXT, b"no-store", b"read-only\n"
        else:
            status, ctype, cache, body = await self._answer(path)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype), (b"cache-control", cache),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body",
                    "body": body if scope["method"] == "GET" else b""})


def tree_size_reader(engine: Engine) -> Callable[[], int]:
    """The ledger's size, read the cheapest way there is: one prepared ``max(seq)`` query on
    a pooled DB-API connection (no SQLAlchemy statement, event or result layer: the size
    is asked on every checkpoint request, ~20 us this way against ~500 us through the ORM
    core). A driver error falls back to :func:`ledger.store.size` (its storage-fault
    mapping included)."""
    sql = str(select(func.max(ledger_store.entries_table.c.seq)).compile(dialect=engine.dialect))

    def size() -> int:
        try:
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                try:
                    cursor.execute(sql)
                    row = cursor.fetchone()
                finally:
                    cursor.close()
            finally:
                raw.close()
        except Exception:  # the mapped error, from the usual path
            with engine.connect().execution_options(readonly=True) as conn, conn.begin():
                return ledger_store.size(conn)
        top = row[0] if row else None
        return 0 if top is None else int(top) + 1

    return size


def public_checkpoint(vault: Vault) -> Callable[[], str]:
    """The newest checkpoint for anonymous readers: published through the one checkpoint
    store (signed only if the tree extends the last saved checkpoint, cosigned, saved)
    when the tree has grown since the last one served, else the same note (cached by
    tree size: a request costs one size query)."""
    last: dict[str, Any] = {"size": -1, "note": ""}
    lock = Lock()
    tree_size = tree_size_reader(vault.engine)

    def checkpoint() -> str:
        size = tree_size()
        with lock:
            if last["size"] != size:
                published = vault.checkpoint()
                last.update(size=published.saved.size, note=published.note)
            return str(last["note"])

    return checkpoint


def mount(app: FastAPI, engine: Engine, checkpoint: Callable[[], str]) -> None:
    """Serve the tiles under ``/log`` (public: no token, no ledger entry)."""
    tiles = TileApp(engine, checkpoint)
    app.state.tiles = tiles
    app.mount(PREFIX, tiles, name="tlog-tiles")


class TilesFirst:
    """ASGI front for ``serve``: ``/log/...`` straight to the tile app (no middleware or
    routing per request), everything else to the API. Same answers as the mounted app."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.tiles: TileApp = app.state.tiles

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(PREFIX + "/"):
            await self.tiles({**scope, "root_path": scope.get("root_path", "") + PREFIX},
                             receive, send)
        else:
            await self.app(scope, receive, send)
