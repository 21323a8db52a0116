"""The two-process verification decides exactly as the one-process one, tampered or not."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text

from ledger.errors import LedgerTampered
from tests.adversarial.realistic_vault import Copy, Original
from tests.adversarial.test_tamper_vault import (  # noqa: F401 (original: the fixture)
    _blind_digest_changed,
    _drop_triggers,
    _sealed_flipped,
    _subject_key_corrupted,
    insider,
    original,
)
from vault import budget, manifest, state_verify
from vault.db import make_engine
from vault.errors import StateMismatch, VaultMismatch
from vault.home import VaultHome
from vault.verify_all import Verified, verify_everything


@pytest.fixture
def vault_copy(original: Original, tmp_path: Path) -> Copy:  # noqa: F811
    return original.copy(tmp_path)


def _run(c: Copy, **kwargs: Any) -> Verified | tuple[str, object, object]:
    home = VaultHome(root=c.home)
    engine = make_engine(c.db_url or home.db_url)
    try:
        return verify_everything(engine, policy_bytes=home.policy_path.read_bytes(), **kwargs)
    except LedgerTampered as exc:
        return ("ledger", exc.seq, str(exc))
    except StateMismatch as exc:
        return ("state", exc.table, exc.row)
    except VaultMismatch as exc:
        return ("vault", exc.batch, str(exc))
    finally:
        engine.dispose()


PREFIXES = {1, 5, 17, 32, 33, 64, 100}  # roots of these prefixes too (checkpoints)
ONE: dict[str, Any] = {"parallel": False, "prefix_sizes": PREFIXES}
TWO: dict[str, Any] = {"fork_from": 0, "split_from": 2, "prefix_sizes": PREFIXES}


def test_two_processes_verify_as_one(vault_copy: Copy) -> None:
    copy = vault_copy
    one, two = _run(copy, **ONE), _run(copy, **TWO)
    assert isinstance(one, Verified) and isinstance(two, Verified)
    assert one == two
    assert set(one.ledger.prefix_roots) == {p for p in PREFIXES if p <= one.ledger.size}
    assert one.nodes_checked > 0 and one.state.subject_buckets > 0 and one.state.records > 0
    fast_one, fast_two = _run(copy, full=False, **ONE), _run(copy, full=False, **TWO)
    assert fast_one == fast_two
    assert isinstance(fast_one, Verified) and fast_one.ledger.root == one.ledger.root


def test_two_processes_verify_as_one_without_the_deferred_index(vault_copy: Copy) -> None:
    """As a large first load leaves the blind index until its end (killed, until the next
    ingest): PostgreSQL's buckets then come from each process's grouped pass, the
    parent's ascending and the child's descending (``manifest.bucket_reads``)."""
    from vault.store import BLIND_KEY, deferred_index

    copy = vault_copy
    indexed = _run(copy, **TWO)

    def drop(conn: Connection) -> None:
        conn.execute(text(f"DROP INDEX {deferred_index(conn.dialect.name)}"))
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"ALTER TABLE vault_blind_index DROP CONSTRAINT {BLIND_KEY}"))

    insider(copy, drop)
    one, two = _run(copy, **ONE), _run(copy, **TWO)
    assert isinstance(two, Verified) and two.state.subject_buckets > 0
    assert one == two == indexed


def test_tasks_are_taken_from_both_ends_until_they_meet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent takes state tasks from the front, the child from the back: together
    every task once, each in its own order."""
    import multiprocessing
    import threading
    import time

    from vault import verify_all

    tasks = [(state_verify.BATCH, i) for i in range(5)] + [
        (state_verify.BUCKET, b) for b in range(40)]
    ends = multiprocessing.get_context("fork").Array("q", [0, len(tasks)])
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    ran: dict[bool, list[state_verify.Task]] = {False: [], True: []}

    def fake_run(_conn: Connection, task: state_verify.Task, _version: int) -> int:
        time.sleep(0.001)
        return task[1]

    def take(from_back: bool) -> None:
        with engine.connect() as conn:
            ran[from_back] += list(verify_all._take_tasks(conn, tasks, ends, None, from_back))

    monkeypatch.setattr(verify_all, "run_task", fake_run)
    try:
        threads = [threading.Thread(target=take, args=(b,)) for b in (False, True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        engine.dispose()
    front, back = ran[False], ran[True]
    assert front and back
    assert front + back[::-1] == tasks  # a prefix ascending, the rest from the back


def _entry_edited(conn: Connection) -> None:
    """Entry 3's bytes edited in place (its stored leaf hash left as it was)."""
    raw = bytes(conn.execute(text("SELECT entry FROM ledger_entries WHERE seq = 3")).scalar_one())
    assert b"admin" in raw
    conn.execute(text("UPDATE ledger_entries SET entry = :e WHERE seq = 3"),
                 {"e": raw.replace(b"admin", b"mallo")})


def _node_edited(conn: Connection) -> None:
    conn.execute(text("UPDATE ledger_nodes SET hash = :h WHERE level = 5 AND idx = 0"),
                 {"h": bytes(32)})


TAMPERS: dict[str, Callable[[Connection], None]] = {
    "subject_key": _subject_key_corrupted,
    "blind_digest": _blind_digest_changed,
    "record_ciphertext": _sealed_flipped("vault_records", "id"),
    "ledger_entry": _entry_edited,
    "ledger_node": _node_edited,
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_two_processes_name_what_one_names(vault_copy: Copy, name: str) -> None:
    copy = vault_copy

    def tamper(conn: Connection) -> None:
        _drop_triggers(conn)  # plain SQL on both backends, the triggers out of the way
        TAMPERS[name](conn)

    insider(copy, tamper)
    one, two = _run(copy, **ONE), _run(copy, **TWO)
    assert not isinstance(one, Verified), one
    assert one == two


def test_locator_names_one_subject_and_refuses_several() -> None:
    rows = [f"{i}:1:3:0:{(i * 7919) % 65521:032X}" for i in range(100, 160)]
    committed = manifest.locator(",".join(rows), ",".join(rows))
    edited = list(rows)
    edited[17] = edited[17].replace(":1:3:", ":1:4:")
    assert manifest.locate(",".join(edited), committed, 0) == 117
    del edited[30]  # a second subject: the locator cannot tell one
    assert manifest.locate(",".join(edited), committed, 0) is None
    assert manifest.locate(",".join(rows[:-1]), committed, 1) == 159  # a row deleted
    assert manifest.locate(",".join(rows), committed, 0) is None  # nothing differs


def test_verification_units_and_live_digest_match_the_writers() -> None:
    assert (state_verify.NANO, state_verify.ATTO) == (budget.NANO, budget.ATTO)
    import numpy as np

    from vault.store import pack_mask

    rng = np.random.default_rng(19)
    for rows in (0, 1, 7, 8, 9, 1000):
        live = rng.random(rows) < 0.6
        bits = np.packbits(live).tobytes()
        want = manifest._tagged("civicvault/live-mask/v1", rows,
                                __import__("hashlib").sha256(bits).hexdigest())
        assert manifest.live_digest(rows, pack_mask(live)) == want
        assert manifest.all_live_digest(rows) == manifest.live_digest(
            rows, pack_mask(np.ones(rows, dtype=bool)))


def test_verification_imports_no_orm_polars_or_numpy() -> None:
    code = ("import sys, vault.verify_all; bad = [m for m in ('polars', 'numpy', 'sqlmodel', "
            "'sqlalchemy.orm', 'vault.store', 'vault.schema') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_quick_bucket_digests_are_the_ordered_ones_on_a_real_vault(vault_copy: Copy) -> None:
    """On a vault's own schema the index scan yields the digest's order: the quick digests
    the tasks compute are the ones the writers committed (no second, ordered pass)."""
    home = VaultHome(root=vault_copy.home)
    engine = make_engine(vault_copy.db_url or home.db_url)
    try:
        with engine.connect() as conn:
            n = manifest.bucket_count(conn)
            assert n > 0
            for b in range(n):
                assert (manifest.bucket_digest(conn, b, quick=True)
                        == manifest.bucket_digest(conn, b)
                        == tuple(manifest.subject_buckets(conn, [b], 2)[0][1:3]))
    finally:
        engine.dispose()
