"""Envelope-encryption recipes: the only crypto API the rest of civicvault uses.

Associated data binds every ciphertext to where it belongs:

- column blob:   ("column", dataset, batch, column, data-key id)
- record blob:   ("record", dataset, record, subject, field names) under the subject's key;
                 its payload the row's values in the order of those names (pack_values)
- subject key:   ("subject-key", dataset, subject, wrapping-key id)

so a blob copied to another batch, column, record or key version fails to open.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import orjson
import polars as pl

from vault import _aead
from vault.errors import CiphertextRejected as CiphertextRejected  # its old home

DecryptionFailed = _aead.DecryptionFailed


def column_ad(dataset_id: int, batch_id: int, column: str, key_id: int) -> bytes:
    return _aead.associated_data("column", dataset_id, batch_id, column, key_id)


def record_ad(dataset_id: int, record_id: int, subject_id: int, fields: str) -> bytes:
    # The subject key is never re-versioned (only its wrapping is), so the record is
    # bound to the subject rather than to a key version.
    return _aead.associated_data("record", dataset_id, record_id, subject_id, fields)


def subject_key_ad(dataset_id: int, subject_id: int, wrap_key_id: int) -> bytes:
    return _aead.associated_data("subject-key", dataset_id, subject_id, wrap_key_id)


def _column_bytes(series: pl.Series) -> bytes:
    buf = io.BytesIO()
    series.to_frame().write_ipc(buf, compression="lz4")
    return buf.getvalue()


def seal_batch(
    key: bytes, key_id: int, dataset_id: int, batch_id: int, frame: pl.DataFrame
) -> dict[str, bytes]:
    """Seal each column of ``frame`` as one blob (Arrow IPC inside)."""
    names = frame.columns
    plaintexts = [_column_bytes(frame.get_column(c)) for c in names]
    ads = [column_ad(dataset_id, batch_id, c, key_id) for c in names]
    return dict(zip(names, _aead.seal_many_one_key(key, plaintexts, ads), strict=True))


def open_column(
    key: bytes, key_id: int, dataset_id: int, batch_id: int, column: str, sealed: bytes
) -> pl.Series:
    try:
        raw = _aead.open_(key, sealed, column_ad(dataset_id, batch_id, column, key_id))
    except DecryptionFailed:
        raise CiphertextRejected(
            f"column blob of batch {batch_id} ({column}) does not open "
            "in its context"
        ) from None
    return pl.read_ipc(io.BytesIO(raw)).to_series()


def pack_rows(frame: pl.DataFrame) -> list[bytes]:
    """One compact JSON object per row (values as strings or null), encoded in Polars."""
    if frame.width == 0:
        return []
    packed = frame.select(
        pl.struct(pl.all().cast(pl.Utf8)).struct.json_encode().cast(pl.Binary)
    ).to_series()
    return list(packed.to_list())


def pack_values(frame: pl.DataFrame) -> list[bytes]:
    """One compact JSON array per row: its values as strings or null, in column order.

    A record's payload: the names are the record's ``fields``, stored beside it and bound
    into its associated data, so the payload does not repeat them (a voter file's record:
    ~40% fewer bytes than :func:`pack_rows`' object). Each value is escaped by Polars' JSON
    encoder, as a one-field object whose wrapping is then cut off."""
    if frame.width == 0:
        return []
    pieces: list[pl.Expr] = []
    for i, name in enumerate(frame.columns):
        value = (pl.struct(pl.col(name).cast(pl.Utf8).alias("v")).struct.json_encode()
                 .str.strip_prefix('{"v":').str.strip_suffix("}"))
        pieces += [pl.lit("," if i else "["), value]
    packed = frame.select(pl.concat_str([*pieces, pl.lit("]")]).cast(pl.Binary)).to_series()
    return list(packed.to_list())


def record_values(payload: bytes, fields: str) -> dict[str, str | None]:
    """A record's opened payload by field name: a JSON array in the order of ``fields``
    (:func:`pack_values`), or an object by name (records sealed before 2026-12-04)."""
    values = orjson.loads(payload)
    names = fields.split(",")
    if isinstance(values, list):
        if len(values) != len(names):
            raise CiphertextRejected(f"a record holds {len(values)} values for {len(names)} "
                                     "fields")
        return dict(zip(names, values, strict=True))
    return {f: values.get(f) for f in names}


def payload_frame(payloads: Sequence[bytes], fields: Sequence[str],
                  columns: Sequence[str]) -> pl.DataFrame:
    """Opened record payloads as a frame of ``columns`` (strings; null where a record has
    no such field), row i from payload i with field names ``fields[i]``: parsed by Polars,
    arrays (:func:`pack_values`) and older objects alike, in their order."""
    struct = pl.Struct({c: pl.String for c in columns})
    text = pl.Series("p", payloads, dtype=pl.Binary).cast(pl.String)
    rows = pl.DataFrame({"i": pl.int_range(len(payloads), eager=True), "p": text,
                         "f": pl.Series(fields, dtype=pl.String)})
    parts = [pl.DataFrame(schema={"i": pl.Int64, **{c: pl.String for c in columns}})]
    objects = rows.filter(~pl.col("p").str.starts_with("["))
    if objects.height:
        parts.append(objects.select("i", pl.col("p").str.json_decode(struct).struct.unnest()))
    for (names,), group in rows.filter(pl.col("p").str.starts_with("[")).group_by("f"):
        order = str(names).split(",")
        values = group.get_column("p").str.json_decode(pl.List(pl.String))
        if (values.list.len() != len(order)).any():
            raise CiphertextRejected(f"a record holds other than {len(order)} values for its "
                                     "fields")
        parts.append(group.select("i").with_columns(
            (values.list.get(order.index(c)) if c in order
             else pl.lit(None, dtype=pl.String)).alias(c) for c in columns))
    return pl.concat(parts, how="vertical").sort("i").drop("i")


def seal_records(
    subject_keys: Sequence[bytes],
    dataset_id: int,
    record_ids: Sequence[int] | _aead.IntArray,
    subject_ids: Sequence[int] | _aead.IntArray,
    fields: str,
    payloads: Sequence[bytes],
) -> list[bytes]:
    """Seal row i's direct identifiers under subject i's own key."""
    return _aead.seal_int_ads(subject_keys, payloads, _aead.ad_prefix("record", dataset_id),
                              [record_ids, subject_ids], _aead.ad_part(fields))


def open_record(
    subject_key: bytes, dataset_id: int, record_id: int, subject_id: int, fields: str,
    sealed: bytes,
) -> dict[str, str | None]:
    try:
        raw = _aead.open_(subject_key, sealed, record_ad(dataset_id, record_id, subject_id, fields))
    except DecryptionFailed:
        raise CiphertextRejected(f"record {record_id} does not open in its context") from None
    return record_values(raw, fields)


def open_records(
    subject_keys: Sequence[bytes], dataset_id: int, record_ids: Sequence[int],
    subject_ids: Sequence[int], fields: Sequence[str], sealed: Sequence[bytes],
) -> list[bytes]:
    """Open record i under subject key i: the raw JSON payloads (:func:`open_record`
    without a dict per row; the associated data built without a call per record)."""
    head = _aead.ad_prefix("record", dataset_id)
    tails = {f: _aead.ad_part(f) for f in set(fields)}
    ads = [head + r + s + tails[f] for r, s, f in zip(
        _aead.ad_int_parts(record_ids), _aead.ad_int_parts(subject_ids), fields, strict=True)]
    try:
        return _aead.open_each_own_key(subject_keys, sealed, ads)
    except DecryptionFailed:
        raise CiphertextRejected("a record does not open in its context") from None


def new_subject_keys(n: int) -> list[bytes]:
    return _aead.random_keys(n)


def wrap_subject_keys(
    wrap_key: bytes, wrap_key_id: int, dataset_id: int, subject_ids: Sequence[int],
    keys: Sequence[bytes],
) -> list[bytes]:
    return _aead.seal_int_ads(wrap_key, keys, _aead.ad_prefix("subject-key", dataset_id),
                              [subject_ids], _aead.ad_part(wrap_key_id))


def unwrap_subject_keys(
    wrap_key: bytes, wrap_key_id: int, dataset_id: int, subject_ids: Sequence[int],
    wrapped: Sequence[bytes],
) -> list[bytes]:
    head, tail = _aead.ad_prefix("subject-key", dataset_id), _aead.ad_part(wrap_key_id)
    ads = [head + s + tail for s in _aead.ad_int_parts(subject_ids)]  # == subject_key_ad
    try:
        return _aead.open_many_one_key(wrap_key, wrapped, ads)
    except DecryptionFailed:
        raise CiphertextRejected("a wrapped subject key does not open in its context") from None


def fingerprints(key: bytes, payloads: Sequence[bytes]) -> list[bytes]:
    """Keyed fingerprints of whole rows, to tell an unchanged re-delivery from an update."""
    return _aead.keyed_fingerprints(key, payloads)


def batch_digest(column_blobs: dict[str, bytes], record_blobs: Sequence[bytes]) -> str:
    """SHA-256 over a batch's stored ciphertext, in a defined order (hex).

    Order: column blobs by column name, then record blobs by record id; every
    item is length-prefixed under a domain tag.
    """
    import struct

    head = [b"civicvault/batch-data/v1"]
    for name in sorted(column_blobs):
        raw = name.encode()
        head += (b"C" + struct.pack(">I", len(raw)) + raw,
                 struct.pack(">Q", len(column_blobs[name])), column_blobs[name])
    return _aead.sha256_framed(b"".join(head), b"R", record_blobs).hex()
