"""The ledger in SQL, on SQLite and PostgreSQL: append, prove, refuse edits, detect tampering."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, exc, text

from ledger import db_verify, merkle, store
from ledger.checkpoint import Checkpoint
from ledger.entry import EntryDraft
from ledger.errors import BadInput, LedgerTampered
from ledger.verify import verify_against_checkpoint, verify_log
from tests import ledger_independent as ind


def _draft(i: int, action: str = "test.note") -> EntryDraft:
    return EntryDraft(actor="admin", action=action, resource=f"dataset/d{i % 5}",
                      details={"i": i})


def _fill(engine: Engine, n: int, batch: int = 7) -> None:
    for lo in range(0, n, batch):
        with engine.begin() as conn:
            store.append(conn, [_draft(i) for i in range(lo, min(n, lo + batch))])


def _entries(engine: Engine) -> list[bytes]:
    with engine.connect().execution_options(readonly=True) as conn:
        return list(store.iter_entries(conn))


def _bypass_triggers(engine: Engine) -> None:
    """What an attacker with database access does first."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            for table in ("ledger_entries", "ledger_nodes"):
                conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        else:
            for name in ("entries_no_update", "entries_no_delete", "nodes_no_update",
                         "nodes_no_delete"):
                conn.exec_driver_sql(f"DROP TRIGGER ledger_{name}")


# Enough entries for ledger_nodes to hold rows (it stores levels >= STORED_FROM_LEVEL only):
# a row-level trigger that never fires would prove nothing.
WITH_NODES = 2 ** store.STORED_FROM_LEVEL + 3


def _node_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM ledger_nodes")).scalar_one())


def _first_failure(engine: Engine, **kwargs: object) -> int | None:
    with pytest.raises(LedgerTampered) as info:
        db_verify.verify_stored(engine, **kwargs)  # type: ignore[arg-type]
    return info.value.seq


def test_appends_build_the_rfc9162_tree(engine: Engine) -> None:
    _fill(engine, 37)
    entries = _entries(engine)
    assert len(entries) == 37
    with engine.connect() as conn:
        assert store.size(conn) == 37
        assert store.root(conn) == ind.mth(entries)
        for n in (1, 2, 13, 37):
            assert store.root(conn, n) == ind.mth(entries[:n])
        for i in range(37):
            proof = store.inclusion_proof(conn, i, 37)
            assert ind.inclusion_root(i, 37, ind.leaf(entries[i]), proof) == ind.mth(entries)
        for old in range(1, 38):
            proof = store.consistency_proof(conn, old, 37)
            assert ind.consistent(old, 37, ind.mth(entries[:old]), ind.mth(entries), proof)
        with pytest.raises(BadInput):
            store.inclusion_proof(conn, 37, 37)
        with pytest.raises(BadInput):
            store.consistency_proof(conn, 0, 37)
    assert db_verify.verify_stored(engine).root == ind.mth(entries)


def test_append_commits_or_rolls_back_with_the_callers_transaction(engine: Engine) -> None:
    _fill(engine, 3)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        store.append(conn, [_draft(9)])
        raise RuntimeError("the caller's own write failed")
    with engine.connect() as conn:
        assert store.size(conn) == 3
    _fill(engine, 2)
    db_verify.verify_stored(engine)


@pytest.mark.parametrize("table", ["ledger_entries", "ledger_nodes"])
def test_update_refused_by_database(engine: Engine, table: str) -> None:
    _fill(engine, WITH_NODES)
    assert _node_rows(engine) > 0
    column = "entry" if table == "ledger_entries" else "hash"
    with pytest.raises(exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(f"UPDATE {table} SET {column} = {column}"))


