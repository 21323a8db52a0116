"""The stored tree nodes are never trusted: re-fold them from the leaf hashes and compare.

``ledger_nodes`` serves roots and proofs. A node edited in place changes no root
that verification computes from the entries, yet every proof served through it
fails against a signed checkpoint; a node deleted or added stops appends or
serves a forged path. :func:`check_nodes` recomputes every perfect node of the
tree over ``leaves`` (the stored leaf hashes, already held against the entries)
and compares it with every stored row, naming the first row that differs, is
missing or has no business being there (PURE: rows in, verdict out).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from ledger.errors import LedgerTampered
from ledger.merkle import frontier_keys, node_hash

__all__ = ["BLOCK_LEVEL", "NodeFolder", "StoredNodes", "check_nodes", "group_nodes"]


def check_nodes(
    leaves: Sequence[bytes], stored: Iterable[tuple[int, int, bytes]], *, min_level: int
) -> int:
    """Compare stored ``(level, idx, hash)`` rows with the tree over ``leaves``.

    Every perfect node of level ``>= min_level`` must be stored; stored rows of a
    lower level (older layouts) must be right too. Returns the rows checked.
    """
    n = len(leaves)
    by_level: dict[int, dict[int, bytes]] = {}
    count = 0
    for level, idx, digest in stored:
        by_level.setdefault(int(level), {})[int(idx)] = bytes(digest)
        count += 1
    sha = hashlib.sha256
    row: Sequence[bytes] = leaves
    level = 0
    top = max([*by_level, n.bit_length()])
    while level < top:
        row = [sha(b"\x01" + a + b).digest() for a, b in zip(row[0::2], row[1::2], strict=False)]
        level += 1
        have = by_level.pop(level, {})
        width = 1 << level
        size = len(row)
        if (all(i < size and row[i] == d for i, d in have.items())
                and (level < min_level or len(have) == size)):
            continue
        for i in sorted(set(have) | (set(range(size)) if level >= min_level else set())):
            lo = i * width
            where = f"tree node (level {level}, index {i}) over entries {lo}..{lo + width - 1}"
            if i >= size:
                raise LedgerTampered(f"{where} is stored but the log has only {n} entries "
                                     "(entries deleted from the end, or a node added)",
                                     seq=min(lo, n))
            if i not in have:
                raise LedgerTampered(f"{where} is missing from ledger_nodes (deleted)")
            if have[i] != row[i]:
                raise LedgerTampered(f"{where} differs from the entries' leaf hashes "
                                     "(ledger_nodes edited)")
    for level in sorted(by_level):  # stored rows at levels no tree of this size has
        idx = min(by_level[level])
        raise LedgerTampered(f"tree node (level {level}, index {idx}) is stored but no tree of "
                             f"{n} entries has it (a node added)")
    return count



BLOCK_LEVEL = 14
"""``NodeFolder`` folds blocks of ``2**BLOCK_LEVEL`` leaves as they stream past."""

StoredNodes = dict[int, dict[int, bytes]]
"""Stored ``ledger_nodes`` rows: level -> index -> hash."""


def group_nodes(rows: Iterable[tuple[int, int, bytes]]) -> StoredNodes:
    out: StoredNodes = {}
    for level, idx, digest in rows:
        out.setdefault(int(level), {})[int(idx)] = bytes(digest)
    return out


def _where(level: int, idx: int) -> str:
    width = 1 << level
    return (f"tree node (level {level}, index {idx}) over entries {idx * width}.."
            f"{idx * width + width - 1}")


class NodeFolder:
    """Every perfect node over a segment of leaves, folded as the leaves stream in.

    The pass that checks the entries also re-folds the tree: each node is computed
    once and compared with its stored row (popped from ``stored``); the segment's
    RFC 9162 root and the requested prefix roots fall out of the same fold.
    Memory: one block of leaves and one node per finished block. PURE.

    ``start`` is 0 or a power of two at least the segment's length (as
    ``ledger.verify.LogChecker``); ``stored`` holds the rows over this segment
    (global indexes). Rows still in ``stored`` after ``finish`` lie over no
    perfect node of the segment (``leftovers``).
    """

    def __init__(
        self, start: int, stored: StoredNodes, *, min_level: int,
        prefix_sizes: Iterable[int] = (),
    ) -> None:
        self.start = start
        self.stored = stored
        self.min_level = min_level
        self.buf: list[bytes] = []
        self.buf_at = start  # global index of buf[0]
        self.tops: list[bytes] = []  # roots of the finished blocks
        self.frontier: dict[int, bytes] = {}
        self.checked = 0
        self.cuts = sorted({p - start for p in prefix_sizes if p > start})
        self.wanted = {key for c in self.cuts for key in frontier_keys(c)}
        self.kept: dict[tuple[int, int], bytes] = {}

    def feed(self, leaves: Sequence[bytes]) -> None:
        self._keep(0, self.buf_at - self.start + len(self.buf), leaves)
        self.buf += leaves
        block = 1 << BLOCK_LEVEL
        while len(self.buf) >= block:
            row, _ = self._fold(self.buf[:block], 0, self.buf_at, BLOCK_LEVEL, last=False)
            self.tops += row
            del self.buf[:block]
            self.buf_at += block

    def _keep(self, level: int, rel_first: int, row: Sequence[bytes]) -> None:
        """Remember the nodes a prefix root needs (segment-relative indexes)."""
        if not self.wanted:
            return
        lo = rel_first >> level
        for lv, idx in self.wanted:
            if lv == level and lo <= idx < lo + len(row):
                self.kept[(lv, idx)] = row[idx - lo]

    def _fold(
        self, row: Sequence[bytes], level: int, first: int, upto: int, *, last: bool
    ) -> tuple[list[bytes], int]:
        """Pair ``row`` (nodes of ``level`` from global leaf ``first`` on) up to ``upto`` or
        as far as it pairs, checking every level against the stored rows. ``last``: the
        log's right edge, whose unpaired nodes are the segment's frontier."""
        sha = hashlib.sha256
        while level < upto and len(row) > 1:
            if last and len(row) & 1:
                self.frontier[level] = row[-1]
            row = [sha(b"\x01" + a + b).digest()
                   for a, b in zip(row[0::2], row[1::2], strict=False)]
            level += 1
            self._compare(level, first >> level, row)
            self._keep(level, first - self.start, row)
        if last and row:
            self.frontier[level] = row[-1]
        return list(row), level

    def _compare(self, level: int, first_idx: int, row: list[bytes]) -> None:
        have = self.stored.get(level)
        if not have:
            if level >= self.min_level and row:
                raise LedgerTampered(f"{_where(level, first_idx)} is missing from ledger_nodes "
                                     "(deleted)")
            return
        got = [have.pop(i, None) for i in range(first_idx, first_idx + len(row))]
        if got == row:
            self.checked += len(row)
            return
        for i, (stored, computed) in enumerate(zip(got, row, strict=True)):
            if stored is None and level >= self.min_level:
                raise LedgerTampered(f"{_where(level, first_idx + i)} is missing from "
                                     "ledger_nodes (deleted)")
            if stored is not None and stored != computed:
                raise LedgerTampered(f"{_where(level, first_idx + i)} differs from the "
                                     "entries' leaf hashes (ledger_nodes edited)")
        self.checked += sum(g is not None for g in got)

    def finish(self) -> tuple[bytes | None, dict[int, bytes]]:
        """(the segment's root, None if it is empty; prefix roots, segment-relative)."""
        if self.buf:
            self._fold(self.buf, 0, self.buf_at, BLOCK_LEVEL, last=True)
            self.buf = []
        if self.tops:
            self._fold(self.tops, BLOCK_LEVEL, self.start, 64, last=True)
        prefix = {c + self.start: _root_of(self.kept, frontier_keys(c)) for c in self.cuts}
        if not self.frontier:
            return None, prefix
        return _root_of(self.frontier, sorted(self.frontier, reverse=True)), prefix

    def leftovers(self) -> list[tuple[int, int]]:
        """Stored rows over this segment that no perfect node of it matched, by level."""
        return sorted((lv, idx) for lv, rows in self.stored.items() for idx in rows)


def _root_of(nodes: dict[Any, bytes], keys_biggest_first: Sequence[Any]) -> bytes:
    digest = nodes[keys_biggest_first[-1]]
    for key in reversed(keys_biggest_first[:-1]):
        digest = node_hash(nodes[key], digest)
    return digest
