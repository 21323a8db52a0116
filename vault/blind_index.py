"""Blind indexes: keyed HMAC-SHA256 of normalised lookup values.

They let the vault find a subject (deduplication across ingests, erasure and
access requests) without storing the value. The key is a per-dataset data key of
purpose ``blind``, separate from every encryption key, so indexes cannot be
linked across datasets. Normalisation is vectorised in Polars and identical for
ingest and lookup, so ``" (919) 555-0101 "`` and ``"9195550101"`` match.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from vault import _aead

Normalizer = Literal["text", "email", "phone", "id"]
DIGEST_BYTES = 16  # 128-bit truncated HMAC: collision-free at civic scale, half the index size


def normalize(values: pl.Series, kind: Normalizer) -> pl.Series:
    """Normalised strings (null stays null; empty after normalising becomes null)."""
    s = values.cast(pl.Utf8).str.strip_chars()
    if kind == "email":
        s = s.str.to_lowercase()
    elif kind == "phone":
        s = s.str.replace_all(r"\D", "")
        s = pl.select(
            pl.when((s.str.len_chars() == 11) & s.str.starts_with("1"))
            .then(s.str.slice(1))
            .otherwise(s)
        ).to_series()
    elif kind == "id":
        s = s.str.replace(r"\.0+$", "").str.to_uppercase().str.replace_all(r"[^0-9A-Z]", "")
        s = pl.select(
            pl.when(s.str.contains(r"^[0-9]+$")).then(s.str.replace(r"^0+(\d)", "$1")).otherwise(s)
        ).to_series()
    else:
        s = s.str.to_lowercase().str.replace_all(r"\s+", " ")
    return pl.select(pl.when(s.str.len_chars() == 0).then(None).otherwise(s)).to_series()


def digests(key: bytes, column: str, values: pl.Series, kind: Normalizer) -> list[bytes | None]:
    """One digest per value (None where the value is blank)."""
    norm: list[bytes | None] = normalize(values, kind).cast(pl.Binary).to_list()
    return _aead.hmac_each(key, norm, _aead.associated_data("blind", column, kind), DIGEST_BYTES)


def digest_one(key: bytes, column: str, value: str, kind: Normalizer) -> bytes | None:
    return digests(key, column, pl.Series([value], dtype=pl.Utf8), kind)[0]
