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

from ledger.errors import LedgerTampered

__all__ = ["check_nodes"]


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
