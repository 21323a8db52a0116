"""A record's sealed payload: its values as a JSON array in the order of the record's
``fields`` (``crypto.pack_values``); records sealed before as a JSON object by name still
open, alone and mixed with new ones in one read."""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, select

from ledger import store as ledger_store
from tests.vault_helpers import file_keyring, store, voters
from vault import crypto, linkage
from vault.crosscheck import verify_vault
from vault.errors import CiphertextRejected
from vault.keyring import Keyring
from vault.records import open_subject
from vault.store import T_BATCH, T_RECORD, T_SUBJECT, dataset_id
from vault.tables import record_fields

_TEXT = st.one_of(st.none(), st.text(max_size=12))  # every code point, controls included


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4).flatmap(
    lambda w: st.lists(st.lists(_TEXT, min_size=w, max_size=w), min_size=1, max_size=6)))
def test_values_of_any_text_come_back_from_a_sealed_record(rows: list[list[str | None]]) -> None:
    names = [f"f{i}" for i in range(len(rows[0]))]
    frame = pl.DataFrame(rows, schema={n: pl.String for n in names}, orient="row")
    payloads = crypto.pack_values(frame)
    assert [orjson.loads(p) for p in payloads] == rows
    fields = ",".join(names)
    keys = crypto.new_subject_keys(len(rows))
    ids = list(range(1, len(rows) + 1))
    sealed = crypto.seal_records(keys, 3, ids, ids, fields, payloads)
    opened_one = [crypto.open_record(k, 3, i, i, fields, s)
                  for k, i, s in zip(keys, ids, sealed, strict=True)]
    assert opened_one == [dict(zip(names, r, strict=True)) for r in rows]
    opened = crypto.open_records(keys, 3, ids, ids, [fields] * len(rows), sealed)
    assert crypto.payload_frame(opened, [fields] * len(rows), names[::-1]).rows() == [
        tuple(r[::-1]) for r in rows]


def test_a_payload_does_not_repeat_the_field_names() -> None:
    frame = voters(50).select("voter_id", "name", "phone")
    for array, obj in zip(crypto.pack_values(frame), crypto.pack_rows(frame), strict=True):
        # the object's '"name":' per field, the rest byte for byte the same
        assert len(array) == len(obj) - sum(len(n) + 3 for n in frame.columns)
        assert orjson.loads(array) == list(orjson.loads(obj).values())


def test_payloads_of_both_forms_open_in_one_frame_in_their_order() -> None:
    old = [orjson.dumps({"name": "Old One", "voter_id": "NC1"}),  # by name, any order
           orjson.dumps({"voter_id": "NC3"})]  # a field the writer did not hold
    new = crypto.pack_values(pl.DataFrame({"voter_id": ["NC2", "NC4"], "name": ["New", None]}))
    mixed = [old[0], new[0], old[1], new[1]]
    frame = crypto.payload_frame(mixed, ["voter_id,name"] * 4, ["name", "voter_id", "phone"])
    assert frame.rows() == [("Old One", "NC1", None), ("New", "NC2", None),
                            (None, "NC3", None), (None, "NC4", None)]
    assert crypto.record_values(old[0], "voter_id,name") == {"voter_id": "NC1",
                                                              "name": "Old One"}


def test_a_payload_with_another_number_of_values_is_refused() -> None:
    short = crypto.pack_values(pl.DataFrame({"voter_id": ["NC1"]}))
    with pytest.raises(CiphertextRejected):
        crypto.record_values(short[0], "voter_id,name")
    with pytest.raises(CiphertextRejected):
        crypto.payload_frame(short, ["voter_id,name"], ["name"])


