"""Subject-bucket digests: version 2 (column-wise) sees every edit version 1 saw, both
backends compute the same bytes, and entries of either version verify."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import orjson
import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    insert,
    text,
    update,
)

from vault import manifest, state_verify
from vault.errors import StateMismatch

META = MetaData()
SUBJECTS = Table("vault_subjects", META,
                 Column("id", BigInteger, primary_key=True, autoincrement=False),
                 Column("dataset_id", Integer, nullable=False),
                 Column("key_id", Integer, nullable=False),
                 Column("wrapped_key", LargeBinary, nullable=True),
                 Column("erased_at", String, nullable=True))
BLIND = Table("vault_blind_index", META,
              Column("dataset_id", Integer, primary_key=True),
              Column("column", String(256), primary_key=True),
              Column("digest", LargeBinary, primary_key=True),
              Column("subject_id", BigInteger, primary_key=True, autoincrement=False),
              Column("key_id", Integer, nullable=False))
IDS = [*range(0, 40), *range(manifest.BUCKET, manifest.BUCKET + 5)]  # two buckets
ERASED = 7


def _h(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def _load(url: str) -> Engine:
    engine = create_engine(url)
    META.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(SUBJECTS), [
            {"id": i, "dataset_id": 1, "key_id": 3,
             "wrapped_key": None if i == ERASED else _h("k", i) + _h("k2", i)[:28],
             "erased_at": "2026-01-01T00:00:00Z" if i == ERASED else None} for i in IDS])
        conn.execute(insert(BLIND), [
            {"dataset_id": 1, "column": col, "digest": _h("d", i, col), "subject_id": i,
             "key_id": 5} for i in IDS if i != ERASED for col in ("voter_reg_num", "näme")])
    return engine


def _digests(engine: Engine) -> dict[tuple[int, int], tuple[str, str]]:
    with engine.connect() as conn:
        return {(v, b): manifest.bucket_digest(conn, b, v) for v in (1, 2) for b in (0, 1)}


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = _load(sqlite_url)
    yield engine
    engine.dispose()


@pytest.mark.postgres
def test_both_backends_digest_the_same_bytes(sqlite_engine: Engine, pg_url: str) -> None:
    pg = _load(pg_url)
    try:
        assert _digests(sqlite_engine) == _digests(pg)
        with sqlite_engine.connect() as a, pg.connect() as b:
            for version in (1, 2):
                assert (manifest.subject_buckets(a, [0, 1], version)
                        == manifest.subject_buckets(b, [0, 1], version))
            assert manifest.bucket_columns(a, 0) == manifest.bucket_columns(b, 0)
    finally:
        pg.dispose()


def _first_live_key(conn: Connection) -> bytes:
    return bytes(conn.execute(text("SELECT wrapped_key FROM vault_subjects WHERE id = 3"))
                 .scalar_one())


def _key_moved_to_the_erased_subject(conn: Connection) -> None:
    """Subject 3 silently shredded, its wrapped key parked on erased subject 7: the
    keys' bytes and lengths in id order stay the same, only which row holds them moves."""
    key = _first_live_key(conn)
    conn.execute(update(SUBJECTS).where(SUBJECTS.c.id == 3).values(wrapped_key=None))
    conn.execute(update(SUBJECTS).where(SUBJECTS.c.id == ERASED).values(wrapped_key=key))


def _digest_bytes_shifted(conn: Connection) -> None:
    """Two blind-index digests of subject 2 re-cut: their concatenation is unchanged."""
    rows = conn.execute(text('SELECT "column", digest FROM vault_blind_index WHERE '
                             'subject_id = 2 ORDER BY "column", digest')).all()
    (c1, d1), (c2, d2) = [(str(c), bytes(d)) for c, d in rows]
    conn.execute(delete(BLIND).where(BLIND.c.subject_id == 2))
    conn.execute(insert(BLIND), [
        {"dataset_id": 1, "column": c1, "digest": d1[:31], "subject_id": 2, "key_id": 5},
        {"dataset_id": 1, "column": c2, "digest": d1[31:] + d2, "subject_id": 2, "key_id": 5}])


