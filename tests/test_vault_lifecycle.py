"""Erasure, key rotation and at-rest secrecy of the vault, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from ledger import store as ledger_store
from tests.vault_helpers import file_keyring, store, voters
from vault.crosscheck import verify_vault
from vault.db import make_engine, migrate
from vault.erase import erase, find_subjects
from vault.errors import BadInput, KeyUnavailable
from vault.keyring import Keyring
from vault.keys import FileKeyProvider
from vault.records import open_subject
from vault.rotate import reencrypt, rotate_keys
from vault.schema import DataKey
from vault.store import T_BLIND, T_COLUMN, T_SUBJECT, read_attributes

T_KEY = DataKey.__table__  # type: ignore[attr-defined]


def _subject_of(engine: Engine, kr: Keyring, voter_id: str) -> int:
    with engine.connect() as conn:
        _, found = find_subjects(conn, kr, "voters", {"voter_id": voter_id})
    [sid] = found
    return sid


def test_erasure_makes_subject_unreadable_and_unfindable(engine: Engine, tmp_path: Path) -> None:
    kr = file_keyring(tmp_path)
    store(engine, kr, voters(30))
    sid = _subject_of(engine, kr, "NC00000007")
    with engine.begin() as conn:
        report = erase(conn, kr, "voters", {"voter_id": " nc00000007"}, actor="steward")
    assert report.subjects_erased == 1 and report.batches_resealed == 1
    with engine.connect() as conn:
        with pytest.raises(KeyUnavailable):
            open_subject(conn, Keyring(kr.provider), sid)
        _, found = find_subjects(conn, kr, "voters", {"voter_id": "NC00000007"})
        assert found == set()
        assert (
            conn.execute(
                select(func.count()).select_from(T_BLIND).where(T_BLIND.c.subject_id == sid)
            ).scalar_one()
            == 0
        )
        live = read_attributes(conn, kr, "voters", ["age"])
        assert live.height == 29  # excluded from every future release
        verify_vault(conn, ledger_store.iter_entries(conn))  # ledger still vouches for the vault
        actions = [e for e in ledger_store.iter_entries(conn) if b'"vault.erase"' in e]
        assert len(actions) == 1 and b"NC00000007" not in actions[0]


def test_erasure_blanks_attributes_in_stored_blobs(engine: Engine, tmp_path: Path) -> None:
    kr = file_keyring(tmp_path)
    store(engine, kr, voters(3, party="GRE"))
    with engine.begin() as conn:
        erase(conn, kr, "voters", {"phone": "919-555-0001"}, actor="steward")
    # Even the operator holding the dataset key no longer finds the erased row's values.
    from vault import crypto

    with engine.connect() as conn:
        blob = conn.execute(
            select(T_COLUMN.c.batch_id, T_COLUMN.c.key_id, T_COLUMN.c.sealed).where(
                T_COLUMN.c.column == "party"
            )
        ).one()
        ds = conn.execute(select(T_SUBJECT.c.dataset_id).limit(1)).scalar_one()
        col = crypto.open_column(
            kr.by_id(conn, blob.key_id), blob.key_id, ds, blob.batch_id, "party", bytes(blob.sealed)
        )
    assert col.to_list().count(None) == 1 and col.to_list().count("GRE") == 2


def test_erasure_reads_the_sqlite_blind_index_by_subject(tmp_path: Path) -> None:
    """On SQLite erasure finds its subjects' blind-index rows by the key, which leads with
    the subject (migration 0013), not by reading the dataset's whole column in the lookup
    index: every statement of it that names subjects of the blind index is planned on
    the key (checked with EXPLAIN QUERY PLAN on the statement as it ran)."""
    from sqlalchemy import event

    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine)
    kr = file_keyring(tmp_path)
    store(engine, kr, voters(200))
    ran: list[tuple[str, object]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _seen(_c: object, _cur: object, sql: str, params: object, *_a: object) -> None:
        if "vault_blind_index" in sql and "subject_id IN" in sql:
            ran.append((sql, params))

    with engine.begin() as conn:
        erase(conn, kr, "voters", {"voter_id": "NC00000007"}, actor="steward")
    event.remove(engine, "before_cursor_execute", _seen)
    assert {s.split()[0] for s, _ in ran} >= {"INSERT", "DELETE"}
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        for sql, params in ran:
            plan = [r[3] for r in raw.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            on_blind = [p for p in plan if "vault_blind_index" in p]
            assert on_blind and all("PRIMARY KEY (subject_id=?" in p for p in on_blind), plan
    engine.dispose()


def test_erase_on_non_lookup_column_is_bad_input(engine: Engine, tmp_path: Path) -> None:
    kr = file_keyring(tmp_path)
    store(engine, kr, voters(3))
    with engine.begin() as conn, pytest.raises(BadInput, match="not a lookup column"):
        erase(conn, kr, "voters", {"party": "DEM"}, actor="steward")


def test_rotation_keeps_everything_readable_and_retires_old_versions(
    engine: Engine, tmp_path: Path
) -> None:
    provider = FileKeyProvider.create(tmp_path / "kek.json")
    kr = Keyring(provider)
    store(engine, kr, voters(40))
    sid = _subject_of(engine, kr, "NC00000003")
    kek, rewrapped = rotate_keys(engine, provider, actor="admin")
    assert kek == 2 and rewrapped == 5  # attr, subject_wrap, blind, fingerprint, person
    batches, subjects, destroyed = reencrypt(engine, provider, actor="admin")
    assert (batches, subjects, destroyed) == (1, 40, 2)
    again = reencrypt(engine, provider, actor="admin")  # resumable: nothing left to do
    assert again == (0, 0, 0)
    fresh = Keyring(FileKeyProvider(tmp_path / "kek.json"))
    with engine.connect() as conn:
        assert read_attributes(conn, fresh, "voters", ["party"]).height == 40
        assert open_subject(conn, fresh, sid)[0]["voter_id"] == "NC00000003"
        states = dict(
            conn.execute(
                select(T_KEY.c.purpose + ":" + T_KEY.c.state, func.count()).group_by(
                    T_KEY.c.purpose, T_KEY.c.state
                )
            ).all()
        )
        assert states == {
            "attr:active": 1,
            "attr:destroyed": 1,
            "subject_wrap:active": 1,
            "subject_wrap:destroyed": 1,
            "person:active": 1,  # person pseudonyms: never rotated (docs/PRIVACY.md)
            "blind:active": 1,
            "fingerprint:active": 1,
        }
        assert {r.kek_version for r in conn.execute(select(T_KEY.c.kek_version))} == {2}
        verify_vault(conn, ledger_store.iter_entries(conn))
        retired = [e for e in ledger_store.iter_entries(conn) if b'"keys.retired"' in e]
        assert len(retired) == 2
    # New data keeps flowing after rotation, with the new keys.
    res = store(engine, fresh, voters(5, start=500))
    assert res.added == 5


def test_no_plaintext_anywhere_in_the_vault_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    engine = make_engine(f"sqlite:///{home / 'vault.db'}")
    migrate(engine)
    kr = Keyring(FileKeyProvider.create(home / "kek.json"))
    frame = voters(300)
    store(engine, kr, frame)
    with engine.begin() as conn:
        erase(conn, kr, "voters", {"voter_id": "NC00000001"}, actor="steward")
    # Scan every byte while the WAL still holds recent pages, then after a checkpoint.
    needles = {
        v.encode() for col in ("voter_id", "name", "phone") for v in frame.get_column(col).to_list()
    }
    needles |= {b"Person Number", b"NC000001"}
    for phase in ("live", "checkpointed"):
        blobs = [p.read_bytes() for p in home.rglob("*") if p.is_file()]
        assert any(p.name.endswith("-wal") for p in home.rglob("*")) or phase == "checkpointed"
        hits = [n for n in needles for b in blobs if n in b]
        assert hits == [], f"plaintext found in the vault home ({phase}): {len(hits)} values"
        engine.dispose()
        raw = sqlite3.connect(home / "vault.db")
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw.close()
