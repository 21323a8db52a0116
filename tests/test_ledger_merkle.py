"""RFC 9162 tree: transparency-dev vectors, known roots, and proof properties."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import BadInput, VerificationFailed
from tests import ledger_independent as ind

KNOWN_LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
                bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70))]
# Roots for sizes 0..8 (RFC 6962 / transparency-dev test data; prefixes in shared/data/README).
KNOWN_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
README_PREFIXES = ["e3b0c442", "6e340b9c", "fac54203", "aeb6bcfe", "d37ee418", "4e3bbb1f",
                   "76e67dad", "ddb89be4",
                   "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _vector_files(shared: Path, kind: str) -> list[Path]:
    return sorted((shared / "rfc9162-vectors" / kind).rglob("*.json"))


def _run_vector(case: dict[str, object]) -> bool:
    """True if our verifier accepts the case."""
    proof = [_b64(p) for p in (case["proof"] or [])]  # type: ignore[union-attr]
    try:
        if "leafIdx" in case:
            merkle.verify_inclusion(int(case["leafIdx"]), int(case["treeSize"]),  # type: ignore[arg-type]
                                    _b64(case["leafHash"]), proof, _b64(case["root"]))  # type: ignore[arg-type]
        else:
            merkle.verify_consistency(int(case["size1"]), int(case["size2"]),  # type: ignore[arg-type]
                                      _b64(case["root1"]), _b64(case["root2"]), proof)  # type: ignore[arg-type]
    except VerificationFailed:
        return False
    return True


def test_all_196_transparency_dev_vectors(shared_data: Path) -> None:
    files = _vector_files(shared_data, "inclusion") + _vector_files(shared_data, "consistency")
    assert len(files) == 196
    wrong = []
    for path in files:
        case = json.loads(path.read_text())
        if _run_vector(case) == bool(case["wantErr"]):
            wrong.append(str(path.relative_to(shared_data)))
    assert wrong == []


def test_consistency_from_old_size_zero_rejected(shared_data: Path) -> None:
    zero = [json.loads(p.read_text()) for p in _vector_files(shared_data, "consistency")]
    zero = [c for c in zero if c["size1"] == 0]
    assert zero, "the vectors include old-size-0 cases"
    assert not any(_run_vector(c) for c in zero)
    with pytest.raises(VerificationFailed):
        merkle.verify_consistency(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])


@pytest.mark.parametrize("size", range(9))
def test_known_roots(size: int) -> None:
    hashes = [merkle.leaf_hash(x) for x in KNOWN_LEAVES[:size]]
    got = merkle.root_of(hashes).hex()
    assert got.startswith(README_PREFIXES[size])
    assert got == KNOWN_ROOTS[size]
    assert merkle.tree_root(size, lambda _keys: merkle.perfect_nodes(hashes)) == bytes.fromhex(got)


def _tree(size: int) -> tuple[list[bytes], dict[merkle.NodeKey, bytes]]:
    data = [i.to_bytes(4, "big") for i in range(size)]
    return data, merkle.perfect_nodes([merkle.leaf_hash(d) for d in data])


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 600).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_inclusion_proofs_verify_for_random_sizes(size_index: tuple[int, int]) -> None:
    size, index = size_index
    data, nodes = _tree(size)
    root = merkle.tree_root(size, lambda _k: nodes)
    assert root == ind.mth(data)
    proof = merkle.inclusion_proof(index, size, lambda _k: nodes)
    leaf = merkle.leaf_hash(data[index])
    merkle.verify_inclusion(index, size, leaf, proof, root)
    assert ind.inclusion_root(index, size, leaf, proof) == root
    if proof:  # any flipped bit breaks it
        bad = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
        with pytest.raises(VerificationFailed):
            merkle.verify_inclusion(index, size, leaf, bad, root)
    if size > 1:
        with pytest.raises(VerificationFailed):
            merkle.verify_inclusion((index + 1) % size, size, leaf, proof, root)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 600).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_consistency_proofs_verify_for_random_sizes(sizes: tuple[int, int]) -> None:
    old, new = sizes
    data, nodes = _tree(new)
    old_root, new_root = ind.mth(data[:old]), ind.mth(data)
    proof = merkle.consistency_proof(old, new, lambda _k: nodes)
    merkle.verify_consistency(old, new, old_root, new_root, proof)
    assert ind.consistent(old, new, old_root, new_root, proof)
    if old < new:
        forked = ind.mth([b"forged", *data[1:old]])
        with pytest.raises(VerificationFailed):
            merkle.verify_consistency(old, new, forked, new_root, proof)
        with pytest.raises(VerificationFailed):
            merkle.verify_consistency(old, new, old_root, new_root, proof[:-1])


def test_proof_requests_outside_the_tree_are_bad_input() -> None:
    with pytest.raises(BadInput):
        merkle.inclusion_ranges(5, 5)
    with pytest.raises(BadInput):
        merkle.consistency_ranges(0, 3)
    with pytest.raises(BadInput):
        merkle.consistency_ranges(4, 3)


def test_proofs_are_logarithmic_in_lookups() -> None:
    size = 1_000_000
    keys = {k for lo, hi in merkle.inclusion_ranges(123_456, size)
            for k in merkle.range_keys(lo, hi)}
    assert len(keys) <= 2 * 20
    keys = {k for lo, hi in merkle.consistency_ranges(777_777, size)
            for k in merkle.range_keys(lo, hi)}
    assert len(keys) <= 2 * 20


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=12), st.integers(1, 6))
def test_extend_in_any_batches_yields_every_perfect_node_once(
    batches: list[int], min_level: int
) -> None:
    """Growing a tree batch by batch gives the frontier of each size and, over all
    batches, exactly the perfect nodes of level >= min_level, each once."""
    total = sum(batches)
    data, nodes = _tree(total)
    leaves = [nodes[(0, i)] for i in range(total)]
    size, frontier, made = 0, {}, []
    for count in batches:
        frontier, new = merkle.extend(size, frontier, leaves[size:size + count],
                                      min_level=min_level)
        made += new
        size += count
        assert merkle.frontier_keys(size) == (merkle.range_keys(0, size) if size else [])
        assert frontier == {lvl: nodes[(lvl, i)] for lvl, i in merkle.frontier_keys(size)}
    assert sorted(made) == sorted((lvl, i, h) for (lvl, i), h in nodes.items()
                                  if lvl >= min_level)
    # the frontier alone gives the root
    keys = merkle.frontier_keys(total)
    assert merkle.range_hash(0, total, {k: frontier[k[0]] for k in keys}) == ind.mth(data)
