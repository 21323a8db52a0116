"""RFC 9162 Merkle tree hashing, proofs and proof verification. Pure: no IO.

The tree over leaves ``D[0:n]`` is RFC 9162's (section 2.1.1): leaf hash
``SHA-256(0x00 || d)``, node hash ``SHA-256(0x01 || left || right)``, and the left
subtree of ``D[lo:hi]`` holds the largest power of two smaller than ``hi - lo``.

A *perfect node* ``(level, index)`` is the root of the complete subtree over
leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0 is a leaf hash.
Every range hash a proof needs is a fold of O(log n) perfect nodes, so a store
that keeps perfect nodes produces proofs without rebuilding the tree: callers
pass a ``NodeReader`` that looks nodes up in bulk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from ledger.errors import BadInput, VerificationFailed

__all__ = [
    "EMPTY_ROOT",
    "NodeKey",
    "NodeReader",
    "consistency_proof",
    "consistency_ranges",
    "extend",
    "frontier_keys",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "perfect_nodes",
    "range_hash",
    "range_keys",
    "root_from_inclusion_proof",
    "root_of",
    "tree_root",
    "verify_consistency",
    "verify_inclusion",
]

NodeKey = tuple[int, int]
NodeReader = Callable[[Collection[NodeKey]], Mapping[NodeKey, bytes]]
Range = tuple[int, int]

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()
HASH_SIZE = 32


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two strictly smaller than ``size`` (``size >= 2``)."""
    return 1 << ((size - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over ``leaf_hashes`` (level by level; the odd last node moves up unchanged)."""
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    sha = _sha256
    while len(level) > 1:
        pairs = zip(level[0::2], level[1::2], strict=False)
        paired = [sha(b"\x01" + a + b).digest() for a, b in pairs]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def perfect_nodes(leaf_hashes: Sequence[bytes]) -> dict[NodeKey, bytes]:
    """Every perfect node of the tree over ``leaf_hashes`` (for tests and small trees)."""
    nodes: dict[NodeKey, bytes] = {(0, i): h for i, h in enumerate(leaf_hashes)}
    level, row = 0, list(leaf_hashes)
    while len(row) > 1:
        row = [node_hash(a, b) for a, b in zip(row[0::2], row[1::2], strict=False)]
        level += 1
        nodes.update({(level, i): h for i, h in enumerate(row)})
    return nodes


def frontier_keys(size: int) -> list[NodeKey]:
    """The perfect nodes covering ``D[0:size]``, biggest first: one per set bit of ``size``."""
    return [(level, (size >> level) - 1)
            for level in range(size.bit_length() - 1, -1, -1) if size >> level & 1]


def extend(
    size: int, frontier: Mapping[int, bytes], leaf_hashes: Sequence[bytes], *, min_level: int = 1
) -> tuple[dict[int, bytes], list[tuple[int, int, bytes]]]:
    """Append ``leaf_hashes`` to the tree over ``D[0:size]``, a level at a time.

    ``frontier`` maps each level of ``frontier_keys(size)`` to its hash. Returns the
    frontier of the grown tree and every perfect node the new leaves complete, as
    ``(level, index, hash)`` for levels ``>= min_level`` (all levels are computed).
    """
    sha = _sha256
    grown: dict[int, bytes] = {}
    created: list[tuple[int, int, bytes]] = []
    row, level = list(leaf_hashes), 0
    while True:
        if size >> level & 1:  # the old tail node of this level pairs with the first new one
            row = [frontier[level], *row]
        if len(row) & 1:
            grown[level] = row[-1]
        if len(row) < 2:
            break
        row = [sha(b"\x01" + a + b).digest() for a, b in zip(row[0::2], row[1::2], strict=False)]
        level += 1
        if level >= min_level:
            first = size >> level  # index of row[0] at this level
            created.extend((level, first + i, digest) for i, digest in enumerate(row))
    for old in range(level + 1, size.bit_length()):  # untouched old nodes above the growth
        if size >> old & 1:
            grown[old] = frontier[old]
    return grown, created


# -- ranges a proof is made of -------------------------------------------------------------


def range_keys(lo: int, hi: int) -> list[NodeKey]:
    """The perfect nodes whose RFC 9162 fold is MTH(D[lo:hi]) (``lo < hi``)."""
    size = hi - lo
    if size & (size - 1) == 0 and lo % size == 0:
        level = size.bit_length() - 1
        return [(level, lo >> level)]
    k = _split(size)
    return range_keys(lo, lo + k) + range_keys(lo + k, hi)


def range_hash(lo: int, hi: int, nodes: Mapping[NodeKey, bytes]) -> bytes:
    """MTH(D[lo:hi]) from perfect nodes (which must include ``range_keys(lo, hi)``)."""
    if hi == lo:
        return EMPTY_ROOT
    size = hi - lo
    if size & (size - 1) == 0 and lo % size == 0:
        level = size.bit_length() - 1
        return nodes[(level, lo >> level)]
    k = _split(size)
    return node_hash(range_hash(lo, lo + k, nodes), range_hash(lo + k, hi, nodes))


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """RFC 9162 PATH(index, D[0:size]) as leaf ranges, leaf-side first."""
    if not 0 <= index < size:
        raise BadInput(f"leaf index {index} is outside a tree of size {size}")
    out: list[Range] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, m = lo + k, m - k
    out.reverse()
    return out


def consistency_ranges(old: int, new: int) -> list[Range]:
    """RFC 9162 PROOF(old, D[0:new]) as leaf ranges (``0 < old <= new``)."""
    if not 0 < old <= new:
        raise BadInput(f"no consistency proof from size {old} to size {new}")
    out: list[Range] = []
    lo, hi, m, complete = 0, new, old, True
    while True:
        if m == hi - lo:
            if not complete:
                out.append((lo, hi))
            break
        k = _split(hi - lo)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    out.reverse()
    return out


def _keys_for(ranges: Iterable[Range]) -> set[NodeKey]:
    keys: set[NodeKey] = set()
    for lo, hi in ranges:
        keys.update(range_keys(lo, hi))
    return keys


def _hashes(ranges: Sequence[Range], read_nodes: NodeReader) -> list[bytes]:
    nodes = read_nodes(_keys_for(ranges))
    try:
        return [range_hash(lo, hi, nodes) for lo, hi in ranges]
    except KeyError:
        raise VerificationFailed("the stored tree is missing nodes a proof needs") from None


def tree_root(size: int, read_nodes: NodeReader) -> bytes:
    """MTH(D[0:size]) from O(log size) perfect nodes."""
    if size == 0:
        return EMPTY_ROOT
    return _hashes([(0, size)], read_nodes)[0]


def inclusion_proof(index: int, size: int, read_nodes: NodeReader) -> list[bytes]:
    return _hashes(inclusion_ranges(index, size), read_nodes)


def consistency_proof(old: int, new: int, read_nodes: NodeReader) -> list[bytes]:
    if old == new:
        return []
    return _hashes(consistency_ranges(old, new), read_nodes)


# -- verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2) --------------------------------------


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise VerificationFailed(f"{what} is not a {HASH_SIZE}-byte SHA-256 hash")


def root_from_inclusion_proof(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root an inclusion proof implies; raises if the proof's shape is wrong."""
    if not 0 <= index < size:
        raise VerificationFailed(f"leaf index {index} is outside a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        _check_hash(p, "inclusion proof element")
        if sn == 0:
            raise VerificationFailed("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationFailed("inclusion proof is too short")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Return if ``leaf`` is at ``index`` in the tree of ``size`` with ``root``; else raise."""
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise VerificationFailed(f"inclusion proof for leaf {index} does not match the root")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Return if the tree of ``new`` with ``new_root`` extends ``old``/``old_root``; else raise."""
    if old <= 0:
        raise VerificationFailed("consistency from an empty tree is not accepted (old size 0)")
    if new < old:
        raise VerificationFailed(f"new size {new} is smaller than old size {old}")
    if old == new:
        if proof:
            raise VerificationFailed("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise VerificationFailed(f"two different roots for size {old} (a fork)")
        return
    if not proof:
        raise VerificationFailed("consistency proof is empty")
    for p in proof:
        _check_hash(p, "consistency proof element")
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationFailed("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationFailed("consistency proof is too short")
    if fr != old_root or sr != new_root:
        raise VerificationFailed(f"tree of size {new} is not consistent with size {old}")
