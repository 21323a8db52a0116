"""An insider with write access to the database (or a restored, edited backup) attacks a
copy of a realistic vault with plain SQL; ``civicvault ledger verify`` must catch every
edit, name the first bad row or entry, and pass every untouched copy.

One case per row of issue 19's list and per table of the schema, on SQLite and on
PostgreSQL; then seeded random edits of every vouched-for column. The trial counts
are reported in docs/SECURITY.md.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import DBAPIError

from tests.adversarial.realistic_vault import Copy, Original, build

Tamper = Callable[[Connection], None]


# -- the vault under attack, per backend ----------------------------------------------------------


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def original(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Original]:
    root = tmp_path_factory.mktemp(f"adversarial-{request.param}")
    if request.param == "sqlite":
        build(root / "home", None, root / "work")
        yield Original(root / "home", None, None)
        return
    server: str = request.getfixturevalue("pg_server")
    base, _ = server.rsplit("/", 1)
    admin = base + "/postgres"
    # a database of its own: every module that uses this fixture builds its own vault
    name = f"cv_adv_{secrets.token_hex(6)}"
    boss = create_engine(admin, isolation_level="AUTOCOMMIT")
    with boss.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{base}/{name}"
    build(root / "home", url, root / "work")
    orig = Original(root / "home", url, admin)
    try:
        yield orig
    finally:
        orig.drop_copies()
        with boss.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        boss.dispose()


@pytest.fixture
def copy(original: Original, tmp_path: Path) -> Copy:
    return original.copy(tmp_path)


def insider(c: Copy, fn: Tamper) -> None:
    """Run ``fn`` on the copy's database in one transaction (plain SQL, no civicvault code)."""
    url = c.db_url or f"sqlite:///{c.home / 'vault.db'}"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            fn(conn)
    finally:
        engine.dispose()


def flip(value: bytes, at: int = 0) -> bytes:
    b = bytearray(value)
    b[at % len(b)] ^= 0x01
    return bytes(b)


def one(conn: Connection, sql: str, **params: object) -> object:
    return conn.execute(text(sql), params).scalar_one()


def set_blob(conn: Connection, table: str, column: str, where: str, value: bytes,
             **params: object) -> None:
    conn.execute(text(f'UPDATE {table} SET "{column}" = :v WHERE {where}'), {"v": value, **params})


def erased_subject(conn: Connection) -> int:
    return int(one(conn, "SELECT min(id) FROM vault_subjects WHERE erased_at IS NOT NULL"))


def live_subject(conn: Connection) -> int:
    return int(one(conn, "SELECT min(id) FROM vault_subjects WHERE erased_at IS NULL"))


def toggle_live_bit(conn: Connection, batch: int, row: int) -> None:
    rows, mask = conn.execute(text("SELECT rows, live_mask FROM vault_batches WHERE id = :b"),
                              {"b": batch}).one()
    bits = np.unpackbits(np.frombuffer(zlib.decompress(bytes(mask)), dtype=np.uint8))[:rows]
    bits[row] ^= 1
    set_blob(conn, "vault_batches", "live_mask", "id = :b",
             zlib.compress(np.packbits(bits).tobytes(), 1), b=batch)


# -- the targeted cases: (table, row) the verifier must name --------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    tamper: Tamper
    table: str
    row: str | Callable[[Connection], str]  # read before the edit
    fast: bool = True  # also caught by ``ledger verify --fast``


def _principal_insert(conn: Connection) -> None:
    token = "cvt_" + "A" * 43
    conn.execute(text("INSERT INTO principals (id, role, token_hash, created, revoked) "
                      "VALUES ('mallory', 'admin', :h, '2026-01-01T00:00:00Z', NULL)"),
                 {"h": hashlib.sha256(token.encode()).hexdigest()})


def _wrapped_of(conn: Connection, sid: int) -> bytes:
    return bytes(one(conn, "SELECT wrapped_key FROM vault_subjects WHERE id = :s", s=sid))  # type: ignore[arg-type]


