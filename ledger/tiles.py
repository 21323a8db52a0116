"""C2SP tlog-tiles (https://c2sp.org/tlog-tiles) read from the stored ledger.

Tile ``<L>/<N>[.p/<W>]`` holds hashes ``i = 0..W-1`` (256 for a full tile) of
``MTH(D[(N*256+i) * 256**L : (N*256+i+1) * 256**L])``: the stored perfect node of
Merkle level ``8*L`` and index ``N*256+i`` (level 0: the entries' leaf hashes).
Entry bundle ``entries/<N>[.p/<W>]`` is the entries ``N*256 .. N*256+W-1``, each
prefixed by its length as a big-endian uint16.

A tile exists for a tree of ``size`` entries iff all its hashes do:
``(N*256 + W) * 256**L <= size``; full tiles are immutable, partial ones are the
rightmost (any width up to what the tree has, so every checkpointed size is served).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection

from ledger import store
from ledger.errors import BadInput

__all__ = ["TILE_WIDTH", "TileRef", "bundle_bytes", "parse_tile_path", "read_tile",
           "tile_path"]

TILE_WIDTH = 256
HEIGHT = 8
MAX_ENTRY = 0xFFFF
_INDEX_PART = re.compile(r"x\d{3}")


@dataclass(frozen=True)
class TileRef:
    level: int | None  # None: an entry bundle
    index: int
    width: int  # 256 for a full tile

    @property
    def full(self) -> bool:
        return self.width == TILE_WIDTH

    def end(self) -> int:
        """The tree size this tile needs: ``(index*256 + width) * 256**level``."""
        level = self.level or 0
        return (self.index * TILE_WIDTH + self.width) << (HEIGHT * level)


def tile_path(ref: TileRef) -> str:
    """``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]``."""
    digits = f"{ref.index:03d}"
    groups: list[str] = []
    while len(digits) > 3:
        groups.insert(0, digits[-3:])
        digits = digits[:-3]
    groups.insert(0, digits.rjust(3, "0"))
    n = "/".join([f"x{g}" for g in groups[:-1]] + [groups[-1]])
    head = "entries" if ref.level is None else str(ref.level)
    return f"tile/{head}/{n}" + ("" if ref.full else f".p/{ref.width}")


def parse_tile_path(path: str) -> TileRef:
    """Parse ``<L or entries>/<N>[.p/<W>]`` (the part after ``tile/``); BadInput if malformed."""
    parts = path.split("/")
    if len(parts) < 2:
        raise BadInput("malformed tile path")
    head, rest = parts[0], parts[1:]
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        w = rest[-1]
        if not w.isdigit() or not w.isascii() or w[0] == "0" or not 1 <= int(w) <= 255:
            raise BadInput("malformed partial tile width")
        width = int(w)
        rest = [*rest[:-2], rest[-2][:-2]]
    if not rest or any(not _INDEX_PART.fullmatch(p) for p in rest[:-1]):
        raise BadInput("malformed tile index")
    last = rest[-1]
    if len(last) != 3 or not last.isdigit() or not last.isascii():
        raise BadInput("malformed tile index")
    index = int("".join(p.lstrip("x") for p in rest))
    if head == "entries":
        level: int | None = None
    elif head.isdigit() and head.isascii() and (head == "0" or head[0] != "0") \
            and int(head) <= 63:
        level = int(head)
    else:
        raise BadInput("malformed tile level")
    ref = TileRef(level, index, width)
    if tile_path(ref) != "tile/" + path:
        raise BadInput("non-canonical tile path")
    return ref


def read_tile(conn: Connection, ref: TileRef, size: int) -> bytes | None:
    """The tile's bytes, or None if the tree of ``size`` entries does not have it."""
    if ref.level is None:
        raise BadInput("use bundle_bytes for entry bundles")
    if ref.end() > size:
        return None
    lo = ref.index * TILE_WIDTH
    hi = lo + ref.width
    if ref.level == 0:
        hashes = store.leaf_hashes(conn, lo, hi)
    else:
        level = HEIGHT * ref.level
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        rows = conn.exec_driver_sql(
            f"SELECT idx, hash FROM ledger_nodes WHERE level = {mark} AND idx >= {mark} "
            f"AND idx < {mark} ORDER BY idx", (level, lo, hi)).fetchall()
        hashes = [bytes(h) for _, h in rows]
    if len(hashes) != ref.width:
        return None
    return b"".join(hashes)


def bundle_bytes(conn: Connection, ref: TileRef, size: int) -> bytes | None:
    """The entry bundle's bytes, or None if the tree of ``size`` entries does not have it.

    Raises BadInput if an entry is longer than 65535 bytes (tlog-tiles' uint16 prefix).
    """
    if ref.level is not None:
        raise BadInput("not an entry bundle")
    if ref.end() > size:
        return None
    lo = ref.index * TILE_WIDTH
    entries = list(store.iter_entries(conn, lo, lo + ref.width))
    if len(entries) != ref.width:
        return None
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY:
            raise BadInput("a ledger entry is longer than a tlog-tiles bundle allows")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)
