"""Subject-bucket digests of a batch's new subjects, laid out from the rows the writer holds.

An ingest batch gives its new subjects consecutive ids ``[first, first + n)``, above every
stored subject. The digests its ledger entry commits for the buckets those ids fall in
(``vault.manifest``: ``subject_buckets``) cover those subjects' rows and their blind-index
rows, which are exactly the rows the batch inserts, and, in a bucket the batch shares
with earlier subjects, the rows of lower ids stored before. Reading the buckets back after
every batch cost an ingest about as much as writing them (issue 17: 1M rows 10.95 ->
25.89 s on SQLite), so the writer lays out here, vectorised, the very bytes the
database's aggregates would return for the rows it inserts (``manifest.BucketParts``),
and reads back only the older rows of a shared bucket (``manifest.range_parts``). The row
texts (``id:dataset:...:HEX(blob)``) are written in one pass by ``vault._aead.text_rows``
(``vault/_sealc.c``; issue 17: 100k subjects with 3 lookup columns, 231-267 -> 125-128 ms
of CPU against Polars' ``concat_str``).
Hashing stays in ``vault.manifest``; verification still recomputes every bucket from the
database, and tests hold both layouts equal on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from vault import _aead
from vault.bulk import arrow_binary
from vault.manifest import BUCKET, BucketParts, buckets_of_range, row_moments


class _Joined:
    """Rows of text joined by ``,`` (``group_concat`` / ``string_agg``), cut by rows:
    ``ends[i]`` is where row i ends in ``text`` (``vault._aead.text_rows``)."""

    def __init__(self, text: bytes, ends: np.ndarray[Any, np.dtype[np.int64]]) -> None:
        self.text, self.ends = text, ends

    def rows(self, a: int, z: int) -> bytes:
        """The joined text of rows ``[a, z)``."""
        if z <= a:
            return b""
        return self.text[int(self.ends[a - 1]) + 1 if a else 0:int(self.ends[z - 1])]


def _rows(ints: Any, middles: Sequence[bytes], codes: Any = None,
          blobs: _Blobs | None = None) -> _Joined:
    """Row i: ``str(ints[i]) || middles[codes[i]] || HEX(blob i)``, as ``_Joined``."""
    return _Joined(*_aead.text_rows(np.ascontiguousarray(ints, dtype=np.int64), middles,
                                    codes, None if blobs is None else blobs.data,
                                    None if blobs is None else blobs.offsets))


class _Blobs:
    """Blobs back to back (``group_concat(blob, '')``), cut by rows from Arrow's buffer."""

    def __init__(self, blobs: pl.Series) -> None:
        data, self.offsets = arrow_binary(blobs)
        self.data = memoryview(data)

    def rows(self, a: int, z: int) -> bytes:
        if z <= a:
            return b""
        return self.data[int(self.offsets[a]):int(self.offsets[z])].tobytes()

    def sizes(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        return np.diff(self.offsets)


def _repeated(value: int, n: int) -> bytes:
    return ",".join([str(value)] * n).encode("ascii") if n else b""


def _crcs(text: _Joined, n: int) -> Any:
    """CRC-32 of each of the ``n`` row texts (the locator's row function)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    return _aead.crc32_pieces(text.text, b",", n)


def new_subject_parts(
    first: int, ds_id: int, wrap_key_id: int, wrapped: Sequence[bytes] | pl.Series,
    blind_key_id: int, lookups: Sequence[tuple[str, Sequence[bytes | None] | pl.Series]],
    version: int,
) -> dict[int, BucketParts]:
    """Per bucket, the ``BucketParts`` of the new subjects ``first, first + 1, ...`` (one per
    wrapped key, not erased) and of their blind-index rows (``lookups``: per column, one
    digest or None per new subject, in id order; lists or Binary Series). A bucket that
    also holds older ids has only the new rows' parts here: ``range_parts`` of the older
    ones ``.then`` these."""
    n = len(wrapped)
    if n == 0:
        return {}
    id_array = np.arange(first, first + n, dtype=np.int64)
    ids = pl.Series("id", id_array)
    w = _Blobs(pl.Series(wrapped, dtype=pl.Binary))
    subject_rows = _rows(id_array, [f":{ds_id}:{wrap_key_id}:0:".encode()], blobs=w)
    names = sorted(name for name, _ in lookups)  # the order of "column" (UTF-8 bytes)
    by_name = dict(lookups)
    blind = pl.concat([
        pl.DataFrame({"sid": ids, "k": pl.Series([k] * n, dtype=pl.UInt32),
                      "dg": pl.Series(by_name[name], dtype=pl.Binary)}).drop_nulls("dg")
        for k, name in enumerate(names)
    ]) if names else pl.DataFrame(schema={"sid": pl.Int64, "k": pl.UInt32, "dg": pl.Binary})
    blind = blind.sort(["sid", "k"])  # one row per subject and column
    hex_list = [name.encode().hex().upper() for name in names]
    sids = blind.get_column("sid").to_numpy()
    codes = blind.get_column("k").to_numpy().astype(np.int64)
    dg = _Blobs(blind.get_column("dg"))
    blind_rows = _rows(sids, [f":{ds_id}:{h}:{blind_key_id}:".encode() for h in hex_list] or
                       [b""], codes, dg)
    subject_crcs, blind_crcs = _crcs(subject_rows, n), _crcs(blind_rows, len(sids))
    if version != 1:
        v2 = (_rows(id_array, [b""]), _rows(w.sizes(), [b""]), w,
              _rows(sids, [b""]), _rows(dg.sizes(), [b""]), dg)
    out: dict[int, BucketParts] = {}
    for b in buckets_of_range(first, first + n):
        lo, hi = max(b * BUCKET, first), min((b + 1) * BUCKET, first + n)
        i, j = lo - first, hi - first  # subject rows
        a, z = (int(x) for x in np.searchsorted(sids, [lo, hi]))  # blind-index rows
        moments = (row_moments(subject_crcs[i:j], id_array[i:j]),
                   row_moments(blind_crcs[a:z], sids[a:z]))
        if version == 1:
            out[b] = BucketParts(*moments, subject_rows.rows(i, j), blind_rows.rows(a, z))
            continue
        s_ids, s_len, s_blob, b_ids, b_len, b_blob = v2
        b_col = ",".join(map(hex_list.__getitem__, codes[a:z].tolist())).encode("ascii")
        out[b] = BucketParts(
            *moments,
            subjects_columns=(s_ids.rows(i, j), _repeated(ds_id, j - i),
                              _repeated(wrap_key_id, j - i), b"0" * (j - i),
                              s_len.rows(i, j), s_blob.rows(i, j)),
            blind_columns=(b_ids.rows(a, z), _repeated(ds_id, z - a), b_col,
                           _repeated(blind_key_id, z - a), b_len.rows(a, z),
                           b_blob.rows(a, z)))
    return out
