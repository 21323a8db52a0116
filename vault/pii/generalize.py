"""Vectorised generalisation of quasi-identifiers (Polars expressions, no Python per row).

* birth date -> birth year, or -> age band (``"30-39"``, top band ``"90+"``) as of a date
* age -> age band
* ZIP+4, ``"27517.0"``, 9-digit ZIPs and ZIPs that lost a leading zero -> ZIP5

Unparseable values become null: a generalised column never carries the original.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Literal

import polars as pl

from vault.pii.classifier import ColumnClass

__all__ = [
    "age_band",
    "age_band_from_age",
    "birth_year",
    "generalize_frame",
    "parse_date",
    "zip5",
]

_DATE_FORMATS = ("%m/%d/%Y", "%Y-%m-%d", "%Y%m%d", "%m-%d-%Y", "%Y/%m/%d")


def parse_date(col: pl.Expr) -> pl.Expr:
    """A string column in any of the usual voter-file date formats -> ``pl.Date`` (or null)."""
    text = col.cast(pl.String).str.strip_chars().str.slice(0, 10)
    return pl.coalesce([text.str.to_date(fmt, strict=False) for fmt in _DATE_FORMATS])


def birth_year(col: pl.Expr) -> pl.Expr:
    """Birth date -> birth year (``Int32``)."""
    return parse_date(col).dt.year().cast(pl.Int32)


def age_band_from_age(age: pl.Expr, *, width: int = 10, top: int = 90) -> pl.Expr:
    """Integer ages -> bands of ``width`` years as strings; ``top`` and over -> ``"90+"``."""
    lower = (age // width) * width
    return (
        pl.when(age.is_null() | (age < 0))
        .then(pl.lit(None, dtype=pl.String))
        .when(age >= top)
        .then(pl.lit(f"{top}+"))
        .otherwise(
            lower.cast(pl.Int64).cast(pl.String) + pl.lit("-")
            + (lower + width - 1).cast(pl.Int64).cast(pl.String)
        )
    )


def age_band(col: pl.Expr, *, as_of: date, width: int = 10, top: int = 90) -> pl.Expr:
    """Birth date -> age band on ``as_of`` (whole years completed)."""
    born = parse_date(col)
    years = pl.lit(as_of.year) - born.dt.year()
    had_birthday = (born.dt.month() < as_of.month) | (
        (born.dt.month() == as_of.month) & (born.dt.day() <= as_of.day)
    )
    age = years - pl.when(had_birthday).then(0).otherwise(1)
    return age_band_from_age(age, width=width, top=top)


def zip5(col: pl.Expr) -> pl.Expr:
    """ZIP, ZIP+4, ``"27517.0"``, ``"275171234"``, ``"2138"`` (lost zero) -> 5-digit ZIP."""
    digits = (
        col.cast(pl.String)
        .str.strip_chars()
        .str.replace(r"\.0+$", "")
        .str.replace_all(r"[\s-]", "")
    )
    n = digits.str.len_chars()
    return (
        pl.when(~digits.str.contains(r"^\d+$"))
        .then(pl.lit(None, dtype=pl.String))
        .when(n == 9)
        .then(digits.str.slice(0, 5))
        .when((n >= 3) & (n <= 5))
        .then(digits.str.zfill(5))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


def generalize_frame(
    df: pl.DataFrame,
    classes: Sequence[ColumnClass],
    *,
    birth_date_to: Literal["year", "age_band"] = "year",
    as_of: date | None = None,
) -> pl.DataFrame:
    """Replace every column whose handling is ``generalize`` by its generalised form."""
    exprs: list[pl.Expr] = []
    for cls in classes:
        if cls.handling != "generalize" or cls.name not in df.columns:
            continue
        col = pl.col(cls.name)
        if cls.entity in ("BIRTH_DATE", "DATE"):
            if birth_date_to == "age_band":
                exprs.append(age_band(col, as_of=as_of or date.today()).alias(cls.name))
            else:
                exprs.append(birth_year(col).alias(cls.name))
        elif cls.entity == "US_ZIP_CODE":
            exprs.append(zip5(col).alias(cls.name))
        elif cls.entity == "AGE":
            age = col.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
            exprs.append(age_band_from_age(age.cast(pl.Int64)).alias(cls.name))
        else:  # nothing we know how to generalise: drop the values (fail closed)
            exprs.append(pl.lit(None, dtype=pl.String).alias(cls.name))
    return df.with_columns(exprs) if exprs else df
