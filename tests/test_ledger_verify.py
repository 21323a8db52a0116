"""Pure verification: bytes in, verdict out, the first failing entry named."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import verify
from ledger.checkpoint import Checkpoint
from ledger.entry import GENESIS_PREV, Entry, EntryDraft
from ledger.errors import LedgerTampered
from tests import ledger_independent as ind


def make_log(n: int, action: str = "test.note") -> list[bytes]:
    out, prev = [], GENESIS_PREV
    for i in range(n):
        e = Entry.place(EntryDraft(actor="admin", action=action, resource=f"r/{i % 7}"),
                        seq=i, prev=prev, time="2026-01-01T00:00:00.000000Z")
        out.append(e.raw)
        prev = e.leaf_hash.hex()
    return out


def _edit(raw: bytes, **changes: object) -> bytes:
    doc = json.loads(raw)
    doc.update(changes)
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def test_intact_log_verifies_with_its_root() -> None:
    log = make_log(50)
    verdict = verify.verify_log(log, prefix_sizes={1, 17, 50})
    assert verdict.size == 50 and verdict.root == ind.mth(log)
    assert verdict.prefix_roots[17] == ind.mth(log[:17])
    verify.verify_log(log, expected_root=ind.mth(log))
    with pytest.raises(LedgerTampered):
        verify.verify_log(log, expected_root=ind.mth(log[:49]))


def test_empty_log_verifies() -> None:
    assert verify.verify_log([]).size == 0


def _first_failure(log: list[bytes]) -> int | None:
    with pytest.raises(LedgerTampered) as info:
        verify.verify_log(log)
    return info.value.seq


def test_edited_entry_detected() -> None:
    log = make_log(30)
    log[12] = _edit(log[12], resource="r/elsewhere")
    assert _first_failure(log) == 12


def test_edited_prev_link_detected() -> None:
    log = make_log(30)
    log[12] = _edit(log[12], prev="ab" * 32)
    assert _first_failure(log) == 12


def test_reordered_entries_detected() -> None:
    log = make_log(30)
    log[12], log[13] = log[13], log[12]
    assert _first_failure(log) == 12


def test_deleted_middle_entry_detected() -> None:
    log = make_log(30)
    del log[12]
    assert _first_failure(log) == 12


def test_renumbered_after_deletion_detected() -> None:
    log = make_log(30)
    del log[12]
    log[12:] = [_edit(raw, seq=12 + i) for i, raw in enumerate(log[12:])]
    assert _first_failure(log) == 12  # the renumbered entry 12 no longer links to entry 11


def test_garbage_entry_detected() -> None:
    log = make_log(30)
    log[3] = b"not json"
    assert _first_failure(log) == 3


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 120).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 2))))
def test_any_single_edit_is_named(case: tuple[int, int]) -> None:
    n, victim = case
    log = make_log(n)
    log[victim] = _edit(log[victim], actor="mallory")
    assert _first_failure(log) == victim


def test_truncated_ledger_against_checkpoint() -> None:
    log = make_log(40)
    checkpoint = Checkpoint(origin="o", size=40, root=ind.mth(log))
    verdict = verify.verify_log(log[:33], prefix_sizes={40})
    with pytest.raises(LedgerTampered) as info:
        verify.verify_against_checkpoint(verdict, checkpoint)
    assert info.value.seq == 33


def test_rewritten_history_against_checkpoint() -> None:
    log = make_log(40)
    checkpoint = Checkpoint(origin="o", size=20, root=ind.mth(log[:20]))
    forked = make_log(25, action="test.fork")  # a whole different, valid history
    verdict = verify.verify_log(forked, prefix_sizes={20})
    with pytest.raises(LedgerTampered, match="rewritten or forked"):
        verify.verify_against_checkpoint(verdict, checkpoint)
    good = verify.verify_log(log, prefix_sizes={20})
    verify.verify_against_checkpoint(good, checkpoint)


@pytest.mark.parametrize("n", [2, 3, 16384 + 5, 40000])
def test_segments_join_to_the_whole(n: int) -> None:
    log = make_log(n)
    k = verify.split_point(n)
    first = verify.LogChecker(0, verify.GENESIS_PREV_HASH, {k, n})
    first.feed(log[:k])
    second = verify.LogChecker(k, None, {k, n})
    for i in range(k, n, 5000):
        second.feed(log[i:i + 5000])
    whole = verify.join(first.finish(), second.finish())
    assert whole == verify.verify_log(log, prefix_sizes={k, n})
    assert whole.root == ind.mth(log)


def test_segment_seam_break_detected() -> None:
    log = make_log(10)
    log[7] = _edit(log[7], actor="mallory")
    first = verify.LogChecker(0)
    first.feed(log[:8])
    second = verify.LogChecker(8, None)
    second.feed(log[8:])
    with pytest.raises(LedgerTampered) as info:
        verify.join(first.finish(), second.finish())
    assert info.value.seq == 7


@pytest.mark.parametrize("n", [1, 2, 31, 33, 16384, 16384 + 5, 40000])
def test_node_folder_roots_prefixes_and_every_node(n: int) -> None:
    """One fold of the leaf hashes gives the root, prefix roots and every stored node,
    on a whole log and on the two segments ``join`` puts together."""
    from ledger import merkle
    from ledger.node_check import NodeFolder, group_nodes

    log = make_log(n)
    leaves = [ind.leaf(e) for e in log]
    stored = {(lv, i): h for (lv, i), h in merkle.perfect_nodes(leaves).items() if lv >= 5}
    sizes = {1, n // 3 or 1, n}
    whole = NodeFolder(0, group_nodes((lv, i, h) for (lv, i), h in stored.items()),
                       min_level=5, prefix_sizes=sizes)
    for i in range(0, n, 5000):
        whole.feed(leaves[i:i + 5000])
    root, prefix = whole.finish()
    assert root == ind.mth(log) and not whole.leftovers()
    assert whole.checked == len(stored)
    assert prefix == {p: ind.mth(log[:p]) for p in sizes}
    k = verify.split_point(n)
    if k < n:
        second = NodeFolder(k, group_nodes((lv, i, h) for (lv, i), h in stored.items()
                                           if i << lv >= k), min_level=5)
        second.feed(leaves[k:])
        sub, _ = second.finish()
        assert sub == ind.mth(log[k:])


def test_node_folder_names_an_edited_node() -> None:
    from ledger import merkle
    from ledger.node_check import NodeFolder, group_nodes

    leaves = [ind.leaf(e) for e in make_log(1000)]
    rows = [(lv, i, bytes(32) if (lv, i) == (6, 3) else h)
            for (lv, i), h in merkle.perfect_nodes(leaves).items() if lv >= 5]
    folder = NodeFolder(0, group_nodes(rows), min_level=5)
    with pytest.raises(LedgerTampered, match=r"\(level 6, index 3\).*edited"):
        folder.feed(leaves)
        folder.finish()