EDITS: dict[str, tuple[Callable[[Connection], None], int]] = {  # edit, part it changes
    "wrapped_key_flipped": (lambda c: c.execute(update(SUBJECTS).where(SUBJECTS.c.id == 5)
                                                .values(wrapped_key=b"\x01" * 60)), 0),
    "key_moved_to_the_erased_subject": (_key_moved_to_the_erased_subject, 0),
    "key_id_changed": (lambda c: c.execute(update(SUBJECTS).where(SUBJECTS.c.id == 9)
                                           .values(key_id=4)), 0),
    "dataset_changed": (lambda c: c.execute(update(SUBJECTS).where(SUBJECTS.c.id == 9)
                                            .values(dataset_id=2)), 0),
    "erasure_mark_set": (lambda c: c.execute(update(SUBJECTS).where(SUBJECTS.c.id == 11)
                                             .values(erased_at="x")), 0),
    "erasure_mark_removed": (lambda c: c.execute(update(SUBJECTS).where(
        SUBJECTS.c.id == ERASED).values(erased_at=None)), 0),
    "subject_deleted": (lambda c: c.execute(delete(SUBJECTS).where(SUBJECTS.c.id == 12)), 0),
    "subject_added": (lambda c: c.execute(insert(SUBJECTS).values(
        id=41, dataset_id=1, key_id=3, wrapped_key=b"\x02" * 60)), 0),
    "blind_digest_flipped": (lambda c: c.execute(update(BLIND).where(
        BLIND.c.subject_id == 13, BLIND.c.column == "näme").values(digest=b"\x03" * 32)), 1),
    "blind_digest_bytes_shifted": (_digest_bytes_shifted, 1),
    "blind_row_deleted": (lambda c: c.execute(delete(BLIND).where(BLIND.c.subject_id == 14,
                                                                  BLIND.c.column == "näme")), 1),
    "blind_row_moved_to_another_subject": (lambda c: c.execute(update(BLIND).where(
        BLIND.c.subject_id == 15, BLIND.c.column == "näme").values(subject_id=16)), 1),
    "blind_column_renamed": (lambda c: c.execute(update(BLIND).where(
        BLIND.c.subject_id == 17, BLIND.c.column == "näme").values(column="name")), 1),
    "blind_key_id_changed": (lambda c: c.execute(update(BLIND).where(
        BLIND.c.subject_id == 18).values(key_id=6)), 1),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_every_edit_changes_both_versions(db_url: str, name: str) -> None:
    engine = _load(db_url)
    try:
        before = _digests(engine)
        edit, part = EDITS[name]
        with engine.begin() as conn:
            edit(conn)
        after = _digests(engine)
        for version in (1, 2):
            assert after[(version, 0)][part] != before[(version, 0)][part], version
            assert after[(version, 0)][1 - part] == before[(version, 0)][1 - part], version
            assert after[(version, 1)] == before[(version, 1)], version  # other bucket
    finally:
        engine.dispose()


def _expected(items: list[list[object]]) -> state_verify.Expected:
    exp = state_verify.Expected()
    state_verify._apply(exp, {"seq": 7, "action": "vault.ingest.batch",
                              "details": {"subject_buckets": items}})
    return exp


def test_entries_of_either_version_verify_and_name_the_row(sqlite_engine: Engine) -> None:
    with sqlite_engine.connect() as conn:
        v1, v2 = (manifest.subject_buckets(conn, [0, 1], v) for v in (1, 2))
        assert [len(i) for i in v1] == [4, 4] and [i[4] for i in v2] == [2, 2]
        mixed = [v1[0], v2[1]]  # an older vault whose bucket 1 was re-digested since
        # the tasks' quick digests take the rows in index order: here (no subject index on
        # the blind-index table) that is not the digest's order, so they differ and are
        # computed again in order before they count
        quick = {b: (*manifest.bucket_digest(conn, b, 2, quick=True), 2) for b in (0, 1)}
        ordered = {b: (*manifest.bucket_digest(conn, b, 2), 2) for b in (0, 1)}
        assert quick[0][0] == ordered[0][0] and quick[0][1] != ordered[0][1]
        old = {b: state_verify.run_task(conn, (state_verify.BUCKET, b), 1) for b in (0, 1)}
        assert [v[2] for v in old.values()] == [1, 1]
        for items in (v1, v2, mixed):
            exp = _expected(items)
            assert state_verify._buckets(conn, exp) == 2
            for done in (quick, ordered, old):  # a task's version differing: digested again
                assert state_verify._buckets(conn, exp, done) == 2
    with sqlite_engine.begin() as conn:
        conn.execute(update(SUBJECTS).where(SUBJECTS.c.id == 21).values(key_id=9))
    with sqlite_engine.connect() as conn:
        for items in (v1, v2):
            with pytest.raises(StateMismatch) as info:
                state_verify._buckets(conn, _expected(items))
            assert (info.value.table, info.value.row) == ("vault_subjects", "21")
        unknown = [[*v2[0][:4], 3], v2[1]]
        with pytest.raises(StateMismatch, match="unknown digest version"):
            state_verify._buckets(conn, _expected(unknown))


def test_tasks_take_each_buckets_version_from_the_latest_part_of_the_log() -> None:
    import multiprocessing

    from vault.verify_all import _Hints

    def entry(items: list[list[object]]) -> bytes:
        return orjson.dumps({"action": "vault.erase", "details": {"subject_buckets": items}})

    hints = _Hints(multiprocessing.get_context("fork"), 3)
    assert hints.version((state_verify.BUCKET, 0)) == manifest.BUCKET_DIGEST_VERSION
    hints.publish(0, [entry([[0, "a", "b", "l"], [1, "a", "b", "l"]])])  # [0, k): v1
    hints.publish(1, [entry([[1, "a", "b", "l", 2]])])  # [k, n): bucket 1 again, v2
    assert [hints.version((state_verify.BUCKET, b)) for b in range(3)] == [1, 2, 2]
    assert hints.version((state_verify.BATCH, 0)) == manifest.BUCKET_DIGEST_VERSION


@pytest.mark.parametrize("columns", ["three", "one"])
def test_writers_lay_out_the_bytes_the_database_aggregates(db_url: str, columns: str) -> None:
    """An ingest's writer digests the buckets its new subjects fill from the rows it
    holds (``vault.bucket_rows``), reading back only a shared bucket's older rows: the
    items it commits are the ones computed from the database, of either version, on
    either backend (blank lookups, a non-ASCII column name, an erased older subject; one
    lookup column with a long name, whose repeats once made Polars panic)."""
    from vault import bucket_rows

    engine = _load(db_url)
    first = 40  # bucket 0 holds subjects 0..39 already; the batch fills it and starts bucket 1
    n = manifest.BUCKET - first + 7
    ids = list(range(first, first + n))
    wrapped = [_h("w", i) + _h("w2", i)[: 28 + i % 3] for i in ids]
    lookups: list[tuple[str, list[bytes | None]]] = [
        ("näme", [None if i % 5 == 0 else _h("n", i) for i in ids]),
        ("voter_reg_num", [_h("v", i) for i in ids]),
        ("email", [None if i % 2 else _h("e", i)[:20] for i in ids])]
    if columns == "one":
        lookups = lookups[1:2]
    try:
        with engine.begin() as conn:
            conn.execute(delete(SUBJECTS).where(SUBJECTS.c.id >= first))
            conn.execute(delete(BLIND).where(BLIND.c.subject_id >= first))
            conn.execute(insert(SUBJECTS), [
                {"id": i, "dataset_id": 4, "key_id": 8, "wrapped_key": w}
                for i, w in zip(ids, wrapped, strict=True)])
            conn.execute(insert(BLIND), [
                {"dataset_id": 4, "column": col, "digest": d, "subject_id": i, "key_id": 9}
                for col, digests in lookups for i, d in zip(ids, digests, strict=True)
                if d is not None])
        with engine.connect() as conn:
            for version in (1, 2):
                parts = bucket_rows.new_subject_parts(first, 4, 8, wrapped, 9, lookups, version)
                assert sorted(parts) == [0, 1]
                older = manifest.range_parts(conn, 0, first, version)
                mine = [manifest.bucket_item(0, older.then(parts[0]), version),
                        manifest.bucket_item(1, parts[1], version)]
                assert mine == manifest.subject_buckets(conn, [0, 1], version)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_without_a_subject_index_postgresql_reads_the_buckets_in_one_pass(pg_url: str) -> None:
    """A large first load drops PostgreSQL's subject index until its end (killed, until
    the next ingest), and each bucket's read would then scan the whole blind index.
    Within ``bucket_reads`` the buckets' blind-index parts come from one grouped pass per
    digest version: the same digests as read bucket by bucket (a bucket without
    blind-index rows, one without subjects, one asked out of order, either version), and
    an edited row is still named. With a subject index, nothing changes."""
    engine = _load(pg_url)  # its key leads with the dataset: no index leads with the subject
    buckets = [0, 1, 2, 3]  # 2: no subjects; 3: subjects without blind-index rows

    def cursors(conn: Connection) -> list[str]:
        return sorted(conn.execute(text("SELECT name FROM pg_cursors")).scalars())

    try:
        with engine.begin() as conn:
            conn.execute(insert(SUBJECTS), [
                {"id": 3 * manifest.BUCKET + i, "dataset_id": 1, "key_id": 3,
                 "wrapped_key": _h("k", i)} for i in range(3)])
        with engine.connect() as conn:
            alone = {(v, b): manifest.bucket_digest(conn, b, v) for v in (1, 2) for b in buckets}
            assert cursors(conn) == []
            with manifest.bucket_reads(conn):
                streamed = {(v, 0): manifest.bucket_digest(conn, 0, v) for v in (1, 2)}
                assert cursors(conn) == ["cv_blind_v1", "cv_blind_v2"]
                streamed |= {(v, b): manifest.bucket_digest(conn, b, v)
                             for b in buckets[1:] for v in (1, 2)}
                again = manifest.bucket_digest(conn, 1, 2)  # out of order: read alone
            assert cursors(conn) == []
            with manifest.bucket_reads(conn, descending=True):  # the child's order
                down = {(v, b): manifest.bucket_digest(conn, b, v)
                        for b in buckets[::-1] for v in (1, 2)}
                assert cursors(conn) == ["cv_blind_v1", "cv_blind_v2"]
                up = manifest.bucket_digest(conn, 2, 1)  # out of order: read alone
            items = {v: manifest.subject_buckets(conn, buckets, v) for v in (1, 2)}
        assert streamed == alone == down and again == alone[(2, 1)] and up == alone[(1, 2)]
        assert alone[(1, 2)] != alone[(1, 3)]  # the empty buckets differ by their subjects

        with engine.begin() as conn:
            EDITS["blind_digest_flipped"][0](conn)
        with engine.connect() as conn:
            for version in (1, 2):
                with pytest.raises(StateMismatch) as info:
                    state_verify._buckets(conn, _expected(items[version]))
                assert (info.value.table, info.value.row) == ("vault_blind_index", "subject 13")
                assert cursors(conn) == []  # closed on the way out

        with engine.begin() as conn:
            conn.execute(text("CREATE INDEX ix_subject ON vault_blind_index (subject_id)"))
        with engine.connect() as conn, manifest.bucket_reads(conn):
            manifest.bucket_digest(conn, 0, 2)
            assert cursors(conn) == []
    finally:
        engine.dispose()
