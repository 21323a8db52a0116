"""The ledger in SQL, on SQLite and PostgreSQL: append, prove, refuse edits, detect tampering."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, exc, text

from ledger import db_verify, store
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
    _fill(engine, 4)
    column = "entry" if table == "ledger_entries" else "hash"
    with pytest.raises(exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(f"UPDATE {table} SET {column} = {column}"))


@pytest.mark.parametrize("table", ["ledger_entries", "ledger_nodes"])
def test_delete_refused_by_database(engine: Engine, table: str) -> None:
    _fill(engine, 4)
    with pytest.raises(exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {table} WHERE 1 = 1"))


@pytest.mark.parametrize("table", ["ledger_entries", "ledger_nodes"])
def test_truncate_refused_by_database(engine: Engine, table: str) -> None:
    _fill(engine, 4)
    # SQLite has no TRUNCATE: its truncate optimisation is an unqualified DELETE.
    sql = f"TRUNCATE {table}" if engine.dialect.name == "postgresql" else f"DELETE FROM {table}"
    with pytest.raises(exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(sql))
    with engine.connect() as conn:
        assert store.size(conn) == 4


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
    other.dispose()
    assert errors == []
    assert sorted(seqs) == list(range(200))
    verdict = db_verify.verify_stored(engine)
    assert verdict.size == 200
