"""Vault core on real SQLite files and real PostgreSQL: encryption, binding, dedup, crash safety."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, update

from ledger import store as ledger_store
from tests.vault_helpers import LAYOUT, FakeKms, file_keyring, store, voters
from vault import crypto
from vault.crosscheck import verify_vault
from vault.db import make_engine, migrate
from vault.errors import KeyUnavailable, VaultMismatch
from vault.keyring import Keyring
from vault.records import open_subject
from vault.store import T_BATCH, T_COLUMN, T_RECORD, T_SUBJECT, read_attributes


def _count(engine: Engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_round_trip_attributes_and_records(engine: Engine, tmp_path: Path) -> None:
    kr = file_keyring(tmp_path)
    frame = voters(50)
    res = store(engine, kr, frame)
    assert (res.added, res.updated, res.skipped) == (50, 0, 0)
    with engine.connect() as conn:
        back = read_attributes(conn, kr, "voters", ["county", "party", "age"])
        assert back.sort("age").equals(
            frame.select("county", "party", "age").sort("age")
        ) or sorted(back.rows()) == sorted(frame.select("county", "party", "age").rows())
        subject = conn.execute(select(T_SUBJECT.c.id).order_by(T_SUBJECT.c.id)).scalars().first()
        [rec] = open_subject(conn, kr, int(subject))
    assert rec == {
        "voter_id": "NC00000000",
        "name": "Person Number0 Zyx",
        "phone": "(919) 555-0000",
    }


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(st.one_of(st.none(), st.text(max_size=30)), min_size=1, max_size=40))
def test_round_trip_property_sqlite(tmp_path: Path, values: list[str | None]) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / f'p{os.urandom(4).hex()}.db'}")
    migrate(eng)
    kr = Keyring(FakeKms())
    n = len(values)
    frame = pl.DataFrame(
        {
            "voter_id": [None] * n,
            "name": values,
            "phone": [None] * n,
            "county": values,
            "party": ["X"] * n,
            "age": ["1"] * n,
        },
        schema={c: pl.Utf8 for c in LAYOUT.direct + LAYOUT.attributes},
    )
    store(eng, kr, frame)
    with eng.connect() as conn:
        back = read_attributes(conn, kr, "voters", ["county"])
        assert back.get_column("county").to_list() == values
        ids = conn.execute(select(T_SUBJECT.c.id).order_by(T_SUBJECT.c.id)).scalars().all()
        names = [open_subject(conn, kr, int(i))[0]["name"] for i in ids]
    assert names == values
    eng.dispose()


def test_ciphertext_swapped_between_records_fails(engine: Engine, tmp_path: Path) -> None:
    kr = file_keyring(tmp_path)
    store(engine, kr, voters(2))
    with engine.begin() as conn:
        a, b = conn.execute(
            select(T_RECORD.c.id, T_RECORD.c.subject_id, T_RECORD.c.sealed).order_by(T_RECORD.c.id)
        ).all()
        conn.execute(update(T_RECORD).where(T_RECORD.c.id == a.id).values(sealed=b.sealed))
    with engine.connect() as conn, pytest.raises(crypto.CiphertextRejected):
        open_subject(conn, kr, int(a.subject_id))


def test_ciphertext_swapped_between_fields_fails(engine: Engine, tmp_path: Path) -> None:
    kr = file_keyring(tmp_path)
    store(engine, kr, voters(5))
    with engine.begin() as conn:
        party = conn.execute(
            select(T_COLUMN.c.sealed).where(T_COLUMN.c.column == "party")
        ).scalar_one()
        conn.execute(update(T_COLUMN).where(T_COLUMN.c.column == "county").values(sealed=party))
    with engine.connect() as conn, pytest.raises(crypto.CiphertextRejected):
        read_attributes(conn, kr, "voters", ["county"])


def test_ciphertext_moved_to_another_batch_fails(engine: Engine, tmp_path: Path) -> None:
    kr = file_keyring(tmp_path)
    store(engine, kr, voters(5))
    store(engine, kr, voters(5, start=100))
    with engine.begin() as conn:
        first = (
            conn.execute(
                select(T_COLUMN.c.sealed)
                .where(T_COLUMN.c.column == "age")
                .order_by(T_COLUMN.c.batch_id)
            )
            .scalars()
            .first()
        )
        last_batch = conn.execute(select(func.max(T_BATCH.c.id))).scalar_one()
        conn.execute(
            update(T_COLUMN)
            .where(T_COLUMN.c.column == "age", T_COLUMN.c.batch_id == last_batch)
            .values(sealed=first)
        )
    with engine.connect() as conn, pytest.raises(crypto.CiphertextRejected):
        read_attributes(conn, kr, "voters", ["age"])


def test_wrong_key_version_fails(engine: Engine, tmp_path: Path) -> None:
    kr = file_keyring(tmp_path)
    store(engine, kr, voters(5))
    with engine.begin() as conn:
        ds = conn.execute(select(T_BATCH.c.dataset_id)).scalar_one()
        newer = kr.create(conn, int(ds), "attr")  # a second version of the attribute key
        conn.execute(update(T_COLUMN).values(key_id=newer.id))
    with engine.connect() as conn, pytest.raises(crypto.CiphertextRejected):
        read_attributes(conn, kr, "voters", ["party"])


def test_wrong_kek_cannot_unwrap(engine: Engine, tmp_path: Path) -> None:
    store(engine, file_keyring(tmp_path), voters(3))
    with engine.connect() as conn, pytest.raises(KeyUnavailable):
        read_attributes(conn, file_keyring(tmp_path), "voters", ["party"])


def test_tampered_ciphertext_caught_by_crosscheck(engine: Engine, tmp_path: Path) -> None:
    kr = file_keyring(tmp_path)
    store(engine, kr, voters(10))
    with engine.connect() as conn:
        verify_vault(conn, ledger_store.iter_entries(conn))
    with engine.begin() as conn:
        blob = conn.execute(select(T_RECORD.c.id, T_RECORD.c.sealed).limit(1)).one()
        flipped = bytes([blob.sealed[0] ^ 1]) + bytes(blob.sealed[1:])
        conn.execute(update(T_RECORD).where(T_RECORD.c.id == blob.id).values(sealed=flipped))
    with engine.connect() as conn, pytest.raises(VaultMismatch):
        verify_vault(conn, ledger_store.iter_entries(conn))


def test_batch_slipped_in_without_ledger_entry_detected(engine: Engine, tmp_path: Path) -> None:
    kr = file_keyring(tmp_path)
    store(engine, kr, voters(3))
    with engine.connect() as conn:
        entries = list(ledger_store.iter_entries(conn))
    store(engine, kr, voters(3, start=10))
    with engine.connect() as conn, pytest.raises(VaultMismatch):
        verify_vault(conn, entries)  # the ledger as it was before: the new batch is unvouched


def test_same_source_batch_twice_adds_nothing(engine: Engine, tmp_path: Path) -> None:
    kr = file_keyring(tmp_path)
    first = store(engine, kr, voters(20))
    with engine.connect() as conn:
        source = conn.execute(select(T_BATCH.c.source_id)).scalar_one()
    again = store(engine, kr, voters(20), source=int(source))
    assert again.already_stored and again.added == 0
    assert first.added == 20 and _count(engine, T_SUBJECT) == 20


def test_redelivered_rows_are_skipped_and_changes_update(engine: Engine, tmp_path: Path) -> None:
    kr = file_keyring(tmp_path)
    store(engine, kr, voters(20))
    res = store(engine, kr, voters(20))  # same people, same content, new source
    assert (res.added, res.updated, res.skipped) == (0, 0, 20)
    changed = voters(20).with_columns(
        pl.when(pl.int_range(pl.len()) < 5)
        .then(pl.lit("REP"))
        .otherwise(pl.col("party"))
        .alias("party")
    )
    res = store(engine, kr, pl.concat([changed, voters(3, start=1000)]))
    assert (res.added, res.updated, res.skipped) == (3, 5, 15)
    assert _count(engine, T_SUBJECT) == 23
    with engine.connect() as conn:
        live = read_attributes(conn, kr, "voters", ["party"])
    assert live.height == 23
    assert live.get_column("party").value_counts().sort("party").rows() == [("DEM", 18), ("REP", 5)]


def test_duplicate_rows_within_a_batch_kept_once(engine: Engine, tmp_path: Path) -> None:
    kr = file_keyring(tmp_path)
    frame = pl.concat([voters(10), voters(10)])
    res = store(engine, kr, frame)
    assert (res.added, res.skipped) == (10, 10)


def test_blind_index_normalises_formats(engine: Engine, tmp_path: Path) -> None:
    kr = file_keyring(tmp_path)
    store(engine, kr, voters(5))
    messy = voters(5).with_columns(pl.col("voter_id").str.to_lowercase() + pl.lit(" "))
    res = store(engine, kr, messy)
    assert res.added == 0  # " nc00000001 " is the same voter as "NC00000001"


CRASH_SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    from tests.vault_helpers import voters, LAYOUT
    from vault.db import make_engine
    from vault.keyring import Keyring
    from vault.keys import FileKeyProvider
    from vault.store import dataset_id, write_batch, T_SOURCE
    from vault.keyring import now
    engine = make_engine({url!r})
    from pathlib import Path
    kr = Keyring(FileKeyProvider(Path({kek!r})))
    conn = engine.connect()
    conn.begin()
    ds = dataset_id(conn, "voters", create_with=("t", LAYOUT.to_json()))
    src = conn.execute(T_SOURCE.insert().values(dataset_id=ds, content_hash="x", rows=1,
                       batches=1, created=now()).returning(T_SOURCE.c.id)).scalar_one()
    write_batch(conn, kr, ds_id=ds, dataset="voters", source_id=src, batch_index=0,
                frame=voters(5000), layout=LAYOUT, actor="t")
    os._exit(9)  # the process dies after writing everything, before COMMIT
""")


