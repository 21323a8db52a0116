"""An independent RFC 9162 proof checker, written from the RFC's recursive definitions.

Deliberately different from ``ledger.merkle`` (which uses the RFC's iterative
bit-walking algorithms): this one rebuilds the hashes by following PATH and
SUBPROOF (RFC 9162 sections 2.1.3.1 and 2.1.4.1) top-down, using only hashlib.
"""

from __future__ import annotations

import hashlib


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves: list[bytes]) -> bytes:
    """MTH straight from the definition (inputs are entry bytes, not hashes)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf(leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def inclusion_root(index: int, size: int, leaf_hash: bytes, path: list[bytes]) -> bytes:
    """The root implied by PATH(index, D[0:size]) (path is leaf-side first)."""
    if not 0 <= index < size:
        raise ValueError("index outside tree")
    if size == 1:
        if path:
            raise ValueError("path too long")
        return leaf_hash
    if not path:
        raise ValueError("path too short")
    k, sibling, rest = _k(size), path[-1], path[:-1]
    if index < k:
        return node(inclusion_root(index, k, leaf_hash, rest), sibling)
    return node(sibling, inclusion_root(index - k, size - k, leaf_hash, rest))


def _sub(m: int, n: int, proof: list[bytes], whole: bool, old_root: bytes) -> tuple[bytes, bytes]:
    if m == n:
        if whole:
            if proof:
                raise ValueError("proof too long")
            return old_root, old_root
        if len(proof) != 1:
            raise ValueError("bad proof length")
        return proof[0], proof[0]
    if not proof:
        raise ValueError("proof too short")
    k, last, rest = _k(n), proof[-1], proof[:-1]
    if m <= k:
        old, new = _sub(m, k, rest, whole, old_root)
        return old, node(new, last)
    old, new = _sub(m - k, n - k, rest, False, old_root)
    return node(last, old), node(last, new)


def consistent(old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> bool:
    """True iff PROOF(old, D[0:new]) links the two roots (0 < old <= new)."""
    if not 0 < old <= new:
        return False
    if old == new:
        return not proof and old_root == new_root
    try:
        got_old, got_new = _sub(old, new, proof, True, old_root)
    except ValueError:
        return False
    return got_old == old_root and got_new == new_root
