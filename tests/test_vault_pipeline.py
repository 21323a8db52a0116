"""Column-wise bulk inserts and the pipelined batch writer, on real SQLite and PostgreSQL.

The pipelined writer seals batch k+1 while batch k is being written, on predicted
ids; these tests check that it stores what the one-batch-at-a-time path stores,
that a writer slipping in between is detected (the batch is then written afresh),
and that a failure mid-ingest leaves whole batches only.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, func, inspect, select, text

from ledger import store as ledger_store
from ledger.db_verify import verify_stored
from tests.vault_helpers import LAYOUT, file_keyring, store, voters
from vault import bulk
from vault.bulk import Columns, insert_columns
from vault.crosscheck import verify_vault, vouched_hashes
from vault.db import make_engine, migrate
from vault.identity_cache import _existing_subjects
from vault.keyring import Keyring, now
from vault.records import open_subject
from vault.store import (
    T_BATCH,
    T_BLIND,
    T_RECORD,
    T_SOURCE,
    T_SUBJECT,
    IdentityCache,
    bulk_insert,
    dataset_id,
    read_attributes,
    write_batches,
)


def _source(engine: Engine, dataset: str = "voters", batches: int = 1,
            rows: int = 1) -> tuple[int, int]:
    with engine.begin() as conn:
        ds = dataset_id(conn, dataset, create_with=("test", LAYOUT.to_json()))
        src = conn.execute(T_SOURCE.insert().values(
            dataset_id=ds, content_hash=secrets.token_hex(16), rows=rows, batches=batches,
            created=now()).returning(T_SOURCE.c.id)).scalar_one()
    return ds, int(src)


def _write_all(engine: Engine, kr: Keyring, frames: list[pl.DataFrame], *,
               begin: object = None, dataset: str = "voters") -> list[tuple[int, int, int]]:
    ds, src = _source(engine, dataset, len(frames))
    results = write_batches(begin or engine.begin, kr, ds_id=ds, dataset=dataset,  # type: ignore[arg-type]
                            source_id=src, batches=enumerate(frames), layout=LAYOUT,
                            actor="tester", cache=IdentityCache())
    return [(r.added, r.updated, r.skipped) for r in results]


def _verified(engine: Engine) -> None:
    """The ledger verifies, every batch matches its ledger entry, and every subject bucket
    its last digests on the ledger, which the writers laid out from the rows they held and
    the older rows of a shared bucket (raises otherwise)."""
    from vault import state_verify

    verify_stored(engine, parallel=False)
    with engine.connect() as conn:
        verify_vault(conn, ledger_store.iter_entries(conn))
        n = ledger_store.size(conn)
        exp = state_verify.fold(chunk for chunk, _ in ledger_store.iter_chunks(conn, 0, n))
        state_verify._buckets(conn, exp)


def _count(engine: Engine, table, **where: int) -> int:  # type: ignore[no-untyped-def]
    q = select(func.count()).select_from(table)
    for k, v in where.items():
        q = q.where(table.c[k] == v)
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def _all_rows(engine: Engine, table) -> list[tuple[object, ...]]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        rows = conn.execute(select(table)).all()
    return sorted(tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows)


# -- column-wise bulk insert ---------------------------------------------------------


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blobs=st.lists(st.binary(max_size=40), min_size=1, max_size=30),
       fields=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                      min_size=1, max_size=12))
def test_insert_columns_writes_what_executemany_writes(engine: Engine, tmp_path: Path,
                                                       blobs: list[bytes], fields: str) -> None:
    """Same rows as the row-by-row path, whatever bytes (NUL too) and text (commas, quotes).

    (Text never holds NUL: PostgreSQL rejects it on every path.)
    """
    with engine.connect() as conn:
        batch = conn.execute(select(func.max(T_BATCH.c.id))).scalar()
    if batch is None:  # a real batch for the foreign key
        batch = store(engine, file_keyring(tmp_path), voters(1)).batch_id
    assert batch is not None
    with engine.begin() as conn:
        first = int(conn.execute(select(func.coalesce(func.max(T_RECORD.c.id), 0))).scalar_one())
        n = len(blobs)
        ids = np.arange(first + 1, first + 1 + n, dtype=np.int64)
        insert_columns(conn, T_RECORD, Columns(
            n, ints={"id": ids, "subject_id": ids * 7, "row": np.arange(n, dtype=np.int64)},
            blobs={"sealed": blobs}, consts={"batch_id": batch, "fields": fields}))
        bulk_insert(conn, T_RECORD, ("id", "subject_id", "batch_id", "row", "fields", "sealed"),
                    [(int(i) + n, int(i) * 7, batch, r, fields, b)
                     for r, (i, b) in enumerate(zip(ids, blobs, strict=True))])
        rows = conn.execute(select(T_RECORD).where(T_RECORD.c.id > first)
                            .order_by(T_RECORD.c.id)).all()
    fast, slow = rows[:n], rows[n:]
    assert [(r.subject_id, r.batch_id, r.row, r.fields, bytes(r.sealed)) for r in fast] == \
        [(r.subject_id, r.batch_id, r.row, r.fields, bytes(r.sealed)) for r in slow]
    assert [bytes(r.sealed) for r in fast] == blobs


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labels=st.lists(st.text(st.characters(blacklist_categories=("Cs",),
                                              blacklist_characters="\x00"),
                               min_size=1, max_size=12),
                       min_size=1, max_size=12, unique=True),
       data=st.data())
def test_labelled_text_columns_write_their_labels(engine: Engine, tmp_path: Path,
                                                  labels: list[str],
                                                  data: st.DataObject) -> None:
    """A text column given as codes into labels (SQLite: a CASE over the codes; PostgreSQL:
    CSV) stores each row's label as text, equal to the same text bound row by row."""
    codes = data.draw(st.lists(st.integers(0, len(labels) - 1), min_size=1, max_size=40))
    n = len(codes)
    with engine.connect() as conn:
        ds = conn.execute(select(func.max(T_BATCH.c.dataset_id))).scalar()
    if ds is None:  # a real dataset and key for the foreign keys
        store(engine, file_keyring(tmp_path), voters(1))
    with engine.begin() as conn:
        ds, key = conn.execute(select(T_BATCH.c.dataset_id, T_BLIND.c.key_id)
                               .join(T_BLIND, T_BLIND.c.dataset_id == T_BATCH.c.dataset_id)
                               .limit(1)).one()
        first = 10**9 + int(conn.execute(select(func.count()).select_from(T_BLIND)).scalar_one())
        subjects = np.arange(first, first + n, dtype=np.int64)
        insert_columns(conn, T_BLIND, Columns(
            n, ints={"subject_id": subjects}, blobs={"digest": [b"d"] * n},
            consts={"dataset_id": ds, "key_id": key},
            labels={"column": (np.asarray(codes, dtype=np.int64), tuple(labels))}))
        got = conn.execute(select(T_BLIND.c.subject_id, T_BLIND.c.column)
                           .where(T_BLIND.c.subject_id >= first)
                           .order_by(T_BLIND.c.subject_id)).all()
        typed = conn.execute(select(func.count()).select_from(T_BLIND).where(
            T_BLIND.c.subject_id >= first,
            T_BLIND.c.column.in_([labels[c] for c in codes]))).scalar_one()
    assert [(int(s), c) for s, c in got] == [(int(s), labels[c]) for s, c in zip(
        subjects, codes, strict=True)]
    assert typed == n  # stored as text: equal to text parameters (not blobs)
    with pytest.raises(ValueError, match="a code without a label"):
        Columns(1, labels={"column": (np.array([len(labels)], dtype=np.int64),
                                      tuple(labels))})


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.integers(0, 2**63 - 1) | st.integers(0, 10**6), max_size=40))
def test_sqlite_integer_columns_are_fixed_width_decimal_digits(values: list[int]) -> None:
    """SQLite's bulk path sends an integer column as one blob of fixed-width digits (cut
    with ``substr`` and cast back): every id, from 0 to the largest int64, round-trips."""
    from vault.bulk import _digits

    blob, width = _digits(np.asarray(values, dtype=np.int64))
    assert width == max([1, *(len(str(v)) for v in values)])
    assert blob == "".join(str(v).zfill(width) for v in values).encode()
    with pytest.raises(ValueError, match=">= 0"):
        _digits(np.asarray([*values, -1], dtype=np.int64))


