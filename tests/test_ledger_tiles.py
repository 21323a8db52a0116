"""The ledger served as C2SP tlog-tiles, read back by an independent client over real HTTP.

The client below shares no code with ``ledger``: it parses the checkpoint, checks the
Ed25519 signature with pyca from the vkey text, fetches every tile and entry bundle
the checkpoint's size needs (full and partial), and recomputes the root from the
entries with a recursive RFC 6962 MTH.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from flows.cli import main
from ledger import store as ledger_store
from ledger.entry import EntryDraft
from ledger.errors import BadInput
from ledger.tiles import TileRef, parse_tile_path, tile_path
from vault.db import make_engine
from vault.home import VaultHome

# the log's size, init's own entries included: 257 full level-0 tiles and a partial one of
# width 44, a full level-1 tile and a partial one of width 1, a partial level-2 tile
LOG_SIZE = 256 * 256 + 300


@contextlib.contextmanager
def serving(home: VaultHome) -> Iterator[tuple[str, int]]:
    """``civicvault serve``'s app under uvicorn on 127.0.0.1, an ephemeral port."""
    import uvicorn

    from flows.api import create_app
    from flows.api.tiles import TilesFirst

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    app = TilesFirst(create_app(home, make_engine(home.db_url)))  # exactly what serve runs
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield "127.0.0.1", sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# -- an independent tlog-tiles client ------------------------------------------------------------


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, resp.read()


def _index_path(n: int) -> str:
    text = f"{n:03d}"
    parts = [text[max(0, i - 3):i] for i in range(len(text), 0, -3)][::-1]
    parts[0] = parts[0].rjust(3, "0")
    return "/".join([f"x{p}" for p in parts[:-1]] + [parts[-1]])


def _mth(hashes: list[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(hashes[:k]) + _mth(hashes[k:])).digest()


def fetch_and_verify(host: str, port: int, vkey: str) -> tuple[int, list[bytes]]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    status, note = _get(conn, "/log/checkpoint")
    assert status == 200
    text, sigs = note.decode().rsplit("\n\n", 1)
    origin, size_text, root_b64 = text.split("\n")[:3]
    name, key_id, key_b64 = vkey.strip().split("+", 2)
    assert origin == name
    public = base64.b64decode(key_b64)[1:]
    sig = next(line for line in sigs.splitlines() if line.startswith(f"\u2014 {name} "))
    blob = base64.b64decode(sig.rsplit(" ", 1)[1])
    assert blob[:4].hex() == key_id
    Ed25519PublicKey.from_public_bytes(public).verify(blob[4:], (text + "\n").encode())
    size, root = int(size_text), base64.b64decode(root_b64)
    entries: list[bytes] = []
    leaves: list[bytes] = []
    for n in range((size + 255) // 256):
        width = min(256, size - n * 256)
        suffix = "" if width == 256 else f".p/{width}"
        status, bundle = _get(conn, f"/log/tile/entries/{_index_path(n)}{suffix}")
        assert status == 200
        status, tile = _get(conn, f"/log/tile/0/{_index_path(n)}{suffix}")
        assert status == 200 and len(tile) == 32 * width
        pos, got = 0, []
        while pos < len(bundle):
            length = int.from_bytes(bundle[pos:pos + 2], "big")
            got.append(bundle[pos + 2:pos + 2 + length])
            pos += 2 + length
        assert len(got) == width
        hashes = [hashlib.sha256(b"\x00" + e).digest() for e in got]
        assert b"".join(hashes) == tile  # each entry hashes to its level-0 tile hash
        entries += got
        leaves += hashes
    level, below = 1, leaves
    while size >> (8 * level):
        count = size >> (8 * level)
        mine = []
        for n in range((count + 255) // 256):
            width = min(256, count - n * 256)
            suffix = "" if width == 256 else f".p/{width}"
            status, tile = _get(conn, f"/log/tile/{level}/{_index_path(n)}{suffix}")
            assert status == 200 and len(tile) == 32 * width
            for i in range(width):  # hash i is the MTH of full tile n*256+i of the level below
                j = n * 256 + i
                assert tile[32 * i:32 * i + 32] == _mth(below[j * 256:(j + 1) * 256])
            mine += [tile[32 * i:32 * i + 32] for i in range(width)]
        level, below = level + 1, mine
    assert _mth(leaves) == root
    conn.close()
    return size, entries


@pytest.fixture(scope="module")
def big_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaultHome]:
    root = tmp_path_factory.mktemp("tiles") / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("CIVICVAULT_HOME", str(root))
    mp.delenv("CIVICVAULT_DB_URL", raising=False)
    assert main(["init"]) == 0
    home = VaultHome.from_env()
    engine = make_engine(home.db_url)
    with engine.begin() as conn:
        todo = LOG_SIZE - ledger_store.size(conn)  # init writes a few entries of its own
        ledger_store.append(conn, [EntryDraft(actor="test", action="note.tile",
                                              resource=f"r/{i}") for i in range(todo)])
    engine.dispose()
    yield home
    mp.undo()


def test_tiles_are_readable_by_an_independent_client(big_home: VaultHome) -> None:
    from vault.transparency import log_vkeys

    with serving(big_home) as (host, port):
        size, entries = fetch_and_verify(host, port, log_vkeys(big_home)[0])
        assert size == LOG_SIZE and b'"action":"note.tile"' in entries[-1]
        conn = http.client.HTTPConnection(host, port, timeout=10)
        assert _get(conn, "/log/tile/0/257.p/44")[0] == 200  # the partial tile the tree has
        assert _get(conn, "/log/tile/0/257.p/45")[0] == 404  # wider than the tree has
        assert _get(conn, "/log/tile/1/001")[0] == 404  # a full tile the tree lacks
        assert _get(conn, "/log/tile/0/1")[0] == 400  # not zero-padded
        assert _get(conn, "/log/tile/0/x000/001")[0] == 400  # non-canonical index
        assert _get(conn, "/log/tile/64/000")[0] == 400
        assert _get(conn, "/log/tile/0/000.p/0")[0] == 400
        status, body = _get(conn, "/log/tile/0/000")
        assert status == 200 and len(body) == 8192
        conn.close()


def test_tile_paths_round_trip() -> None:
    assert tile_path(TileRef(0, 1234067, 256)) == "tile/0/x001/x234/067"
    assert tile_path(TileRef(None, 5, 7)) == "tile/entries/005.p/7"
    for ref in (TileRef(2, 0, 1), TileRef(0, 1000, 256), TileRef(None, 999999, 200)):
        assert parse_tile_path(tile_path(ref).removeprefix("tile/")) == ref
    for bad in ("0/1234", "0/x1/234", "00/000", "entries/000.p/256", "a/000", "0/000.p/01"):
        with pytest.raises(BadInput):
            parse_tile_path(bad)


def test_tiles_of_a_small_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CIVICVAULT_DB_URL", raising=False)
    assert main(["init"]) == 0
    home = VaultHome.from_env()
    from vault.transparency import log_vkeys

    with serving(home) as (host, port):
        size, entries = fetch_and_verify(host, port, log_vkeys(home)[0])
        assert size == len(entries) >= 1