def _subject_key_corrupted(conn: Connection) -> None:
    sid = live_subject(conn)
    set_blob(conn, "vault_subjects", "wrapped_key", "id = :s", flip(_wrapped_of(conn, sid), 20),
             s=sid)


def _subject_shredded(conn: Connection) -> None:
    conn.execute(text("UPDATE vault_subjects SET wrapped_key = NULL, "
                      "erased_at = '2026-01-01T00:00:00Z' WHERE id = :s"),
                 {"s": live_subject(conn)})


def _erasure_undone(conn: Connection) -> None:
    conn.execute(text("UPDATE vault_subjects SET erased_at = NULL WHERE id = :s"),
                 {"s": erased_subject(conn)})


def _erasure_undone_from_backup(conn: Connection) -> None:
    """Both the mark and a wrapped key put back (the key bytes from an older backup)."""
    sid = erased_subject(conn)
    conn.execute(text("UPDATE vault_subjects SET erased_at = NULL, wrapped_key = :w "
                      "WHERE id = :s"), {"w": _wrapped_of(conn, live_subject(conn)), "s": sid})


def _active_key(conn: Connection) -> int:
    return int(one(conn, "SELECT min(id) FROM vault_data_keys WHERE state = 'active'"))


def _data_key_corrupted(conn: Connection) -> None:
    kid = _active_key(conn)
    wrapped = bytes(one(conn, "SELECT wrapped FROM vault_data_keys WHERE id = :k", k=kid))  # type: ignore[arg-type]
    set_blob(conn, "vault_data_keys", "wrapped", "id = :k", flip(wrapped, 5), k=kid)


def _blind_digest_changed(conn: Connection) -> None:
    row = conn.execute(text("SELECT dataset_id, \"column\", digest, subject_id "
                            "FROM vault_blind_index ORDER BY subject_id LIMIT 1")).one()
    conn.execute(text("UPDATE vault_blind_index SET digest = :new WHERE dataset_id = :d AND "
                      "\"column\" = :c AND digest = :old AND subject_id = :s"),
                 {"new": flip(bytes(row[2]), 3), "d": row[0], "c": row[1], "old": bytes(row[2]),
                  "s": row[3]})


def _sealed_flipped(table: str, key: str) -> Tamper:
    def tamper(conn: Connection) -> None:
        row = conn.execute(text(f"SELECT {key}, sealed FROM {table} ORDER BY {key} LIMIT 1")).one()
        set_blob(conn, table, "sealed", f"{key} = :k", flip(bytes(row[1]), 40), k=row[0])
    return tamper


def _first_batch(conn: Connection) -> str:
    return str(one(conn, "SELECT min(id) FROM vault_batches"))


def _batch_of_first_record(conn: Connection) -> str:
    return str(one(conn, "SELECT batch_id FROM vault_records ORDER BY id LIMIT 1"))


def _erased_batch(conn: Connection) -> str:
    sid = erased_subject(conn)
    return str(one(conn, "SELECT current_batch_id FROM vault_subjects WHERE id = :s", s=sid))


def _relive_erased(conn: Connection) -> None:
    sid = erased_subject(conn)
    batch, row = conn.execute(text("SELECT current_batch_id, current_row FROM vault_subjects "
                                   "WHERE id = :s"), {"s": sid}).one()
    toggle_live_bit(conn, int(batch), int(row))


def _row_subjects_swapped(conn: Connection) -> None:
    """Two rows of the first batch attributed to each other's subject (a linked release
    would count one voter's history for another), the packing kept valid."""
    batch = int(_first_batch(conn))
    rows, blob = conn.execute(text("SELECT rows, row_subjects FROM vault_batches WHERE id = :b"),
                              {"b": batch}).one()
    ids = np.cumsum(np.frombuffer(zlib.decompress(bytes(blob)), dtype="<i8"))
    assert rows >= 2 and ids[0] != ids[1]
    ids[[0, 1]] = ids[[1, 0]]
    set_blob(conn, "vault_batches", "row_subjects", "id = :b",
             zlib.compress(np.diff(ids, prepend=0).astype("<i8").tobytes(), 1), b=batch)