def test_crash_mid_batch_leaves_nothing_partial(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    from vault.keys import FileKeyProvider

    kek = tmp_path / "kek.json"
    FileKeyProvider.create(kek)
    before = _ledger_size(engine)
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT.format(root=root, url=db_url, kek=str(kek))],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 9, proc.stderr.decode()[-2000:]
    assert _count(engine, T_BATCH) == 0
    assert _count(engine, T_RECORD) == 0
    assert _count(engine, T_SUBJECT) == 0
    assert _ledger_size(engine) == before


def _ledger_size(engine: Engine) -> int:
    with engine.connect() as conn:
        return ledger_store.size(conn)


def test_fake_kms_provider_never_exposes_kek(engine: Engine) -> None:
    kms = FakeKms()
    kr = Keyring(kms)
    store(engine, kr, voters(4))
    assert kms.calls >= 4  # each data key went through the KMS
    with engine.connect() as conn:
        assert read_attributes(conn, Keyring(kms), "voters", ["party"]).height == 4


def test_fast_associated_data_equals_reference() -> None:
    from vault import _aead

    assert _aead.ad_prefix("record", 3) + _aead.ad_part(17) + _aead.ad_part(9) + \
        _aead.ad_part("a,b") == crypto.record_ad(3, 17, 9, "a,b")
    assert _aead.ad_prefix("subject-key", 3) + _aead.ad_part(9) + _aead.ad_part(4) == \
        crypto.subject_key_ad(3, 9, 4)


