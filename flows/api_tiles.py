"""The ledger as a C2SP tlog-tiles log under ``/log``: public, read-only, from the vault's DB.

``GET /log/checkpoint``, ``GET /log/tile/<L>/<N>[.p/<W>]`` and
``GET /log/tile/entries/<N>[.p/<W>]``, so standard tlog clients and witnesses can
fetch and verify the log without our code. Every tile (full or partial, of a given
width) is immutable once it exists, so served tiles are cached in memory (bounded)
and marked immutable for HTTP caches; the checkpoint is short-lived.
"""

from collections import OrderedDict
from collections.abc import Callable
from threading import Lock

from fastapi import FastAPI
from fastapi.responses import Response
from sqlalchemy import Engine

from ledger import store as ledger_store
from ledger.errors import BadInput
from ledger.tiles import bundle_bytes, parse_tile_path, read_tile
from vault.home import VaultHome

PREFIX = "/log"
CACHE_TILES = 4096
_IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
_OCTETS = "application/octet-stream"


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


def mount(app: FastAPI, home: VaultHome, engine: Engine,
          checkpoint: Callable[[], Response]) -> None:
    cache = _TileCache()

    app.get(f"{PREFIX}/checkpoint", include_in_schema=True,
            summary="tlog-tiles checkpoint (public)")(checkpoint)

    def _read(path: str) -> bytes | None:
        ref = parse_tile_path(path)
        with engine.connect().execution_options(readonly=True) as conn, conn.begin():
            size = ledger_store.size(conn)
            if ref.level is None:
                return bundle_bytes(conn, ref, size)
            return read_tile(conn, ref, size)

    @app.get(PREFIX + "/tile/{path:path}", summary="tlog-tiles tile or entry bundle (public)")
    def tile(path: str) -> Response:
        data = cache.get(path)
        if data is None:
            try:
                data = _read(path)
            except BadInput as exc:
                status = 500 if "longer" in str(exc) else 400
                return Response(f"{exc}\n", status_code=status, media_type="text/plain")
            if data is None:
                return Response("no such tile in this tree\n", status_code=404,
                                media_type="text/plain")
            cache.put(path, data)
        return Response(data, media_type=_OCTETS, headers=_IMMUTABLE)