def _orphan_record(conn: Connection) -> None:
    """A copy of the first record, under a new id and a batch that does not exist."""
    conn.execute(text(
        "INSERT INTO vault_records (id, subject_id, batch_id, row, fields, sealed) "
        "SELECT (SELECT max(id) + 1 FROM vault_records), subject_id, "
        "(SELECT max(id) + 1000 FROM vault_batches), row, fields, sealed "
        "FROM vault_records WHERE id = (SELECT min(id) FROM vault_records)"))


def _orphan_subject(conn: Connection) -> None:
    """A copy of the first live subject, under a new id and a dataset that does not exist."""
    conn.execute(text(
        "INSERT INTO vault_subjects (id, dataset_id, key_id, wrapped_key, fingerprint, "
        "current_batch_id, current_row) "
        "SELECT (SELECT max(id) + 1 FROM vault_subjects), "
        "(SELECT max(id) + 1000 FROM vault_datasets), key_id, wrapped_key, fingerprint, "
        "current_batch_id, current_row FROM vault_subjects WHERE id = "
        "(SELECT min(id) FROM vault_subjects WHERE erased_at IS NULL)"))


def _orphan_blind_row(conn: Connection) -> None:
    """The first subject's first blind-index row again, in a dataset that does not exist."""
    conn.execute(text(
        'INSERT INTO vault_blind_index (dataset_id, "column", digest, subject_id, key_id) '
        'SELECT (SELECT max(id) + 1000 FROM vault_datasets), "column", digest, subject_id, '
        "key_id FROM vault_blind_index WHERE subject_id = "
        "(SELECT min(subject_id) FROM vault_blind_index) ORDER BY \"column\", digest LIMIT 1"))


