"""The ledger alone under attack: stored tree nodes are never trusted, gaps are named."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import Engine, text

from ledger import merkle, store
from ledger.db_verify import verify_nodes, verify_stored
from ledger.entry import EntryDraft
from ledger.errors import LedgerTampered
from ledger.node_check import check_nodes


def _leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(b"\x00" + i.to_bytes(4, "big")).digest() for i in range(n)]


def _stored(leaves: list[bytes], min_level: int) -> list[tuple[int, int, bytes]]:
    return [(level, idx, digest) for (level, idx), digest in merkle.perfect_nodes(leaves).items()
            if level >= min_level]


def test_node_check_accepts_the_true_tree_and_old_low_level_rows() -> None:
    leaves = _leaves(1000)
    assert check_nodes(leaves, _stored(leaves, 5), min_level=5) > 0
    assert check_nodes(leaves, _stored(leaves, 1), min_level=5) > 0  # older layout


@pytest.mark.parametrize("attack", ["edited", "deleted", "added", "beyond-the-log"])
def test_node_check_names_the_node(attack: str) -> None:
    leaves = _leaves(1000)
    rows = _stored(leaves, 5)
    i = next(k for k, r in enumerate(rows) if r[:2] == (6, 3))
    if attack == "edited":
        rows[i] = (6, 3, bytes(32))
    elif attack == "deleted":
        del rows[i]
    elif attack == "added":
        rows.append((3, 0, bytes(32)))  # a low-level row that does not match
    else:
        rows.append((5, 40, bytes(32)))  # covers entries 1280..1311: not in the log
    with pytest.raises(LedgerTampered) as info:
        check_nodes(leaves, rows, min_level=5)
    where = {"edited": "(level 6, index 3)", "deleted": "(level 6, index 3)",
             "added": "(level 3, index 0)", "beyond-the-log": "(level 5, index 40)"}[attack]
    assert where in str(info.value)


def _fill(engine: Engine, n: int) -> None:
    with engine.begin() as conn:
        store.append(conn, [EntryDraft(actor="t", action="note.x", resource=f"r/{i}")
                            for i in range(n)])


def _drop_triggers(engine: Engine) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for table in ("ledger_entries", "ledger_nodes"):
                conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            return
        for name in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                         "AND tbl_name LIKE 'ledger_%'").scalars().all():
            conn.exec_driver_sql(f'DROP TRIGGER "{name}"')


def test_append_after_a_deleted_entry_names_it(engine: Engine) -> None:
    _fill(engine, 100)
    _drop_triggers(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_entries WHERE seq = 97"))
    store._FRONTIERS.clear()  # a fresh process: no frontier remembered
    with pytest.raises(LedgerTampered) as info:
        _fill(engine, 1)
    assert info.value.seq == 97
    with pytest.raises(LedgerTampered) as verdict:
        verify_stored(engine)
    assert verdict.value.seq == 97


def test_stored_leaf_hash_edited_in_place_is_named(engine: Engine) -> None:
    _fill(engine, 300)
    _drop_triggers(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE ledger_entries SET leaf_hash = :h WHERE seq = 70"),
                     {"h": bytes(32)})
    with pytest.raises(LedgerTampered) as info:
        verify_stored(engine)
    assert info.value.seq == 70


def test_stored_nodes_checked_in_full_mode(engine: Engine) -> None:
    _fill(engine, 300)
    with engine.connect() as conn:
        leaves = store.leaf_hashes(conn)
    expected = sum(1 for level, _ in merkle.perfect_nodes(leaves)
                   if level >= store.STORED_FROM_LEVEL)
    assert verify_nodes(engine, 300) == expected == 16
    _drop_triggers(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE ledger_nodes SET hash = :h WHERE level = 5 AND idx = 2"),
                     {"h": bytes(32)})
    verify_stored(engine)  # the root does not pass through node (5, 2): only nodes=True sees it
    with pytest.raises(LedgerTampered, match=r"\(level 5, index 2\)"):
        verify_stored(engine, nodes=True)