@st.composite
def _int_columns(draw: st.DrawFn) -> list[int]:
    """Integer columns of the shapes SQLite's bulk path computes from its counter (a
    progression, each value repeated r times; a constant) and their near misses."""
    n = draw(st.integers(1, 40))
    kind = draw(st.sampled_from(["progression", "near miss", "any"]))
    if kind == "any":
        return draw(st.lists(st.integers(0, 2**63 - 1) | st.integers(0, 50), min_size=n,
                             max_size=n))
    repeat = draw(st.integers(1, 4))
    first = draw(st.integers(0, 2**63 - 1) | st.integers(0, 1000))
    step = draw(st.integers(-3, 3) | st.integers(-(2**62), 2**62))
    values = [first + step * (i // repeat) for i in range(n)]
    if not all(0 <= v < 2**63 for v in values):
        values = [min(max(v, 0), 2**63 - 1) for v in values]  # clipped: rarely a line
    if kind == "near miss":
        at = draw(st.integers(0, n - 1))
        values[at] = min(values[at] + draw(st.integers(1, 2**40)), 2**63 - 1)
    return values


@settings(max_examples=150, deadline=None)
@given(subjects=_int_columns(), rows=_int_columns())
def test_sqlite_integer_columns_store_every_value_whatever_their_shape(
    tmp_path_factory: pytest.TempPathFactory, subjects: list[int], rows: list[int],
) -> None:
    """Progressions go as two numbers and arithmetic on the counter, everything else as
    digits: either way each row stores exactly its value, up to the largest int64, and a
    column that is a progression but for one value is stored as given."""
    from vault.bulk import _progression, prepare

    n = min(len(subjects), len(rows))
    subjects, rows = subjects[:n], rows[:n]
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('ints') / 'v.db'}")
    migrate(engine)
    ids = np.arange(1, n + 1, dtype=np.int64)
    cols = Columns(n, ints={"id": ids, "subject_id": np.asarray(subjects, dtype=np.int64),
                            "row": np.asarray(rows, dtype=np.int64)},
                   blobs={"sealed": [b"x"] * n}, consts={"batch_id": 1, "fields": ""})
    stmt = prepare("sqlite", T_RECORD, cols)
    for name, values in (("subject_id", subjects), ("row", rows)):
        shape = _progression(np.asarray(values, dtype=np.int64))
        if shape is not None:  # it is one: the rule it claims holds for every row
            first, step, repeat = shape
            assert values == [first + step * (i // repeat) for i in range(n)], name
    with engine.begin() as conn:
        insert_columns(conn, T_RECORD, cols)
        got = conn.execute(select(T_RECORD.c.id, T_RECORD.c.subject_id, T_RECORD.c.row)
                           .order_by(T_RECORD.c.id)).all()
        types = conn.exec_driver_sql("SELECT DISTINCT typeof(subject_id), typeof(row) "
                                     "FROM vault_records").all()
    engine.dispose()
    assert [tuple(r) for r in got] == list(zip(ids.tolist(), subjects, rows, strict=True))
    assert types == [("integer", "integer")]
    assert stmt.sql.count("substr") >= 1  # the blob column is still cut out of its blob


@settings(max_examples=100, deadline=None)
@given(data=st.data(), n=st.integers(1, 30), k=st.integers(1, 4))
def test_sqlite_blind_rows_are_each_subjects_digests_in_key_order(
    data: st.DataObject, n: int, k: int,
) -> None:
    """New subjects' blind-index rows on SQLite: one per subject and non-empty digest, in
    (subject, column) order, the same statement as a row-by-row reference builds; and
    digests that do not pair with the subjects are refused."""
    from vault.bulk import prepare
    from vault.store import _blind_rows

    names = sorted(data.draw(st.lists(st.sampled_from(["email", "id", "phone", "voter_id"]),
                                      min_size=k, max_size=k, unique=True)))
    digest = st.none() | st.binary(min_size=16, max_size=16)
    digests = {c: data.draw(st.lists(digest, min_size=n, max_size=n)) for c in names}
    subjects = list(range(1000, 1000 + n))
    rows = [(s, j, digests[c][i]) for i, s in enumerate(subjects)
            for j, c in enumerate(names) if digests[c][i] is not None]
    want = prepare("sqlite", T_BLIND, Columns(
        len(rows), ints={"subject_id": np.asarray([r[0] for r in rows], dtype=np.int64)},
        blobs={"digest": [r[2] for r in rows]}, consts={"dataset_id": 3, "key_id": 4},
        labels={"column": (np.asarray([r[1] for r in rows], dtype=np.int64), tuple(names))}))
    [got] = _blind_rows("sqlite", 3, 4, subjects, digests)
    assert (got.sql, got.params, got.rows) == (want.sql, want.params, want.rows)
    with pytest.raises(ValueError, match="differ in number"):
        _blind_rows("sqlite", 3, 4, [*subjects, 9999], digests)


def test_sqlite_counter_arithmetic_is_used_for_a_first_loads_shapes() -> None:
    """A first load's columns are progressions: ids, rows, a subject id per lookup column,
    column codes cycling through the labels; none of them is sent as digits."""
    from vault.bulk import _cycle, prepare

    n = 6
    rec = prepare("sqlite", T_RECORD, Columns(
        n, ints={"id": np.arange(101, 101 + n), "subject_id": np.arange(7, 7 + n),
                 "row": np.arange(n)},
        blobs={"sealed": [b"ab", b"c", b"", b"def", b"g", b"h"]},
        consts={"batch_id": 3, "fields": ""}))
    assert rec.sql.count("CAST(") == 2  # only the varying blob's offsets and lengths
    blind = prepare("sqlite", T_BLIND, Columns(
        n, ints={"subject_id": np.repeat(np.arange(40, 42), 3)}, blobs={"digest": [b"d"] * n},
        consts={"dataset_id": 1, "key_id": 1},
        labels={"column": (np.tile(np.arange(3), 2), ("email", "phone", "voter_id"))}))
    assert "CAST(" not in blind.sql and "(i / 3)" in blind.sql and "CASE i % 3" in blind.sql
    assert _cycle(np.array([0, 1, 2, 0, 2], dtype=np.int64)) is None
    assert _cycle(np.array([0, 1, 2, 0, 1], dtype=np.int64)) == 3


def test_binary_copy_takes_the_shapes_it_can_and_leaves_the_rest_to_csv() -> None:
    from vault.bulk import prepare
    from vault.tables import T_BLIND

    fixed = Columns(2, ints={"subject_id": np.array([1, 2], dtype=np.int64)},
                    blobs={"digest": [b"a" * 16, b"b" * 16]},
                    consts={"dataset_id": 1, "column": "phone", "key_id": 3})
    assert prepare("postgresql", T_BLIND, fixed).sql.endswith("(FORMAT binary)")
    two_varying = Columns(2, blobs={"sealed": [b"a", b"bb"], "fields": [b"x", b"yy"]})
    from vault.bulk import _copy_pg_binary

    assert _copy_pg_binary(T_RECORD, two_varying) is None
    with pytest.raises(ValueError, match="does not fit an integer column"):
        prepare("postgresql", T_RECORD, Columns(
            1, ints={"id": np.array([1], dtype=np.int64), "subject_id": np.array([1]),
                     "row": np.array([2**31], dtype=np.int64)},
            blobs={"sealed": [b"x"]}, consts={"batch_id": 1, "fields": "f"}))


@pytest.mark.postgres
def test_binary_copy_writes_extremes_as_they_are(pg_url: str, tmp_path: Path) -> None:
    """int4 and int8 at their limits, text past ASCII, empty and varying blobs."""
    from vault.db import make_engine, migrate

    engine = make_engine(pg_url)
    migrate(engine)
    batch = store(engine, file_keyring(tmp_path), voters(1)).batch_id
    blobs = [b"", b"\x00", b"\xff" * 300, b"\\N", b',"\n']
    ids = np.array([2**62, 2**62 + 1, 2**62 + 2, 2**62 + 3, 2**62 + 4], dtype=np.int64)
    with engine.begin() as conn:
        insert_columns(conn, T_RECORD, Columns(
            5, ints={"id": ids, "subject_id": ids - 2**61,
                     "row": np.array([0, 1, 2**31 - 1, 7, 8], dtype=np.int64)},
            blobs={"sealed": blobs}, consts={"batch_id": batch, "fields": "naïve,名前"}))
        got = conn.execute(select(T_RECORD).where(T_RECORD.c.id >= 2**62)
                           .order_by(T_RECORD.c.id)).all()
    engine.dispose()
    assert [(r.id, r.subject_id, r.row, r.fields, bytes(r.sealed)) for r in got] == [
        (int(i), int(i) - 2**61, row, "naïve,名前", b)
        for i, row, b in zip(ids, [0, 1, 2**31 - 1, 7, 8], blobs, strict=True)]


def test_bulk_counter_grows_and_survives_a_rollback(engine: Engine, tmp_path: Path) -> None:
    """SQLite's statements count rows off a temporary table of the connection: grown as a
    statement needs, and made again after a rollback took its creation or growth back."""
    from vault.bulk import COUNTER

    batch = store(engine, file_keyring(tmp_path), voters(1)).batch_id
    assert batch is not None

    def insert(conn: Connection, first: int, n: int) -> None:
        ids = np.arange(first, first + n, dtype=np.int64)
        insert_columns(conn, T_RECORD, Columns(
            n, ints={"id": ids, "subject_id": ids, "row": ids - first},
            blobs={"sealed": [int(i).to_bytes(8, "big") for i in ids]},
            consts={"batch_id": batch, "fields": "f"}))

    with engine.connect() as conn:  # one pooled connection: its temporary table persists
        with conn.begin() as tx:
            insert(conn, 10_000, 1_500)
            tx.rollback()
        for first, n in ((20_000, 3_000), (30_000, 700), (40_000, 5_000)):
            with conn.begin():
                insert(conn, first, n)
        got = conn.execute(select(T_RECORD.c.id, T_RECORD.c.row, T_RECORD.c.sealed)
                           .where(T_RECORD.c.id >= 10_000).order_by(T_RECORD.c.id)).all()
        if conn.dialect.name == "sqlite":
            assert conn.exec_driver_sql(f"SELECT count(*) FROM temp.{COUNTER}").scalar() == 6_000
    want = [i for first, n in ((20_000, 3_000), (30_000, 700), (40_000, 5_000))
            for i in range(first, first + n)]
    assert [r.id for r in got] == want
    assert all(bytes(r.sealed) == r.id.to_bytes(8, "big") and r.row == r.id % 10_000
               for r in got)


def test_insert_columns_rejects_unknown_and_ragged_columns(engine: Engine) -> None:
    with pytest.raises(ValueError, match="2 values for 3 rows"):
        Columns(3, ints={"id": np.arange(2, dtype=np.int64)})
    with engine.begin() as conn, pytest.raises(ValueError, match="no column nope"):
        insert_columns(conn, T_BLIND, Columns(1, consts={"nope": 1}))
    with pytest.raises(ValueError, match="holds None"):  # SQLite's blobs: bytes, always
        bulk.prepare("sqlite", T_RECORD, Columns(2, blobs={"sealed": [b"x", None]}))  # type: ignore[list-item]


def test_a_prepared_sqlite_statement_crosses_a_process_boundary(tmp_path: Path) -> None:
    """The seal child pickles its prepared statements: each blob column is a slice of
    Arrow's buffer, which pickles as its own bytes and binds as the same blob."""
    import pickle

    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine)
    blobs = [secrets.token_bytes(k % 37) for k in range(500)]  # varying, empty ones too
    ids = np.arange(1, 501, dtype=np.int64)
    stmt = bulk.prepare("sqlite", T_RECORD, Columns(
        500, ints={"id": ids, "subject_id": ids, "row": ids - 1}, blobs={"sealed": blobs},
        consts={"batch_id": 1, "fields": "f"}))
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        bulk.execute(conn, pickle.loads(pickle.dumps(stmt, protocol=5)))
        got = conn.execute(select(T_RECORD.c.sealed).order_by(T_RECORD.c.id)).scalars().all()
    engine.dispose()
    assert [bytes(b) for b in got] == blobs


def test_blind_index_rows_complete_and_findable(engine: Engine, tmp_path: Path) -> None:
    from vault import blind_index
    from vault.keyring import Keyring as _K  # noqa: F401

    kr = file_keyring(tmp_path)
    frame = voters(300)
    store(engine, kr, frame)
    with engine.connect() as conn:
        cols = conn.execute(select(T_BLIND.c.column, func.count()).group_by(T_BLIND.c.column)
                            ).all()
        assert {c: int(k) for c, k in cols} == {"name": 300, "phone": 300, "voter_id": 300}
        ds = dataset_id(conn, "voters")
        key = kr.active(conn, ds, "blind").key
        digest = blind_index.digest_one(key, "phone", "919.555.0123", "phone")
        subject = conn.execute(select(T_BLIND.c.subject_id).where(
            T_BLIND.c.column == "phone", T_BLIND.c.digest == digest)).scalar_one()
        [rec] = open_subject(conn, kr, int(subject))
    assert rec["voter_id"] == "NC00000123"


# -- pipelined writer ------------------------------------------------------------------


def test_pipelined_batches_store_what_sequential_batches_store(engine: Engine,
                                                               tmp_path: Path) -> None:
    kr = file_keyring(tmp_path)
    frames = [voters(400, start=k * 400) for k in range(5)]
    assert _write_all(engine, kr, frames) == [(400, 0, 0)] * 5
    assert _count(engine, T_SUBJECT) == 2000 and _count(engine, T_RECORD) == 2000
    assert _count(engine, T_BATCH) == 5
    with engine.connect() as conn:
        back = read_attributes(conn, kr, "voters", ["county", "party", "age"])
        expect = pl.concat(frames).select("county", "party", "age")
        assert sorted(back.rows()) == sorted(expect.rows())
        # every record opens under its subject's key, in its own context
        last = conn.execute(select(func.max(T_SUBJECT.c.id))).scalar_one()
        [rec] = open_subject(conn, kr, int(last))
        assert rec["voter_id"] == "NC00001999"
    _verified(engine)


def test_pipelined_duplicates_across_batches_update_once(engine: Engine, tmp_path: Path) -> None:
    """A subject seen again in a later batch of the same file: skipped, or updated if changed."""
    kr = file_keyring(tmp_path)
    frames = [voters(100), voters(100, start=100), voters(100),
              voters(50, start=150, party="REP"), voters(10, start=1000)]
    assert _write_all(engine, kr, frames) == [
        (100, 0, 0), (100, 0, 0), (0, 0, 100), (0, 50, 0), (10, 0, 0)]
    assert _count(engine, T_SUBJECT) == 210
    with engine.connect() as conn:
        parties = read_attributes(conn, kr, "voters", ["party"]).get_column("party")
        # a first load that updates subjects re-delivers their digests (insert-or-ignore):
        # the blind index's key, dropped for the load on PostgreSQL, is back before that
        assert conn.exec_driver_sql(
            'SELECT count(*) FROM (SELECT dataset_id, "column", digest, subject_id '
            "FROM vault_blind_index GROUP BY 1, 2, 3, 4 HAVING count(*) > 1) AS d").scalar() == 0
    assert inspect(engine).get_pk_constraint("vault_blind_index")["constrained_columns"]
    _verified(engine)
    assert parties.value_counts().sort("party").rows() == [("DEM", 160), ("REP", 50)]


def test_a_layout_without_lookup_columns_is_stored_without_blind_rows(
        engine: Engine, tmp_path: Path) -> None:
    """No lookup column, no identity: every row a new subject, no blind-index row, and the
    pipelined batches verify."""
    from vault.store import ColumnLayout, StoredColumn

    layout = ColumnLayout(columns=(StoredColumn("name", "direct"),
                                   StoredColumn("county", "attribute")), identity=None)
    with engine.begin() as conn:
        ds = dataset_id(conn, "notes", create_with=("test", layout.to_json()))
        src = int(conn.execute(T_SOURCE.insert().values(
            dataset_id=ds, content_hash=secrets.token_hex(16), rows=1, batches=3,
            created=now()).returning(T_SOURCE.c.id)).scalar_one())
    frames = [voters(50, start=50 * k).select("name", "county") for k in range(3)]
    results = list(write_batches(engine.begin, file_keyring(tmp_path), ds_id=ds,
                                 dataset="notes", source_id=src, batches=enumerate(frames),
                                 layout=layout, actor="t", cache=IdentityCache()))
    assert [(r.added, r.updated, r.skipped) for r in results] == [(50, 0, 0)] * 3
    assert _count(engine, T_SUBJECT) == 150 and _count(engine, T_BLIND) == 0
    _verified(engine)


def test_duplicates_of_compacted_batches_are_found_in_the_database(engine: Engine,
                                                                  tmp_path: Path) -> None:
    """Batches older than the cache's recent ones shrink to digest prefixes; a subject of
    theirs seen again is looked up in the database: skipped if unchanged, else updated."""
    kr = file_keyring(tmp_path)
    frames = [voters(100, start=k * 100) for k in range(4)] + [
        voters(100), voters(50, start=50, party="REP"), voters(10, start=1000)]
    assert IdentityCache.RECENT_BATCHES < 4
    assert _write_all(engine, kr, frames) == [(100, 0, 0)] * 4 + [
        (0, 0, 100), (0, 50, 0), (10, 0, 0)]
    assert _count(engine, T_SUBJECT) == 410
    with engine.connect() as conn:
        parties = read_attributes(conn, kr, "voters", ["party"]).get_column("party")
    assert parties.value_counts().sort("party").rows() == [("DEM", 360), ("REP", 50)]
    _verified(engine)


@settings(max_examples=200, deadline=None)
@given(identity=st.lists(st.one_of(st.none(), st.sampled_from([b"a", b"b", b"c", b"d"]),
                                   st.binary(min_size=16, max_size=16)), max_size=30))
def test_a_batch_keeps_each_subjects_last_row_and_rows_without_an_identity(
    identity: list[bytes | None],
) -> None:
    """``store._last_rows`` (its shortcut for a subject per row included) against the rule
    written out: a row stays if it has no identity or is its subject's last."""
    from vault.store import _last_rows

    keep, wanted = _last_rows(identity)
    assert keep == [i for i, d in enumerate(identity)
                    if d is None or i == max(j for j, e in enumerate(identity) if e == d)]
    assert wanted == {d for d in identity if d is not None}


def test_a_decision_with_helper_threads_is_the_decision_without(engine: Engine,
                                                               tmp_path: Path) -> None:
    """``store._decide`` with helpers (the fingerprints and the non-identity digests on
    other threads, as a pipelined ingest runs it) decides as it does alone: the same
    fingerprints and digests, the same new, updated, skipped and suppressed rows."""
    from concurrent.futures import ThreadPoolExecutor

    from vault.identity_cache import KnownSubject
    from vault.store import BatchKeys, _decide

    kr = file_keyring(tmp_path)
    ds, _ = _source(engine)
    with engine.begin() as conn:
        keys = BatchKeys.active(conn, kr, ds)
    frame = pl.concat([voters(30), voters(2, start=3)])  # rows 30, 31 repeat subjects 3, 4
    alone = _decide(frame, LAYOUT, keys, lambda wanted: {}, lambda wanted: set())
    assert alone.identity is not None
    ident, fps = alone.identity, alone.row_fps

    def known(fp: bytes) -> KnownSubject:
        return KnownSubject(7, fp, b"w" * 60, 1, 1, 0)

    stored = {ident[0]: known(fps[0]),  # unchanged: skipped
              ident[1]: known(b"\x00" * 16),  # changed: updated
              ident[30]: known(fps[30])}  # its last row unchanged: skipped
    erased = {ident[2]}

    def existing_for(wanted: set[bytes]) -> dict[bytes, Any]:
        return {d: m for d, m in stored.items() if d in wanted}

    def suppressed_for(wanted: set[bytes]) -> set[bytes]:
        return wanted & erased

    want = _decide(frame, LAYOUT, keys, existing_for, suppressed_for)
    with ThreadPoolExecutor(max_workers=2) as helpers:
        got = _decide(frame, LAYOUT, keys, existing_for, suppressed_for, helpers)
    assert (got.new_rows, [i for i, _ in got.upd_rows], got.skipped, got.suppressed) == (
        want.new_rows, [i for i, _ in want.upd_rows], want.skipped, want.suppressed)
    assert [i for i, _ in want.upd_rows] == [1] and want.suppressed == 1
    assert want.skipped == 2 + 2  # rows 0 and 30 unchanged; rows 3 and 4 superseded
    assert got.row_fps == want.row_fps == fps
    assert got.lookup_digests == want.lookup_digests
    assert sorted(got.lookup_digests) == ["name", "phone", "voter_id"]


def test_the_fingerprints_and_other_digests_run_on_helper_threads(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipelined ingest hands a batch's fingerprints and non-identity digests to its
    helper threads, computes the identity's itself, and leaves no thread behind."""
    import threading

    import vault.store as vault_store
    from vault import blind_index

    where: dict[str, set[str]] = {}
    real_fps, real_digests = vault_store._row_fingerprints, blind_index.digests

    def note(what: str) -> None:
        where.setdefault(what, set()).add(threading.current_thread().name.split("_")[0])

    def fps(*args: Any) -> Any:
        note("fingerprints")
        return real_fps(*args)

    def digests(key: bytes, column: str, *args: Any) -> Any:
        note(column)
        return real_digests(key, column, *args)

    monkeypatch.setattr(vault_store, "_row_fingerprints", fps)
    monkeypatch.setattr(blind_index, "digests", digests)
    kr = file_keyring(tmp_path)
    before = set(threading.enumerate())
    assert _write_all(engine, kr, [voters(50, start=k * 50) for k in range(3)]) == \
        [(50, 0, 0)] * 3
    assert where == {"fingerprints": {"civicvault-digest"}, "name": {"civicvault-digest"},
                     "phone": {"civicvault-digest"}, "voter_id": {"MainThread"}}
    assert not {t for t in threading.enumerate() if t not in before and t.is_alive()
                and t.name.startswith("civicvault-")}
    _verified(engine)


def test_identity_cache_keeps_old_batches_as_prefixes() -> None:
    cache = IdentityCache()
    digests = [secrets.token_bytes(32) for _ in range(5 * 1000)]
    for k in range(5):
        part = digests[k * 1000:(k + 1) * 1000]
        cache.add(list(part), list(range(k * 1000, (k + 1) * 1000)), [b"f" * 32] * 1000,
                  [b"w" * 60] * 1000, [1] * 1000, k + 1, list(range(1000)))
    assert len(cache) == 5000
    recent, old = set(digests[3000:]), set(digests[:3000])
    assert set(cache.lookup(recent | old)) == recent  # whole rows: the recent batches only
    assert cache.possibly_known(old) == old  # the rest: by prefix, to be asked of the database
    assert not cache.possibly_known({secrets.token_bytes(32) for _ in range(1000)})


def test_prefixes_are_each_digests_first_8_bytes_from_a_list_or_a_column() -> None:
    """Cut from Arrow's buffer when the digests are of one width (a list, a cache part's
    column, a slice of one, one in several chunks); else one by one, zero-padded: the same
    numbers as the definition, digest by digest."""
    from vault.identity_cache import _prefixes

    def one_by_one(ds: list[bytes]) -> list[int]:
        return [int.from_bytes(d[:8].ljust(8, b"\0"), "big") for d in ds]

    digests = [secrets.token_bytes(32) for _ in range(3000)] + [b"\xff" * 32, b"\0" * 32]
    column = pl.DataFrame({"digest": pl.Series(digests, dtype=pl.Binary)}).get_column("digest")
    chunked = pl.concat([column.slice(0, 7), column.slice(7, 993)], rechunk=False)
    assert chunked.n_chunks() == 2
    for source, want in ((digests, digests), (column, digests), (column.slice(5, 100),
                         digests[5:105]), (chunked, digests[:1000])):
        got = _prefixes(source)
        assert got.dtype == np.uint64 and got.tolist() == one_by_one(want)
    mixed = [b"", b"ab", b"\x01" * 8, secrets.token_bytes(40), b"\0\1", *digests[:5]]
    assert _prefixes(mixed).tolist() == one_by_one(mixed)  # widths differ: one by one
    assert _prefixes([]).tolist() == []
    assert _prefixes([b"abc", b"xyz"]).tolist() == one_by_one([b"abc", b"xyz"])  # < 8 bytes


def test_identity_cache_merges_compacted_batches_into_one_sorted_run() -> None:
    """Batches large enough to merge on each compaction (the runs are merged in place):
    the merged run holds exactly the prefixes of every compacted batch, sorted."""
    from vault.identity_cache import _prefixes

    cache, size, batches = IdentityCache(), 70_000, 6
    digests = [secrets.token_bytes(32) for _ in range(batches * size)]
    merged_sizes = []
    for k in range(batches):
        part = digests[k * size:(k + 1) * size]
        cache.add(list(part), list(range(k * size, (k + 1) * size)), [b"f"] * size,
                  [b"w"] * size, [1] * size, k + 1, list(range(size)))
        merged_sizes.append(len(cache._old))
    compacted = digests[:(batches - IdentityCache.RECENT_BATCHES) * size]
    assert merged_sizes == [0, 0, size, 2 * size, 3 * size, 4 * size]  # a merge each time
    assert not cache._old_runs
    assert cache._old.tolist() == sorted(_prefixes(compacted).tolist())
    assert cache.possibly_known(set(compacted[::997])) == set(compacted[::997])
    assert len(cache) == batches * size


def test_writer_slipping_in_between_batches_is_detected(engine: Engine, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Predicted ids go stale when someone else writes: the batch is written afresh."""
    import vault.store as vault_store

    kr = file_keyring(tmp_path)
    ds, src = _source(engine)
    afresh: list[int] = []
    real_write = vault_store.write_batch

    def write_batch(conn: Connection, keyring: Keyring, **kw: object) -> object:
        afresh.append(int(kw["batch_index"]))  # type: ignore[call-overload]
        return real_write(conn, keyring, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(vault_store, "write_batch", write_batch)

    def frames() -> Iterator[tuple[int, pl.DataFrame]]:
        for k in range(4):
            if k == 2:  # another ingest (another dataset) commits while batch 1 is in flight
                store(engine, kr, voters(25, start=5000), dataset="other")
            yield k, voters(200, start=k * 200)

    results = list(write_batches(engine.begin, kr, ds_id=ds, dataset="voters", source_id=src,
                                 batches=frames(), layout=LAYOUT, actor="tester",
                                 cache=IdentityCache()))
    assert [(r.added, r.skipped) for r in results] == [(200, 0)] * 4
    # batch 2's predictions failed, so it and the rest went afresh (batch 1's too, when the
    # other ingest took the write lock before batch 1's writer did)
    assert afresh in ([2, 3], [1, 2, 3])
    assert _count(engine, T_SUBJECT) == 825 and _count(engine, T_BATCH) == 5
    with engine.connect() as conn:
        ids = conn.execute(select(T_SUBJECT.c.id)).scalars().all()
        assert len(set(ids)) == 825
        got = read_attributes(conn, kr, "voters", ["age"]).height
    assert got == 800
    _verified(engine)


def test_failure_mid_ingest_leaves_whole_batches_and_raises(engine: Engine,
                                                            tmp_path: Path) -> None:
    kr = file_keyring(tmp_path)
    calls = {"n": 0}

    def begin() -> AbstractContextManager[Connection]:
        calls["n"] += 1
        if calls["n"] == 4:  # 1: make the keys, 2: batch 0, 3: batch 1, 4: batch 2
            raise RuntimeError("disk full (simulated) for batch 2")
        return engine.begin()

    cache = IdentityCache()
    ds, src = _source(engine)
    seen = []
    with pytest.raises(RuntimeError, match="batch 2"):
        for r in write_batches(begin, kr, ds_id=ds, dataset="voters", source_id=src,
                               batches=enumerate(voters(100, start=k * 100) for k in range(5)),
                               layout=LAYOUT, actor="tester", cache=cache):
            seen.append(r.added)
    assert seen == [100, 100]
    assert cache.ds_id is None and not len(cache)  # dropped: it may hold uncommitted subjects
    assert _count(engine, T_BATCH) == 2 and _count(engine, T_SUBJECT) == 200
    _verified(engine)
    with engine.connect() as conn:
        vouched = vouched_hashes(ledger_store.iter_entries(conn))
    assert len(vouched) == 2  # one ledger entry per stored batch, none for the failed one
    # the same source resumes: stored batches are recognised, the rest is written
    rest = list(write_batches(engine.begin, kr, ds_id=ds, dataset="voters", source_id=src,
                              batches=enumerate(voters(100, start=k * 100) for k in range(5)),
                              layout=LAYOUT, actor="tester", cache=IdentityCache()))
    assert [r.already_stored for r in rest] == [True, True, False, False, False]
    assert _count(engine, T_SUBJECT) == 500


def test_pipeline_overlaps_sealing_with_writing(engine: Engine, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch k+1 is sealed while batch k's transaction is still open (the point of it)."""
    import threading
    from contextlib import contextmanager

    import vault.store as vault_store

    kr = file_keyring(tmp_path)
    events: list[str] = []
    sealed_2 = threading.Event()
    real_seal = vault_store._seal

    def seal(frame: pl.DataFrame, *args: object) -> object:
        out = real_seal(frame, *args)  # type: ignore[arg-type]
        if frame.get_column("voter_id")[0] == "NC00000100":
            events.append("sealed batch 2")
            sealed_2.set()
        return out

    monkeypatch.setattr(vault_store, "_seal", seal)

    writer_txs = {"n": 0}

    @contextmanager
    def begin() -> Iterator[Connection]:
        with engine.begin() as conn:
            yield conn
            if threading.current_thread() is not threading.main_thread():
                writer_txs["n"] += 1
                if writer_txs["n"] == 2:  # batch 1: keep it open until batch 2 is sealed
                    sealed_2.wait(10)
                events.append(f"batch {writer_txs['n'] - 1} committing")

    ds, src = _source(engine)
    out = list(write_batches(begin, kr, ds_id=ds, dataset="voters", source_id=src,
                             batches=enumerate(voters(50, start=k * 50) for k in range(3)),
                             layout=LAYOUT, actor="t", cache=IdentityCache()))
    assert [r.added for r in out] == [50, 50, 50]
    assert events.index("sealed batch 2") < events.index("batch 1 committing")
    _verified(engine)


def test_the_writer_has_the_next_batch_before_the_caller_sees_a_result(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch k+1 goes to the writer as soon as batch k is stored, not after the caller's
    turn with k's result and the cache's update: the writer waits for neither (issue 17).
    The caller here holds each result until the writer has started the next batch; were
    the next batch handed over only after the caller's turn, it would wait in vain."""
    import threading

    import vault.store as vault_store

    started: list[int] = []
    next_started = threading.Condition()
    real = vault_store._store_predicted

    def spy(*args: Any, **kwargs: Any) -> Any:
        with next_started:
            started.append(int(kwargs["batch_index"]))
            next_started.notify_all()
        return real(*args, **kwargs)

    monkeypatch.setattr(vault_store, "_store_predicted", spy)
    kr = file_keyring(tmp_path)
    ds, src = _source(engine, batches=4)
    seen: list[tuple[int, list[int]]] = []
    for r in write_batches(engine.begin, kr, ds_id=ds, dataset="voters", source_id=src,
                           batches=enumerate(voters(40, start=k * 40) for k in range(4)),
                           layout=LAYOUT, actor="t", cache=IdentityCache()):
        k = len(seen)
        with next_started:  # a new dataset: every batch goes through the spy
            next_started.wait_for(lambda k=k: k + 1 in started or k + 1 == 4, timeout=20)
            seen.append((r.added, list(started)))
    assert [added for added, _ in seen] == [40, 40, 40, 40]
    assert [batches for _, batches in seen] == [[0, 1], [0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3]]
    _verified(engine)


BULK_TABLES = ("vault_subjects", "vault_records", "vault_blind_index")


def _foreign_keys(engine: Engine) -> dict[str, set[tuple[str, str]]]:
    """Each table's declared foreign keys as (column, parent table)."""
    insp = inspect(engine)
    return {t: {(fk["constrained_columns"][0], fk["referred_table"])
                for fk in insp.get_foreign_keys(t)} for t in insp.get_table_names()}


def test_a_new_sqlite_vault_has_8k_pages_and_an_existing_one_keeps_its_own(
        tmp_path: Path) -> None:
    """New vaults are made with ``vault.db.PAGE_SIZE`` pages (set before WAL mode, which
    writes the header); a vault made with 4 KiB pages opens, migrates and takes writes
    with its pages as they were (SQLite cannot change a WAL database's page size)."""
    import sqlite3

    from vault.db import PAGE_SIZE

    def pages(path: Path) -> tuple[int, str]:
        con = sqlite3.connect(path)
        try:
            return (int(con.execute("PRAGMA page_size").fetchone()[0]),
                    str(con.execute("PRAGMA journal_mode").fetchone()[0]))
        finally:
            con.close()

    assert PAGE_SIZE == 8192
    new = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    migrate(new)
    new.dispose()
    assert pages(tmp_path / "new.db") == (8192, "wal")

    con = sqlite3.connect(tmp_path / "old.db")  # as every vault before this was made
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE made_before (x INTEGER)")
    con.close()
    assert pages(tmp_path / "old.db") == (4096, "wal")
    old = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate(old)
    ds, src = _source(old)
    kr = file_keyring(tmp_path)
    out = list(write_batches(old.begin, kr, ds_id=ds, dataset="voters", source_id=src,
                             batches=enumerate([voters(30)]), layout=LAYOUT, actor="t",
                             cache=IdentityCache()))
    assert [r.added for r in out] == [30]
    _verified(old)
    old.dispose()
    assert pages(tmp_path / "old.db") == (4096, "wal")


def test_bulk_tables_carry_no_row_foreign_keys_on_sqlite(tmp_path: Path) -> None:
    """Migration 0014: SQLite's bulk tables declare no foreign key (PostgreSQL's lost
    theirs in 0005, below); the small tables keep theirs."""
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine)
    fks = _foreign_keys(engine)
    engine.dispose()
    assert {t: fks[t] for t in BULK_TABLES} == {t: set() for t in BULK_TABLES}
    assert ("dataset_id", "vault_datasets") in fks["vault_batches"]
    assert ("batch_id", "vault_batches") in fks["vault_batch_columns"]
    assert ("dataset_id", "vault_datasets") in fks["vault_suppressed"]


@pytest.mark.parametrize("deferred_index_built", [True, False])
def test_migration_0014_keeps_every_row_index_and_digest_both_ways(
        tmp_path: Path, deferred_index_built: bool) -> None:
    """Migration 0014 on a SQLite vault written before it (a first load and an update):
    the three bulk tables lose their foreign keys and keep every row, index and key, the
    vault still verifies and finds subjects by value, and a downgrade puts the foreign
    keys back with the same rows. A first load that stopped before building its
    deferred lookup index stays without it, and the next ingest builds it."""
    from alembic import command

    from vault.db import _alembic_config
    from vault.store import LOOKUP_INDEX

    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    try:
        migrate(engine)
        kr = file_keyring(tmp_path)
        _write_all(engine, kr, [voters(300), voters(300, start=300)])
        changed = voters(50, start=100).with_columns(pl.lit("Renamed Person Zyx").alias("name"))
        assert _write_all(engine, kr, [changed, voters(20, start=600)]) == [
            (0, 50, 0), (20, 0, 0)]
        # the schema of 0013 (0015's downgrade gives each record its names back)
        command.downgrade(_alembic_config(engine), "0013")
        if not deferred_index_built:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP INDEX {LOOKUP_INDEX}")

        def state() -> dict[str, Any]:
            with engine.connect() as conn:
                got: dict[str, Any] = {
                    t: conn.exec_driver_sql(f"SELECT * FROM {t} ORDER BY 1, 2, 3, 4").all()
                    for t in BULK_TABLES}
                got["indexes"] = sorted(conn.exec_driver_sql(
                    "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' "
                    "AND tbl_name IN ('vault_subjects', 'vault_records', "
                    "'vault_blind_index')").all())
            insp = inspect(engine)
            got["keys"] = {t: insp.get_pk_constraint(t)["constrained_columns"]
                           for t in BULK_TABLES}
            return got

        before = state()
        assert len(before["vault_records"]) == 670 and len(before["vault_subjects"]) == 620
        assert all(_foreign_keys(engine)[t] for t in BULK_TABLES)
        assert (LOOKUP_INDEX in str(before["indexes"])) is deferred_index_built
        migrate(engine)
        assert state() == before
        assert {t: _foreign_keys(engine)[t] for t in BULK_TABLES} == {t: set() for t in BULK_TABLES}
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
            ds = int(conn.execute(select(T_SUBJECT.c.dataset_id).limit(1)).scalar_one())
            digest, sid = before["vault_blind_index"][-1][2], before["vault_blind_index"][-1][3]
            column = before["vault_blind_index"][-1][1]
            found = _existing_subjects(conn, ds, column, {digest})
            assert [m.id for m in found.values()] == [sid]
            twice = int(conn.exec_driver_sql(
                "SELECT min(subject_id) FROM (SELECT subject_id FROM vault_records "
                "GROUP BY subject_id HAVING count(*) = 2)").scalar_one())
            opened = open_subject(conn, kr, twice)
        assert [r["name"] for r in opened][-1] == "Renamed Person Zyx" and len(opened) == 2
        _verified(engine)
        _write_all(engine, kr, [voters(10, start=700)])  # builds a missing lookup index
        assert LOOKUP_INDEX in str(state()["indexes"])
        _verified(engine)
        after = state()
        command.downgrade(_alembic_config(engine), "0013")
        assert all(_foreign_keys(engine)[t] for t in BULK_TABLES)
        assert {t: state()[t] for t in ("vault_subjects", "vault_blind_index", "indexes")} == {
            t: after[t] for t in ("vault_subjects", "vault_blind_index", "indexes")}
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            assert conn.exec_driver_sql(
                "SELECT count(*) FROM vault_records WHERE fields = ''").scalar_one() == 0
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_bulk_tables_carry_no_row_triggers_on_postgres(pg_url: str) -> None:
    """Migration 0005: no foreign-key trigger per bulk row; small tables keep theirs."""
    from vault.db import make_engine, migrate

    eng = make_engine(pg_url)
    migrate(eng)
    with eng.connect() as conn:
        fks = {tuple(r) for r in conn.execute(text(
            "SELECT conrelid::regclass::text, conname FROM pg_constraint WHERE contype = 'f'"))}
    bulk = {t for t, _ in fks} & {"vault_subjects", "vault_records", "vault_blind_index"}
    assert bulk == set()
    assert ("vault_batches", "vault_batches_dataset_id_fkey") in fks
    assert ("vault_batch_columns", "vault_batch_columns_batch_id_fkey") in fks
    eng.dispose()


# -- erasure suppression ---------------------------------------------------------------


def _erase(engine: Engine, kr: Keyring, voter_id: str) -> int:
    from vault.erase import erase

    with engine.begin() as conn:
        return erase(conn, kr, "voters", {"voter_id": voter_id}, actor="dpo").subjects_erased


def test_erased_subject_is_not_added_back_by_a_later_file(engine: Engine,
                                                          tmp_path: Path) -> None:
    from vault.erase import find_subjects
    from vault.store import T_SUPPRESSED

    kr = file_keyring(tmp_path)
    assert _write_all(engine, kr, [voters(50)]) == [(50, 0, 0)]
    assert _erase(engine, kr, "NC00000007") == 1
    # a new extract: the erased voter again (id written differently), 19 known, 5 new
    again = pl.concat([voters(20), voters(5, start=100)]).with_columns(
        pl.when(pl.col("voter_id") == "NC00000007").then(pl.lit(" nc-00000007"))
        .otherwise(pl.col("voter_id")).alias("voter_id"))
    ds, src = _source(engine)
    [res] = write_batches(engine.begin, kr, ds_id=ds, dataset="voters", source_id=src,
                          batches=[(0, again)], layout=LAYOUT, actor="t",
                          cache=IdentityCache())
    assert (res.added, res.skipped, res.suppressed) == (5, 19, 1)
    # the one-batch path (used by the Prefect tasks) suppresses too
    res2 = store(engine, kr, voters(1, start=7, party="REP"))
    assert (res2.added, res2.suppressed) == (0, 1)
    with engine.connect() as conn:
        _, found = find_subjects(conn, kr, "voters", {"voter_id": "NC00000007"})
        rows = conn.execute(select(T_SUPPRESSED)).all()
        live = read_attributes(conn, kr, "voters", ["party"]).height
    assert found == set()
    assert len(rows) == 1 and rows[0].column == "voter_id"
    assert b"00000007" not in bytes(rows[0].digest)  # a keyed digest, never the value
    assert live == 49 + 5
    _verified(engine)


def test_erasure_during_a_pipelined_ingest_is_honoured(engine: Engine, tmp_path: Path) -> None:
    """An erasure committed between batches invalidates the predictions (the count of
    suppressed identities changed): the later batch is written afresh and suppressed."""
    kr = file_keyring(tmp_path)
    ds, src = _source(engine)

    def frames() -> Iterator[tuple[int, pl.DataFrame]]:
        for k in range(3):
            if k == 2:
                assert _erase(engine, kr, "NC00000005") == 1
            yield k, voters(100, start=k * 100)
        yield 3, pl.concat([voters(1, start=5, party="REP"), voters(10, start=300)])

    results = list(write_batches(engine.begin, kr, ds_id=ds, dataset="voters", source_id=src,
                                 batches=frames(), layout=LAYOUT, actor="t",
                                 cache=IdentityCache()))
    assert [(r.added, r.updated, r.suppressed) for r in results] == [
        (100, 0, 0), (100, 0, 0), (100, 0, 0), (10, 0, 1)]
    with engine.connect() as conn:
        parties = read_attributes(conn, kr, "voters", ["party"]).get_column("party")
    assert parties.len() == 309 and (parties == "REP").sum() == 0
    _verified(engine)


def test_erasure_in_another_dataset_between_batches_is_in_the_next_buckets_digest(
        engine: Engine, tmp_path: Path) -> None:
    """The writer keeps the bucket its last batch left partly filled, so the next batch
    need not read it back; an erasure in another dataset whose subjects share that bucket
    leaves this ingest's predictions standing, but it is another ledger entry: the next
    batch reads the bucket's older rows back, and its digests hold the erasure."""
    from vault.erase import erase

    kr = file_keyring(tmp_path)
    store(engine, kr, voters(25, start=5000), dataset="other")  # subjects 1..25, bucket 0
    ds, src = _source(engine)

    def frames() -> Iterator[tuple[int, pl.DataFrame]]:
        for k in range(4):
            if k == 2:
                with engine.begin() as conn:
                    assert erase(conn, kr, "other", {"voter_id": "NC00005003"},
                                 actor="dpo").subjects_erased == 1
            yield k, voters(100, start=k * 100)

    results = list(write_batches(engine.begin, kr, ds_id=ds, dataset="voters", source_id=src,
                                 batches=frames(), layout=LAYOUT, actor="t",
                                 cache=IdentityCache()))
    assert [r.added for r in results] == [100] * 4
    _verified(engine)


def test_batches_continue_the_last_bucket_without_reading_it_back(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each transaction of a real ingest first ledgers its access decision; that entry
    changes no row, so each later batch still continues the bucket its predecessor left
    partly filled from memory (no read-back), and the digests verify."""
    from contextlib import contextmanager

    from ledger.entry import EntryDraft
    from vault import manifest, vocab

    reads: list[tuple[int, int]] = []
    real = manifest.range_parts

    def range_parts(conn: Connection, lo: int, hi: int, version: int) -> manifest.BucketParts:
        reads.append((lo, hi))
        return real(conn, lo, hi, version)

    monkeypatch.setattr(manifest, "range_parts", range_parts)

    @contextmanager
    def begin() -> Iterator[Connection]:
        with engine.begin() as conn:
            ledger_store.append(conn, [EntryDraft(actor="t", action=vocab.POLICY_ALLOWED,
                                                  resource="dataset:voters")])
            yield conn

    kr = file_keyring(tmp_path)
    assert _write_all(engine, kr, [voters(150, start=k * 150) for k in range(4)],
                      begin=begin) == [(150, 0, 0)] * 4
    assert reads == [(0, 1)]  # only the first batch reads what precedes it (id 0: none)
    _verified(engine)


BLIND_KEY_COLUMNS = {"postgresql": ["digest", "column", "dataset_id", "subject_id"],
                     "sqlite": ["subject_id", "column", "digest", "dataset_id"]}
BLIND_KEY_0011 = ["dataset_id", "column", "digest", "subject_id"]


def test_first_load_builds_the_second_index_at_the_end_and_a_killed_one_is_rebuilt(
        engine: Engine, tmp_path: Path) -> None:
    """An ingest into an empty blind index builds its second index (by subject on
    PostgreSQL, by dataset, column and digest on SQLite) once at the end (not row by
    row); one that fails builds it on the way out; and should a process die before, the
    next ingest builds it before writing."""
    from vault.store import deferred_index

    index = deferred_index(engine.dialect.name)
    want = {"postgresql": ["subject_id"],  # migration 0016
            "sqlite": ["dataset_id", "column", "digest", "subject_id", "key_id"]}

    def indexed() -> bool:  # and, on PostgreSQL, its primary key (dropped with it)
        key = inspect(engine).get_pk_constraint("vault_blind_index")["constrained_columns"]
        keyed = bool(key)
        if keyed:  # in the order of migrations 0012 and 0013
            assert key == BLIND_KEY_COLUMNS[engine.dialect.name]
        found = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes(
            "vault_blind_index")}
        if engine.dialect.name == "postgresql":
            assert keyed == (index in found)
        else:
            assert keyed
        assert found.get(index, want[engine.dialect.name]) == want[engine.dialect.name]
        return index in found

    kr = file_keyring(tmp_path)
    assert indexed()
    seen: list[bool] = []

    def frames(n: int, fail_at: int | None = None) -> Iterator[tuple[int, pl.DataFrame]]:
        for k in range(n):
            if k == fail_at:
                raise RuntimeError("the source broke")
            seen.append(indexed())
            yield k, voters(100, start=len(seen) * 100)

    def run(batches: Iterator[tuple[int, pl.DataFrame]], dataset: str = "voters") -> None:
        ds, src = _source(engine, dataset)
        for _ in write_batches(engine.begin, kr, ds_id=ds, dataset=dataset, source_id=src,
                               batches=batches, layout=LAYOUT, actor="t",
                               cache=IdentityCache()):
            pass

    with pytest.raises(RuntimeError, match="the source broke"):
        run(frames(3, fail_at=2))
    assert seen == [False, False] and indexed()
    with engine.begin() as conn:  # as if the process had died before building it
        conn.exec_driver_sql(f"DROP INDEX {index}")
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE vault_blind_index DROP CONSTRAINT "
                                 "vault_blind_index_pkey")
    _verified(engine)  # meanwhile, too (PostgreSQL: its buckets read in one pass)
    run(frames(2), "other")
    assert seen[2:] == [True, True] and indexed()
    _verified(engine)


def test_a_large_new_dataset_builds_the_second_index_at_its_end_a_small_one_does_not(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A load of a dataset without subjects, from a source of at least ``DEFER_ROOT``
    times the square root of the vault's subjects rows, and at least ``DEFER_MIN_ROWS``,
    builds the blind index's second index (and, on PostgreSQL, its key) at its end, as a
    first load does; a new dataset below those bounds, and a later load of a dataset with
    subjects, keep them up to date. Every dataset's subjects are found by value
    afterwards, and the vault verifies. (The sources' row counts are what decides; the
    files are 200 rows.)"""
    from vault import blind_index
    from vault import store as vault_store
    from vault.store import DEFER_ROOT, deferred_index

    assert vault_store.DEFER_MIN_ROWS == 100_000
    assert DEFER_ROOT == {"postgresql": 200, "sqlite": 650}
    monkeypatch.setattr(vault_store, "DEFER_MIN_ROWS", 100)
    # sized for 200-row files: from 5 (PostgreSQL) or 9 (SQLite) x the root of the vault
    monkeypatch.setattr(vault_store, "DEFER_ROOT", {"postgresql": 5, "sqlite": 9})
    index = deferred_index(engine.dialect.name)
    postgres = engine.dialect.name == "postgresql"

    def indexed() -> bool:
        found = index in {i["name"] for i in inspect(engine).get_indexes("vault_blind_index")}
        if postgres:  # the key goes and comes back with it
            keyed = bool(inspect(engine).get_pk_constraint("vault_blind_index")
                         ["constrained_columns"])
            assert keyed == found
        return found

    kr = file_keyring(tmp_path)
    seen: list[bool] = []

    def run(dataset: str, start: int, rows: int) -> int:
        def frames() -> Iterator[tuple[int, pl.DataFrame]]:
            for k in range(2):
                seen.append(indexed())
                yield k, voters(100, start=start + k * 100)
        ds, src = _source(engine, dataset, 2, rows=rows)
        for _ in write_batches(engine.begin, kr, ds_id=ds, dataset=dataset, source_id=src,
                               batches=frames(), layout=LAYOUT, actor="t",
                               cache=IdentityCache()):
            pass
        assert indexed()
        return ds

    first = run("first", 0, 200)  # an empty blind index
    few = run("few", 1000, 99)  # under the floor; 200 subjects stored
    large = run("large", 2000, 200)  # 400 stored: bounds 100 and 180
    middling = run("middling", 3000, 200)  # 600 stored: 122.5 and 220.5 (PostgreSQL only)
    small = run("small", 4000, 140)  # 800 stored: 141.4 and 254.6
    third = run("third", 5000, 300)  # 1,000 stored: 158.1 and 284.6
    run("first", 6000, 10_000)  # a later load of a dataset with subjects
    assert seen == [False, False, True, True, False, False, not postgres, not postgres,
                    True, True, False, False, True, True]
    with engine.connect() as conn:
        for ds, start in ((first, 0), (few, 1000), (large, 2000), (middling, 3000),
                          (small, 4000), (third, 5000), (first, 6000)):
            digest = blind_index.digest_one(kr.active(conn, ds, "blind").key, "voter_id",
                                            f"NC{start + 150:08d}", "id")
            assert digest is not None and len(_existing_subjects(conn, ds, "voter_id",
                                                                 {digest})) == 1
    _verified(engine)


def test_pg_subject_index_is_the_subject_alone_and_a_first_load_writes_subject_order(
        pg_url: str, tmp_path: Path) -> None:
    """PostgreSQL (migration 0016): the blind index's subject index holds the subject id
    alone, as migrated and as a first load rebuilds it. A first load (its key dropped)
    writes each column's rows in subject order, so a subject range lies in a few runs of
    heap pages; a later load, with the key in place, in digest order (its key's sweep).
    Both verify."""
    engine = make_engine(pg_url)
    try:
        migrate(engine)

        def subject_index() -> str:
            with engine.connect() as conn:
                return str(conn.exec_driver_sql(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = "
                    "'ix_vault_blind_subject'").scalar_one())

        def heap_order(dataset: str) -> dict[tuple[str, int], list[tuple[int, bytes]]]:
            """Each (column, batch)'s rows as (subject, digest), in the heap's order."""
            out: dict[tuple[str, int], list[tuple[int, bytes]]] = {}
            with engine.connect() as conn:
                for col, batch, sid, dg in conn.exec_driver_sql(
                        'SELECT b."column", s.current_batch_id, b.subject_id, b.digest '
                        "FROM vault_blind_index b JOIN vault_subjects s ON s.id = b.subject_id "
                        "JOIN vault_datasets d ON d.id = b.dataset_id WHERE d.name = %(n)s "
                        "ORDER BY b.ctid", {"n": dataset}):
                    out.setdefault((col, batch), []).append((sid, bytes(dg)))
            return out

        assert subject_index().endswith("USING btree (subject_id)")
        kr = file_keyring(tmp_path)
        frames = [voters(400), voters(400, start=400)]
        assert _write_all(engine, kr, frames, dataset="first") == [(400, 0, 0)] * 2
        assert subject_index().endswith("USING btree (subject_id)")
        first = heap_order("first")
        assert len(first) == 3 * 2  # voter_id, name and phone; two batches
        for rows in first.values():
            assert [s for s, _ in rows] == sorted(s for s, _ in rows)
            assert [d for _, d in rows] != sorted(d for _, d in rows)
        assert _write_all(engine, kr, frames, dataset="later") == [(400, 0, 0)] * 2
        later = heap_order("later")
        assert len(later) == 3 * 2
        for rows in later.values():
            assert [d for _, d in rows] == sorted(d for _, d in rows)
            assert [s for s, _ in rows] != sorted(s for s, _ in rows)
        _verified(engine)
    finally:
        engine.dispose()


def test_migrations_0012_and_0013_rekey_a_stored_blind_index_and_it_still_verifies(
        db_url: str, tmp_path: Path) -> None:
    """Migrations 0012 and 0013 on a vault written before them: the blind index's key
    leads with the digest on PostgreSQL, with the subject on SQLite (whose by-subject
    index gives way to one by dataset, column and digest); its rows, their lookups and
    the ledger's state digests are unchanged (the manifest orders rows itself), both
    ways."""
    from alembic import command

    from vault.db import _alembic_config

    engine = make_engine(db_url)
    sqlite = engine.dialect.name == "sqlite"
    try:
        migrate(engine)
        kr = file_keyring(tmp_path)
        ds, src = _source(engine, "voters", batches=2)
        for _ in write_batches(engine.begin, kr, ds_id=ds, dataset="voters", source_id=src,
                               batches=[(0, voters(300)), (1, voters(300, start=300))],
                               layout=LAYOUT, actor="t", cache=IdentityCache()):
            pass
        # the tables as 0011 had them (today's writer needs the later migrations' columns)
        command.downgrade(_alembic_config(engine), "0011")

        def key() -> list[str]:
            return list(inspect(engine).get_pk_constraint("vault_blind_index")
                        ["constrained_columns"])

        def indexes() -> set[str]:
            return {i["name"] for i in inspect(engine).get_indexes("vault_blind_index")}

        def rows() -> list[tuple[Any, ...]]:
            with engine.connect() as conn:
                return sorted(tuple(r) for r in conn.exec_driver_sql(
                    'SELECT dataset_id, "column", digest, subject_id, key_id '
                    "FROM vault_blind_index"))

        before = rows()
        assert key() == BLIND_KEY_0011 and len({r[3] for r in before}) == 600
        assert indexes() == {"ix_vault_blind_subject"}
        migrate(engine)
        assert key() == BLIND_KEY_COLUMNS[engine.dialect.name] and rows() == before
        assert indexes() == {"ix_vault_blind_lookup" if sqlite else "ix_vault_blind_subject"}
        with engine.connect() as conn:  # found by its digest as before
            found = _existing_subjects(conn, ds, "voter_id", {before[-1][2]})
        assert [m.id for m in found.values()] == [before[-1][3]]
        _verified(engine)
        command.downgrade(_alembic_config(engine), "0011")
        assert key() == BLIND_KEY_0011 and rows() == before
        assert indexes() == {"ix_vault_blind_subject"}
    finally:
        engine.dispose()


def test_row_fingerprints_pack_a_slice_at_a_time_and_give_the_same_bytes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A wide batch's rows are packed for fingerprints a slice at a time: the same
    fingerprints as the whole batch packed at once (every length around the slices'
    edges), holding a fraction of the packed rows at once (a 70-column voter row packs
    to ~1.5 KB of JSON; a 100k-row batch's had raised a 20M-row ingest's peak by 450 MiB)."""
    import tracemalloc

    from vault import crypto
    from vault import store as vault_store

    key = secrets.token_bytes(32)
    wide = pl.DataFrame({f"column_{c:02d}": [f"value {c} of row {r}" for r in range(6000)]
                         for c in range(70)})

    def whole(frame: pl.DataFrame) -> list[bytes]:
        return crypto.fingerprints(key, crypto.pack_rows(frame))

    monkeypatch.setattr(vault_store, "_PACK_SLICE", 4)
    for n in (0, 1, 3, 4, 5, 8, 9, 13):
        assert vault_store._row_fingerprints(key, wide.head(n)) == whole(wide.head(n)), n

    def peak(fn: Any) -> int:
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    monkeypatch.setattr(vault_store, "_PACK_SLICE", 500)
    sliced = peak(lambda: vault_store._row_fingerprints(key, wide))
    at_once = peak(lambda: whole(wide))
    assert vault_store._row_fingerprints(key, wide) == whole(wide)
    assert sliced * 4 < at_once, (sliced, at_once)


def _cache_pair(limit: int, batches: int, size: int
                ) -> tuple[IdentityCache, IdentityCache, list[bytes], list[tuple[int, int]]]:
    """A cache limited to ``limit`` compacted subjects and an unlimited one, fed the same
    batches; with the spilled runs' sizes and the in-memory count after each batch."""
    digests = [secrets.token_bytes(32) for _ in range(batches * size)]
    limited, unlimited = IdentityCache(limit=limit), IdentityCache(limit=1 << 40)
    after = []
    for k in range(batches):
        for cache in (limited, unlimited):
            cache.add(digests[k * size:(k + 1) * size], list(range(k * size, (k + 1) * size)),
                      [b"f" * 32] * size, [b"w" * 60] * size, [1] * size, k + 1,
                      list(range(size)))
        after.append((limited.spilled, len(limited._old) + sum(map(len, limited._old_runs))))
    return limited, unlimited, digests, after


def _same_answers(limited: IdentityCache, unlimited: IdentityCache, known: list[bytes]) -> None:
    strangers = [secrets.token_bytes(32) for _ in range(3000)]
    edge = [b"\0" * 32, b"\xff" * 32, *strangers]  # below the first fence, past the last
    for wanted in (set(known), set(known[::7]) | set(edge)):
        assert limited.possibly_known(wanted) == unlimited.possibly_known(wanted)
        assert limited.lookup(wanted) == unlimited.lookup(wanted)
    assert limited.possibly_known(set(known)) == set(known)
    assert not limited.possibly_known(set(edge))


def test_identity_cache_past_its_limit_spills_its_prefixes_and_answers_the_same() -> None:
    """Past ``limit`` compacted subjects the prefixes move to temporary files: memory holds
    none of them, and every answer is the one an unlimited cache gives."""
    import pickle

    from vault.identity_cache import _prefixes

    spilled, unlimited, digests, after = _cache_pair(2500, 8, 1000)
    assert pickle.loads(pickle.dumps(IdentityCache(limit=2500))).limit == 2500  # as the
    # sealing child gets it. Compacted after batches 2..7: 1,000, 2,000, then 3,000 > 2,500
    # spills all 3,000; then 1,000, 2,000, and 3,000 spilled again, merged with the first
    assert after == [(0, 0), (0, 0), (0, 1000), (0, 2000), (1, 0), (1, 1000), (1, 2000), (1, 0)]
    assert [s.n for s in spilled._spilled] == [6000]
    assert unlimited.spilled == 0 and sum(map(len, unlimited._old_runs)) == 6000
    compacted = digests[:6000]
    assert spilled._spilled[0].run.tolist() == sorted(_prefixes(compacted).tolist())
    _same_answers(spilled, unlimited, compacted)
    assert len(spilled) == len(unlimited) == 8 * 1000
    with pytest.raises(TypeError):  # its files are this process's
        pickle.dumps(spilled)
    spilled.clear()
    assert spilled.spilled == 0 and not spilled.possibly_known(set(compacted))


def test_identity_cache_spilling_every_batch_keeps_few_runs_and_descriptors(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A limit of 0 spills every compaction; runs are merged as they pile up (here 1,000
    prefixes of the older run at a time, so chunks straddle pages), so there are O(log n)
    of them, one descriptor each, and the answers stay exact."""
    import os

    from vault import identity_cache

    monkeypatch.setattr(identity_cache, "_MERGE_CHUNK", 1000)
    before = len(os.listdir("/proc/self/fd"))
    spilled, unlimited, digests, _ = _cache_pair(0, 66, 700)
    runs = [s.n for s in spilled._spilled]
    assert sum(runs) == 64 * 700 and len(runs) <= 7  # 64 spills, merged
    assert runs == sorted(runs, reverse=True)
    for run in spilled._spilled:  # each run sorted, its fences every 512th prefix
        values = run.run.tolist()
        assert values == sorted(values) and run.fences.tolist() == values[::512]
    assert len(os.listdir("/proc/self/fd")) - before <= len(runs)
    _same_answers(spilled, unlimited, digests[:64 * 700])
    spilled.clear()
    assert len(os.listdir("/proc/self/fd")) <= before


@pytest.mark.parametrize("fault", ["full", "unwritable"])
def test_identity_cache_that_cannot_spill_says_which_folder_and_forgets(
        monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    """A full or unwritable ``TMPDIR``: one line naming it (no path, no OS message) and the
    cache emptied, valid for no dataset, so nothing it half-knew is trusted."""
    import errno
    import tempfile

    from vault.errors import StorageFault, TempFolderFull, TempFolderUnwritable

    def temporary_file(**_: object) -> object:
        if fault == "unwritable":
            raise PermissionError(errno.EACCES, "Permission denied", "/tmp/Quixley")
        return open("/dev/full", "r+b")  # closed by the cache

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)
    cache = IdentityCache(limit=0)
    cache.ds_id, cache.watermark = 7, 1
    digests = [secrets.token_bytes(32) for _ in range(3 * 100)]
    for k in range(2):
        cache.add(digests[k * 100:(k + 1) * 100], list(range(100)), [b"f"] * 100, [b"w"] * 100,
                  [1] * 100, k + 1, list(range(100)))
    expected = TempFolderFull if fault == "full" else TempFolderUnwritable
    with pytest.raises(expected) as info:
        cache.add(digests[200:], list(range(100)), [b"f"] * 100, [b"w"] * 100, [1] * 100, 3,
                  list(range(100)))
    assert isinstance(info.value, StorageFault) and info.value.exit_code == 2
    line = str(info.value)
    assert "\n" not in line and "/" not in line.split("(hint")[0] and "Quixley" not in line
    assert line.startswith(("temp folder full: the identity cache could not move its "
                            "prefixes to the temp folder (TMPDIR) (hint: point TMPDIR",
                            "temp folder not writable: the identity cache could not write "
                            "its prefixes to the temp folder (TMPDIR) (hint: point TMPDIR"))
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert cache.ds_id is None and not cache.valid_for(7, 1) and cache.spilled == 0
    assert not cache._parts and not len(cache._old) and not cache._old_runs


def test_identity_cache_limit_comes_from_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from vault.errors import BadInput
    from vault.identity_cache import CACHE_ENV, DEFAULT_CACHE_MB, cache_limit

    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert cache_limit() == (DEFAULT_CACHE_MB << 20) // 12 == IdentityCache().limit
    monkeypatch.setenv(CACHE_ENV, "0")
    assert cache_limit() == 0 == IdentityCache().limit
    monkeypatch.setenv(CACHE_ENV, "12")
    assert cache_limit() == 1 << 20
    for bad in ("a lot", "0" * 5000, "065536 "[:6] + "0"):
        monkeypatch.setenv(CACHE_ENV, bad)
        with pytest.raises(BadInput, match=CACHE_ENV):
            IdentityCache()