@pytest.mark.parametrize("table", ["ledger_entries", "ledger_nodes"])
def test_delete_refused_by_database(engine: Engine, table: str) -> None:
    _fill(engine, WITH_NODES)
    assert _node_rows(engine) > 0
    with pytest.raises(exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {table} WHERE 1 = 1"))


@pytest.mark.parametrize("table", ["ledger_entries", "ledger_nodes"])
def test_truncate_refused_by_database(engine: Engine, table: str) -> None:
    _fill(engine, WITH_NODES)
    assert _node_rows(engine) > 0
    # SQLite has no TRUNCATE: its truncate optimisation is an unqualified DELETE.
    sql = f"TRUNCATE {table}" if engine.dialect.name == "postgresql" else f"DELETE FROM {table}"
    with pytest.raises(exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(sql))
    with engine.connect() as conn:
        assert store.size(conn) == WITH_NODES


def test_edited_entry_detected(engine: Engine) -> None:
    _fill(engine, 20)
    _bypass_triggers(engine)
    raw = _entries(engine)[5].replace(b'"dataset/d0"', b'"dataset/dX"')
    with engine.begin() as conn:  # the bytes only
        conn.execute(text("UPDATE ledger_entries SET entry = :e WHERE seq = 5"), {"e": raw})
    assert _first_failure(engine) == 5
    with engine.begin() as conn:  # and its stored leaf hash, as a careful attacker would
        conn.execute(text("UPDATE ledger_entries SET leaf_hash = :h WHERE seq = 5"),
                     {"h": ind.leaf(raw)})
    assert _first_failure(engine) == 5


def test_reordered_entries_detected(engine: Engine) -> None:
    _fill(engine, 20)
    entries = _entries(engine)
    _bypass_triggers(engine)
    with engine.begin() as conn:
        for seq, raw in ((8, entries[9]), (9, entries[8])):
            conn.execute(text("UPDATE ledger_entries SET entry = :e, leaf_hash = :h "
                              "WHERE seq = :s"), {"e": raw, "h": ind.leaf(raw), "s": seq})
    assert _first_failure(engine) == 8


def test_deleted_middle_entry_detected(engine: Engine) -> None:
    _fill(engine, 20)
    _bypass_triggers(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_entries WHERE seq = 11"))
    assert _first_failure(engine) == 11


def test_truncated_ledger_against_checkpoint(engine: Engine) -> None:
    _fill(engine, 20)
    with engine.connect() as conn:
        checkpoint = Checkpoint(origin="o", size=20, root=store.root(conn))
    _bypass_triggers(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_entries WHERE seq >= 15"))
    verdict = db_verify.verify_stored(engine, prefix_sizes={20})  # self-consistent...
    with pytest.raises(LedgerTampered) as info:  # ...but not what was signed
        verify_against_checkpoint(verdict, checkpoint)
    assert info.value.seq == 15


def test_rolled_back_and_regrown_ledger_against_checkpoint(engine: Engine) -> None:
    _fill(engine, 20)
    with engine.connect() as conn:
        checkpoint = Checkpoint(origin="o", size=20, root=store.root(conn))
    _bypass_triggers(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_entries WHERE seq >= 10"))
        conn.execute(text("DELETE FROM ledger_nodes WHERE idx * power(2, level) + "
                          "power(2, level) > 10"))
    with engine.begin() as conn:
        store.append(conn, [_draft(i, "test.rewritten") for i in range(15)])
    verdict = db_verify.verify_stored(engine, prefix_sizes={20})
    assert verdict.size == 25
    with pytest.raises(LedgerTampered, match="rewritten or forked"):
        verify_against_checkpoint(verdict, checkpoint)


def test_export_verifies_like_the_database(engine: Engine) -> None:
    _fill(engine, 30)
    exported = b"".join(e + b"\n" for e in _entries(engine))
    from_file = verify_log(exported.splitlines())
    assert from_file.root == db_verify.verify_stored(engine).root


@pytest.fixture
def parallel_threshold(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(db_verify, "PARALLEL_FROM", 2)
    yield


@pytest.mark.usefixtures("parallel_threshold")
def test_two_process_verification_matches_one(engine: Engine) -> None:
    _fill(engine, 45, batch=20)
    one = db_verify.verify_stored(engine, prefix_sizes={7, 32, 40}, parallel=False)
    two = db_verify.verify_stored(engine, prefix_sizes={7, 32, 40})
    assert one == two
    _bypass_triggers(engine)
    with engine.begin() as conn:  # in the child's half
        conn.execute(text("DELETE FROM ledger_entries WHERE seq = 38"))
    assert _first_failure(engine) == 38


def test_group_commit_chain_never_forks(engine: Engine, db_url: str) -> None:
    """Two committers (as if two processes) with 4 threads each, 25 appends per thread."""
    from vault.db import make_engine

    other = make_engine(db_url)
    committers = [store.GroupCommitter(engine), store.GroupCommitter(other)]
    seqs: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(c: store.GroupCommitter, w: int) -> None:
        try:
            for i in range(25):
                entry = c.append(_draft(w * 100 + i, "test.concurrent"))
                with lock:
                    seqs.append(entry.seq)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(committers[w % 2], w)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in committers:
        c.close()
    other.dispose()
    assert errors == []
    assert sorted(seqs) == list(range(200))
    verdict = db_verify.verify_stored(engine)
    assert verdict.size == 200


def _stored_nodes(engine: Engine) -> dict[tuple[int, int], bytes]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT level, idx, hash FROM ledger_nodes")).all()
    return {(int(level), int(idx)): bytes(h) for level, idx, h in rows}


def _subtree_hashes(entries: list[bytes], level: int) -> list[bytes]:
    """Hashes of the complete subtrees of 2**level leaves, left to right, from the RFC."""
    size = 1 << level
    return [ind.mth(entries[i:i + size]) for i in range(0, len(entries) - size + 1, size)]


def test_stored_nodes_and_proofs_across_folded_levels(engine: Engine) -> None:
    """Batches of odd sizes over several 32-leaf blocks: the table holds exactly the
    complete subtrees of level >= STORED_FROM_LEVEL, and roots and proofs, which fold
    the lower levels from leaf hashes, match the RFC everywhere."""
    sizes = [1, 30, 2, 33, 64, 5, 100, 31]
    lo = 0
    for count in sizes:
        with engine.begin() as conn:
            store.append(conn, [_draft(i) for i in range(lo, lo + count)])
        lo += count
    entries = _entries(engine)
    n = len(entries)
    want = {(level, i): h for level in range(store.STORED_FROM_LEVEL, n.bit_length())
            for i, h in enumerate(_subtree_hashes(entries, level))}
    assert _stored_nodes(engine) == want
    with engine.connect() as conn:
        for size in (1, 31, 32, 33, 63, 64, 65, 97, 128, 200, n):
            assert store.root(conn, size) == ind.mth(entries[:size])
        for index in range(0, n, 7):
            proof = store.inclusion_proof(conn, index, n)
            assert ind.inclusion_root(index, n, ind.leaf(entries[index]), proof) == ind.mth(entries)
        for old in (1, 5, 31, 32, 33, 64, 96, 100, 129, 200, n - 1):
            proof = store.consistency_proof(conn, old, n)
            assert ind.consistent(old, n, ind.mth(entries[:old]), ind.mth(entries), proof)


def test_one_large_append_spans_chunks(engine: Engine) -> None:
    """One transaction of more drafts than a chunk (and COPY on PostgreSQL), then small
    appends on top: what append returns is what was stored, and the log verifies."""
    count = 2 * store.CHUNK + 37
    with engine.begin() as conn:
        returned = store.append(conn, [_draft(i) for i in range(count)])
    _fill(engine, 3, batch=1)
    entries = _entries(engine)
    assert [e.raw for e in returned] == entries[:count]
    assert [e.seq for e in returned] == list(range(count))
    assert returned[store.CHUNK].prev == returned[store.CHUNK - 1].leaf_hash.hex()
    with engine.connect() as conn:
        assert store.root(conn) == ind.mth(entries)
    assert db_verify.verify_stored(engine).root == ind.mth(entries)


def test_rows_of_every_level_from_older_logs_do_not_disturb(engine: Engine) -> None:
    """Logs written before sparse node storage hold rows for levels 1..4 too: appends
    must not collide with them and proofs stay those of the RFC."""
    _fill(engine, 40)
    entries = _entries(engine)
    old_rows = [(level, i, h) for level in range(1, store.STORED_FROM_LEVEL)
                for i, h in enumerate(_subtree_hashes(entries, level))]
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO ledger_nodes (level, idx, hash) VALUES (:l, :i, :h)"),
                     [{"l": level, "i": i, "h": h} for level, i, h in old_rows])
    _fill(engine, 60, batch=13)
    entries = _entries(engine)
    with engine.connect() as conn:
        for index in (0, 39, 40, 63, 64, 99):
            proof = store.inclusion_proof(conn, index, 100)
            assert ind.inclusion_root(index, 100, ind.leaf(entries[index]), proof) == \
                ind.mth(entries)
    assert db_verify.verify_stored(engine).root == ind.mth(entries)


def test_append_without_begin_stays_in_the_callers_transaction(engine: Engine) -> None:
    """On a connection that has not begun, append begins (as SQLAlchemy would) and its
    driver-level writes roll back with the caller's transaction."""
    _fill(engine, 2)
    with engine.connect() as conn:
        store.append(conn, [_draft(i) for i in range(store.BULK_FROM + 1)])
        conn.rollback()
        assert store.size(conn) == 2
        store.append(conn, [_draft(9)])
        conn.commit()
    with engine.connect() as conn:
        assert store.size(conn) == 3
    db_verify.verify_stored(engine)


def test_group_commit_failure_reaches_its_batch_and_the_next_append_succeeds(
    engine: Engine,
) -> None:
    with store.GroupCommitter(engine) as committer:
        with pytest.raises(BadInput):  # a lone surrogate cannot be canonical JSON
            committer.append(EntryDraft(actor="a", action="test.note", resource="r",
                                        details={"s": "\ud800"}))
        assert committer.append(_draft(1)).seq == 0
        assert committer.append(_draft(2)).seq == 1
    with engine.connect() as conn:
        assert store.size(conn) == 2


def test_group_committer_keeps_one_connection_until_closed(engine: Engine) -> None:
    committer = store.GroupCommitter(engine)
    for i in range(3):
        committer.append(_draft(i))
        assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    committer.close()
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert committer.append(_draft(3)).seq == 3  # a closed committer connects again
    committer.close()
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.postgres
def test_group_committer_reconnects_after_the_server_drops_it(pg_url: str) -> None:
    """A kept connection the server has closed is replaced before the batch writes
    anything (the writers never see it); after a pause longer than keep_s the pool
    checks it first."""
    from vault.db import make_engine, migrate

    eng = make_engine(pg_url)
    migrate(eng)

    def drop_committer_sessions() -> None:
        with eng.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()"))

    try:
        with store.GroupCommitter(eng) as committer:
            committer.append(_draft(0))
            drop_committer_sessions()
            assert committer.append(_draft(1)).seq == 1
            assert committer.append(_draft(2)).seq == 2
        with store.GroupCommitter(eng, keep_s=0.0) as committer:
            committer.append(_draft(3))
            drop_committer_sessions()
            assert committer.append(_draft(4)).seq == 4
        db_verify.verify_stored(eng)
    finally:
        eng.dispose()


def test_proofs_fold_a_bounded_number_of_leaves() -> None:
    """Proofs stay O(log n): the nodes below STORED_FROM_LEVEL that a root, an inclusion
    or a consistency proof needs lie under at most two blocks of 2**level leaves."""
    block = 2 ** store.STORED_FROM_LEVEL
    rng = random.Random(5)
    for _ in range(3000):
        size = rng.randrange(1, 10**9)
        index, old = rng.randrange(size), rng.randrange(1, size + 1)
        for ranges in (merkle.inclusion_ranges(index, size),
                       merkle.consistency_ranges(old, size), [(0, size)]):
            keys = {k for lo, hi in ranges for k in merkle.range_keys(lo, hi)}
            folded = {seq for level, i in keys if level < store.STORED_FROM_LEVEL
                      for seq in range(i << level, (i + 1) << level)}
            assert len(folded) < 2 * block
            assert len(keys) <= 2 * size.bit_length()