def test_a_vault_with_records_of_both_forms_reads_and_verifies(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A vault written before the array form (objects) and before migration 0015 (each
    record names its fields) gets new batches (arrays, the names once per batch): a
    subject's records, the link builder's direct values and verification see both."""
    from alembic import command

    from vault.db import _alembic_config, migrate

    kr = file_keyring(tmp_path)
    with monkeypatch.context() as m:  # as the vault wrote records until now
        m.setattr(crypto, "pack_values", crypto.pack_rows)
        store(engine, kr, voters(6))
    command.downgrade(_alembic_config(engine), "0014")  # its records get their names back
    migrate(engine)
    store(engine, kr, voters(6, start=3, party="REP"))  # 3 updated subjects, 3 new ones
    with engine.connect() as conn:
        ds = dataset_id(conn, "voters")
        assert _payload_forms(conn, kr, ds) == {b"{": 6, b"[": 6}
        named = conn.execute(select(T_RECORD.c.batch_id, T_RECORD.c.fields)
                             .order_by(T_RECORD.c.id)).all()
        assert {r.fields for r in named[:6]} == {"voter_id,name,phone"}
        assert {r.fields for r in named[6:]} == {""}
        assert conn.execute(select(T_BATCH.c.record_fields).where(
            T_BATCH.c.id == named[-1].batch_id)).scalar_one() == "voter_id,name,phone"
        subjects = pl.DataFrame(
            conn.execute(select(T_SUBJECT.c.id, T_SUBJECT.c.current_batch_id)
                         .order_by(T_SUBJECT.c.id)).all(),
            schema={"subject": pl.Int64, "batch": pl.Int64}, orient="row")
        assert subjects.height == 9
        # one subject per form: the first (its record of batch 1 only) and an updated one
        [first] = open_subject(conn, kr, int(subjects.item(0, "subject")))
        assert first == {"voter_id": "NC00000000", "name": "Person Number0 Zyx",
                         "phone": "(919) 555-0000"}
        updated = open_subject(conn, kr, int(subjects.item(4, "subject")))
        assert [r["voter_id"] for r in updated] == ["NC00000004", "NC00000004"]
        values = linkage.direct_values(conn, kr, ds, ["voter_id", "phone"], subjects)
        assert sorted(values.get_column("voter_id").to_list()) == [
            f"NC{i:08d}" for i in range(9)]
        assert values.filter(pl.col("voter_id") == "NC00000008").item(0, "phone") == (
            "(919) 555-0008")
        verify_vault(conn, ledger_store.iter_entries(conn))


def _payload_forms(conn: Connection, kr: Keyring, ds: int) -> dict[bytes, int]:
    """How many of the dataset's records open to each first byte."""
    rows = conn.execute(
        select(T_SUBJECT.c.id, T_SUBJECT.c.key_id, T_SUBJECT.c.wrapped_key, T_RECORD.c.id,
               record_fields(), T_RECORD.c.sealed)
        .join(T_RECORD, T_RECORD.c.subject_id == T_SUBJECT.c.id)
        .join(T_BATCH, T_BATCH.c.id == T_RECORD.c.batch_id)).all()
    forms: dict[bytes, int] = {}
    for sid, wid, wrapped, rid, fields, sealed in rows:
        [key] = crypto.unwrap_subject_keys(kr.by_id(conn, int(wid)), int(wid), ds, [int(sid)],
                                           [bytes(wrapped)])
        [payload] = crypto.open_records([key], ds, [int(rid)], [int(sid)], [fields],
                                        [bytes(sealed)])
        forms[payload[:1]] = forms.get(payload[:1], 0) + 1
    return forms


def test_the_ledger_vouches_for_a_batchs_field_names_by_digest_only(
        engine: Engine, tmp_path: Path) -> None:
    """The names are a file's header text: a batch's ingest entry carries their digest,
    which verification checks, and never the names themselves."""
    from vault import manifest

    store(engine, file_keyring(tmp_path), voters(4))
    with engine.connect() as conn:
        entries = list(ledger_store.iter_entries(conn))
        [(bid, names)] = conn.execute(select(T_BATCH.c.id, T_BATCH.c.record_fields)).all()
    assert names == "voter_id,name,phone"
    assert not any(b"voter_id,name" in e for e in entries)
    [details] = [d for d in (orjson.loads(e).get("details", {}) for e in entries)
                 if d.get("batch") == bid]
    assert details["record_fields"] == manifest.record_fields_digest(bid, names)