@settings(max_examples=80, deadline=None)
@given(digests=st.one_of(
    st.integers(min_value=0, max_value=40).flatmap(
        lambda w: st.lists(st.binary(min_size=w, max_size=w), max_size=20)),
    st.lists(st.binary(max_size=40), max_size=20)))
def test_identity_cache_prefixes_are_each_digests_first_eight_bytes(digests: list[bytes]) -> None:
    """The compacted cache keeps each digest's first 8 bytes (zero-padded) as an integer:
    the same whether the digests share one length (cut from one buffer) or not."""
    from vault.identity_cache import _prefixes

    got = _prefixes(digests)
    assert got.dtype == np.uint64
    assert got.tolist() == [int.from_bytes(d[:8].ljust(8, b"\0"), "big") for d in digests]


@given(stored=st.lists(st.binary(min_size=16, max_size=16), max_size=60),
       asked=st.lists(st.binary(min_size=16, max_size=16), max_size=60),
       runs=st.integers(1, 3), data=st.data())
def test_identity_cache_possibly_known_is_every_digest_whose_prefix_is_stored(
    stored: list[bytes], asked: list[bytes], runs: int, data: st.DataObject,
) -> None:
    """A digest is possibly known exactly when its first 8 bytes are those of a compacted
    one, in any of the sorted runs, whatever order the digests are asked in."""
    from vault.identity_cache import IdentityCache, _prefixes

    cache = IdentityCache()
    same_prefix = [s[:8] + bytes(8) for s in data.draw(st.lists(st.sampled_from(stored),
                                                                 max_size=10))] if stored else []
    parts = [stored[k::runs] for k in range(runs)]
    cache._old = np.sort(_prefixes(parts[0]))
    cache._old_runs = [np.sort(_prefixes(p)) for p in parts[1:]]
    wanted = asked + same_prefix + stored[:5]
    prefixes = {d[:8] for d in stored}
    assert cache.possibly_known(wanted) == {d for d in wanted if d[:8] in prefixes}


def test_identity_cache_gives_same_result_as_database_lookups(engine: Engine,
                                                              tmp_path: Path) -> None:
    from vault.store import IdentityCache

    kr = file_keyring(tmp_path)
    cache = IdentityCache()
    first = pl.concat([voters(30), voters(10, start=100)])
    again = voters(30).with_columns(
        pl.when(pl.int_range(pl.len()) < 4).then(pl.lit("REP")).otherwise(pl.col("party"))
        .alias("party"))
    results = []
    for frame in (first, again, voters(5, start=100)):
        with engine.begin() as conn:
            from vault.keyring import now
            from vault.store import T_SOURCE, dataset_id, write_batch

            ds = dataset_id(conn, "voters", create_with=("t", LAYOUT.to_json()))
            src = conn.execute(T_SOURCE.insert().values(
                dataset_id=ds, content_hash=os.urandom(8).hex(), rows=1, batches=1,
                created=now()).returning(T_SOURCE.c.id)).scalar_one()
            r = write_batch(conn, kr, ds_id=ds, dataset="voters", source_id=src, batch_index=0,
                            frame=frame, layout=LAYOUT, actor="t", cache=cache)
            results.append((r.added, r.updated, r.skipped))
    assert results == [(40, 0, 0), (0, 4, 26), (0, 0, 5)]
    assert cache.ds_id is not None and len(cache) == 40
    # another writer adds a subject: the cache is no longer trusted, the database is asked
    store(engine, kr, voters(1, start=900))
    with engine.connect() as conn:
        from sqlalchemy import func as f

        top = conn.execute(select(f.max(T_SUBJECT.c.id))).scalar()
    assert not cache.valid_for(cache.ds_id, top)