CASES = [
    # issue 15: the row -> subject column a linked release reads (migration 0011)
    Case("row_subjects_swapped", _row_subjects_swapped, "vault_batches", _first_batch),
    Case("row_subjects_removed",
         lambda c: c.execute(text("UPDATE vault_batches SET row_subjects = NULL WHERE id = "
                                  "(SELECT min(id) FROM vault_batches)")),
         "vault_batches", _first_batch),
    # issue 19, undetected state edits
    Case("principal_role_set_to_admin",
         lambda c: c.execute(text("UPDATE principals SET role = 'admin' WHERE id = 'alice'")),
         "principals", "alice"),
    Case("admin_principal_inserted_with_known_token", _principal_insert, "principals", "mallory"),
    Case("principal_token_hash_replaced",
         lambda c: c.execute(text("UPDATE principals SET token_hash = :h WHERE id = 'sam'"),
                             {"h": "ab" * 32}), "principals", "sam"),
    Case("revoked_principal_reactivated",
         lambda c: c.execute(text("UPDATE principals SET revoked = NULL WHERE id = 'temp'")),
         "principals", "temp"),
    Case("budget_spent_reset_to_zero",
         lambda c: c.execute(text("UPDATE budget_accounts SET spent_nano = 0")),
         "budget_accounts", "alice/voters"),
    Case("budget_total_raised",
         lambda c: c.execute(text("UPDATE budget_accounts SET total_nano = 100000000000")),
         "budget_accounts", "alice/voters"),
    Case("budget_account_deleted", lambda c: c.execute(text("DELETE FROM budget_accounts")),
         "budget_accounts", "alice/voters"),
    Case("budget_delta_spent_changed",
         lambda c: c.execute(text("UPDATE budget_accounts SET delta_spent_atto = 1000")),
         "budget_accounts", "alice/voters"),
    Case("analyst_vault_wide_spend_reset",
         lambda c: c.execute(text("UPDATE budget_analysts SET spent_nano = 0")),
         "budget_analysts", "alice"),
    Case("dataset_budget_spent_reset",
         lambda c: c.execute(text("UPDATE budget_datasets SET spent_nano = 0")),
         "budget_datasets", "voters"),
    Case("live_bit_toggled", lambda c: toggle_live_bit(c, int(_first_batch(c)), 0),
         "vault_batches", _first_batch),
    Case("erased_row_made_live_again", _relive_erased, "vault_batches", _erased_batch),
    Case("erasure_mark_removed", _erasure_undone, "vault_subjects",
         lambda c: str(erased_subject(c))),
    Case("erasure_undone_with_a_backup_key", _erasure_undone_from_backup, "vault_subjects",
         lambda c: str(erased_subject(c))),
    Case("subject_key_shredded_silently", _subject_shredded, "vault_subjects",
         lambda c: str(live_subject(c))),
    Case("wrapped_subject_key_corrupted", _subject_key_corrupted, "vault_subjects",
         lambda c: str(live_subject(c)), fast=False),  # the row, not its bucket
    Case("subject_key_id_changed",
         lambda c: c.execute(text("UPDATE vault_subjects SET key_id = key_id + 1 WHERE id = "
                                  "(SELECT max(id) FROM vault_subjects)")),
         "vault_subjects", lambda c: str(one(c, "SELECT max(id) FROM vault_subjects")),
         fast=False),
    Case("subject_row_deleted",
         lambda c: c.execute(text("DELETE FROM vault_subjects WHERE id = (SELECT max(id) FROM "
                                  "vault_subjects WHERE erased_at IS NULL)")),
         "vault_subjects",
         lambda c: str(one(c, "SELECT max(id) FROM vault_subjects WHERE erased_at IS NULL")),
         fast=False),
    Case("wrapped_data_key_corrupted", _data_key_corrupted, "vault_data_keys",
         lambda c: str(_active_key(c))),
    Case("data_key_state_changed",
         lambda c: c.execute(text("UPDATE vault_data_keys SET state = 'active' "
                                  "WHERE id = (SELECT min(id) FROM vault_data_keys "
                                  "WHERE state <> 'active')")),
         "vault_data_keys",
         lambda c: str(one(c, "SELECT min(id) FROM vault_data_keys WHERE state <> 'active'"))),
    Case("blind_index_digest_changed", _blind_digest_changed, "vault_blind_index",
         lambda c: f"subject {one(c, 'SELECT min(subject_id) FROM vault_blind_index')}",
         fast=False),
    Case("blind_index_row_deleted",
         lambda c: c.execute(text("DELETE FROM vault_blind_index WHERE subject_id = "
                                  "(SELECT max(subject_id) FROM vault_blind_index)")),
         "vault_blind_index",
         lambda c: f"subject {one(c, 'SELECT max(subject_id) FROM vault_blind_index')}",
         fast=False),
    Case("batch_data_hash_column_changed",
         lambda c: c.execute(text("UPDATE vault_batches SET data_hash = :h WHERE id = "
                                  "(SELECT min(id) FROM vault_batches)"), {"h": "0" * 64}),
         "vault_batches", _first_batch),
    Case("batch_record_field_names_edited",
         lambda c: c.execute(text("UPDATE vault_batches SET record_fields = 'voter_reg_num' "
                                  "WHERE id = (SELECT min(id) FROM vault_batches)")),
         "vault_batches", _first_batch),
    Case("batch_row_count_changed",
         lambda c: c.execute(text("UPDATE vault_batches SET rows = rows + 1 WHERE id = "
                                  "(SELECT min(id) FROM vault_batches)")),
         "vault_batches", _first_batch),
    # one per remaining table of the schema
    Case("dataset_column_plan_edited",
         lambda c: c.execute(text(
             "UPDATE vault_datasets SET columns_json = "
             "replace(columns_json, '\"lookup\": \"id\"', '\"lookup\": null')")),
         "vault_datasets", lambda c: str(one(c, "SELECT min(id) FROM vault_datasets"))),
    Case("source_content_hash_edited",
         lambda c: c.execute(text("UPDATE vault_sources SET content_hash = :h WHERE id = "
                                  "(SELECT min(id) FROM vault_sources)"), {"h": "f" * 64}),
         "vault_sources", lambda c: str(one(c, "SELECT min(id) FROM vault_sources"))),
    Case("batch_column_ciphertext_flipped", _sealed_flipped("vault_batch_columns", "batch_id"),
         "vault_batches",
         lambda c: str(one(c, "SELECT min(batch_id) FROM vault_batch_columns")), fast=False),
    Case("record_ciphertext_flipped", _sealed_flipped("vault_records", "id"), "vault_batches",
         _batch_of_first_record, fast=False),
    # rows pointing at no batch, dataset or key: no foreign key stops an insider's plain
    # SQL (SQLite enforces one only on connections that ask; migration 0014 drops them)
    Case("record_added_under_no_batch", _orphan_record, "vault_records",
         lambda c: str(one(c, "SELECT max(id) + 1 FROM vault_records")), fast=False),
    Case("subject_added_in_no_dataset", _orphan_subject, "vault_subjects",
         lambda c: str(one(c, "SELECT max(id) + 1 FROM vault_subjects")), fast=False),
    Case("blind_row_added_in_no_dataset", _orphan_blind_row, "vault_blind_index",
         lambda c: f"subject {one(c, 'SELECT min(subject_id) FROM vault_blind_index')}",
         fast=False),
    Case("suppression_list_emptied", lambda c: c.execute(text("DELETE FROM vault_suppressed")),
         "vault_suppressed", lambda c: str(one(c, "SELECT min(id) FROM vault_datasets"))),
    Case("reveal_count_reset", lambda c: c.execute(text("DELETE FROM principal_reveals")),
         "principal_reveals", "sam"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_state_edit_detected_and_named(copy: Copy, case: Case) -> None:
    expected_row: list[str] = []

    def tamper(conn: Connection) -> None:
        if not isinstance(case.row, str):
            expected_row.append(case.row(conn))
        case.tamper(conn)

    insider(copy, tamper)
    row = case.row if isinstance(case.row, str) else expected_row[0]
    for mode in ((), ("--fast",)) if case.fast else ((),):
        code, out = copy.verify(*mode)
        assert code == 1, (mode, out)
        assert out.get("vault_table") == case.table, (mode, out)
        assert out.get("vault_row") == row, (mode, out)


def test_policy_file_swapped_is_detected(copy: Copy) -> None:
    policy = copy.home / "policy.toml"
    policy.write_text(policy.read_text(encoding="utf-8").replace(
        'reveal = ["steward"]', 'reveal = ["steward", "analyst"]'), encoding="utf-8")
    code, out = copy.verify("--fast")
    assert code == 1
    assert (out["vault_table"], out["vault_row"]) == ("policy", "policy.toml")


def test_untouched_copies_verify(original: Original, tmp_path: Path) -> None:
    for _ in range(3):
        c = original.copy(tmp_path)
        for mode in ((), ("--fast",)):
            code, out = c.verify(*mode)
            assert code == 0, out
            assert out["verified"] is True


# -- append-only against plain SQL -----------------------------------------------------------------


def _refused(c: Copy, sql: str) -> None:
    with pytest.raises(DBAPIError, match="append-only"):
        insider(c, lambda conn: conn.exec_driver_sql(sql))


def test_overwriting_inserts_refused(copy: Copy) -> None:
    if copy.db_url is None:
        for sql in (
            "INSERT OR REPLACE INTO ledger_entries SELECT seq, leaf_hash, entry FROM "
            "ledger_entries WHERE seq = 3",
            "REPLACE INTO ledger_entries (seq, leaf_hash, entry) SELECT seq, leaf_hash, "
            "CAST('{}' AS BLOB) FROM ledger_entries WHERE seq = 2",
            "INSERT INTO ledger_entries SELECT seq, leaf_hash, entry FROM ledger_entries "
            "WHERE seq = 1 ON CONFLICT (seq) DO UPDATE SET entry = excluded.entry",
            "INSERT OR REPLACE INTO ledger_nodes SELECT level, idx, hash FROM ledger_nodes",
            "INSERT OR REPLACE INTO ledger_nodes VALUES (5, 0, zeroblob(32))",
            "UPDATE ledger_nodes SET hash = zeroblob(32)",
            "DELETE FROM ledger_nodes",
            "UPDATE ledger_entries SET leaf_hash = zeroblob(32) WHERE seq = 0",
            "DELETE FROM ledger_entries WHERE seq = 4",
        ):
            _refused(copy, sql)
    else:
        for sql in (
            "INSERT INTO ledger_entries SELECT seq, leaf_hash, entry FROM ledger_entries "
            "WHERE seq = 1 ON CONFLICT (seq) DO UPDATE SET entry = excluded.entry",
            "INSERT INTO ledger_entries SELECT seq, leaf_hash, entry FROM ledger_entries "
            "WHERE seq = 1",
            "INSERT INTO ledger_nodes VALUES (5, 0, decode(repeat('00', 32), 'hex')) "
            "ON CONFLICT (level, idx) DO UPDATE SET hash = excluded.hash",
            "UPDATE ledger_nodes SET hash = decode(repeat('00', 32), 'hex')",
            "DELETE FROM ledger_nodes",
            "TRUNCATE ledger_entries",
            "DELETE FROM ledger_entries WHERE seq = 4",
        ):
            _refused(copy, sql)
    code, _ = copy.verify()
    assert code == 0  # nothing got through


def _drop_triggers(conn: Connection) -> None:
    """What an insider does first: the triggers are plain schema objects."""
    if conn.dialect.name == "postgresql":
        for table in ("ledger_entries", "ledger_nodes"):
            conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        return
    names = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger' AND "
                                 "tbl_name LIKE 'ledger_%'").scalars().all()
    for name in names:
        conn.exec_driver_sql(f'DROP TRIGGER "{name}"')


def _size(conn: Connection) -> int:
    return int(one(conn, "SELECT count(*) FROM ledger_entries"))


@pytest.mark.parametrize("where", ["middle", "tail-block", "last"])
def test_deleted_entry_named(copy: Copy, where: str) -> None:
    seqs: list[int] = []

    def tamper(conn: Connection) -> None:
        _drop_triggers(conn)
        n = _size(conn)
        seq = {"middle": n // 3, "tail-block": n - 3, "last": n - 1}[where]
        conn.execute(text("DELETE FROM ledger_entries WHERE seq = :s"), {"s": seq})
        seqs.append(seq)

    insider(copy, tamper)
    code, out = copy.verify()
    assert code == 1, out
    assert "stored tree nodes are missing" not in str(out.get("error"))
    # the last entry gone is a truncation: the saved checkpoint still covers it, or the
    # tree nodes it completed name it
    assert out["first_failing_seq"] == seqs[0], out


def test_edited_entry_and_its_leaf_hash_named(copy: Copy) -> None:
    def tamper(conn: Connection) -> None:
        _drop_triggers(conn)
        raw = bytes(one(conn, "SELECT entry FROM ledger_entries WHERE seq = 9"))  # type: ignore[arg-type]
        edited = raw.replace(b'"actor":"', b'"actor":"x', 1)
        conn.execute(text("UPDATE ledger_entries SET entry = :e, leaf_hash = :h WHERE seq = 9"),
                     {"e": edited, "h": hashlib.sha256(b"\x00" + edited).digest()})

    insider(copy, tamper)
    code, out = copy.verify()
    assert code == 1 and out["first_failing_seq"] == 9, out


def test_stored_leaf_hash_changed_in_place_named(copy: Copy) -> None:
    def tamper(conn: Connection) -> None:
        _drop_triggers(conn)
        leaf = bytes(one(conn, "SELECT leaf_hash FROM ledger_entries WHERE seq = 2"))  # type: ignore[arg-type]
        set_blob(conn, "ledger_entries", "leaf_hash", "seq = 2", flip(leaf))

    insider(copy, tamper)
    for mode in ((), ("--fast",)):
        code, out = copy.verify(*mode)
        assert code == 1 and out["first_failing_seq"] == 2, out


def test_tree_node_edited_in_place_named(copy: Copy) -> None:
    def tamper(conn: Connection) -> None:
        _drop_triggers(conn)
        digest = bytes(one(conn, "SELECT hash FROM ledger_nodes WHERE level = 5 AND idx = 0"))  # type: ignore[arg-type]
        set_blob(conn, "ledger_nodes", "hash", "level = 5 AND idx = 0", flip(digest))

    insider(copy, tamper)
    code, out = copy.verify()
    assert code == 1
    assert "tree node (level 5, index 0)" in str(out["error"]), out


def test_tree_node_deleted_named(copy: Copy) -> None:
    insider(copy, lambda c: (_drop_triggers(c), c.execute(text(
        "DELETE FROM ledger_nodes WHERE level = 5 AND idx = 0"))))
    code, out = copy.verify()
    assert code == 1
    assert "tree node (level 5, index 0)" in str(out["error"]), out


# -- seeded random edits of every vouched-for column --------------------------------------------

RANDOM_TRIALS = 24
VOUCHED: list[tuple[str, str, str, bool]] = [  # table, key column(s), column, blob?
    ("principals", "id", "role", False),
    ("principals", "id", "token_hash", False),
    ("budget_accounts", "analyst", "spent_nano", False),
    ("budget_accounts", "analyst", "total_nano", False),
    ("budget_datasets", "dataset", "spent_nano", False),
    ("budget_analysts", "analyst", "spent_nano", False),
    ("vault_batches", "id", "data_hash", False),
    ("vault_batches", "id", "live_mask", True),
    ("vault_subjects", "id", "wrapped_key", True),
    ("vault_subjects", "id", "key_id", False),
    ("vault_data_keys", "id", "wrapped", True),
    ("vault_data_keys", "id", "kek_version", False),
    ("vault_records", "id", "sealed", True),
    ("vault_batch_columns", "batch_id", "sealed", True),
    ("vault_datasets", "id", "schema_hash", False),
    ("vault_sources", "id", "rows", False),
]


def _random_edit(rng: random.Random, table: str, key: str, column: str, blob: bool
                 ) -> Tamper:
    def tamper(conn: Connection) -> None:
        rows = conn.execute(text(f'SELECT {key}, "{column}" FROM {table} WHERE "{column}" IS NOT '
                                 f"NULL ORDER BY {key}")).all()
        rows = [r for r in rows if (not blob or len(bytes(r[1])) > 0)
                and r[0] != "admin"]  # a demoted admin may not verify: it would be refused
        k, value = rows[rng.randrange(len(rows))]
        if blob:
            raw = bytes(value)
            if column == "live_mask":  # flip one row bit, keep the packing valid
                n = int(one(conn, "SELECT rows FROM vault_batches WHERE id = :k", k=k))
                toggle_live_bit(conn, int(k), rng.randrange(n))
                return
            new: object = flip(raw, rng.randrange(len(raw)))
        elif isinstance(value, int):
            new = value + rng.choice([-1, 1, 7, 10**9])
        else:
            s = str(value)
            new = s[:-1] + ("0" if s[-1] != "0" else "1") if column != "role" else (
                "admin" if s != "admin" else "analyst")
        conn.execute(text(f'UPDATE {table} SET "{column}" = :v WHERE {key} = :k'),
                     {"v": new, "k": k})
    return tamper


def test_random_edits_of_vouched_columns_detected(original: Original, tmp_path: Path) -> None:
    rng = random.Random(19)
    detected = 0
    for trial in range(RANDOM_TRIALS):
        table, key, column, blob = VOUCHED[trial % len(VOUCHED)]
        c = original.copy(tmp_path)
        insider(c, _random_edit(rng, table, key, column, blob))
        code, out = c.verify()
        assert code == 1, (table, column, out)
        assert out.get("vault_table") or out.get("first_failing_seq") is not None, out
        detected += 1
    assert detected == RANDOM_TRIALS
