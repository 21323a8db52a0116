"""The synthetic voter file: seeded, realistic enough, fast."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from flows import demo_data


def test_same_seed_same_file_byte_for_byte(tmp_path: Path) -> None:
    a = demo_data.write_csv(tmp_path / "a.csv", 2_000, seed=7)
    b = demo_data.write_csv(tmp_path / "b.csv", 2_000, seed=7)
    assert a.read_bytes() == b.read_bytes()


def test_different_seed_different_people() -> None:
    a = demo_data.generate(500, seed=1)
    b = demo_data.generate(500, seed=2)
    assert not a.equals(b)
    assert set(a["full_phone_number"]) != set(b["full_phone_number"])


def test_columns_and_domains() -> None:
    df = demo_data.generate(5_000)
    assert df.columns == [
        "ncid", "first_name", "last_name", "res_street_address", "res_city_desc", "zip_code",
        "full_phone_number", "email_address", "birth_date", "birth_age", "age_band",
        "county_id", "county_desc", "party_cd", "race_code", "ethnic_code", "gender_code",
        "precinct_abbrv", "registr_dt", "voted_2024", "canvass_notes",
    ]
    assert df["ncid"].n_unique() == df.height
    assert set(df["party_cd"]) <= set(demo_data.PARTIES)
    assert set(df["county_desc"]) <= set(demo_data.NC_COUNTIES)
    assert len(demo_data.NC_COUNTIES) == 100
    assert set(df["race_code"]) <= set(demo_data.RACES)
    assert df["birth_date"].dtype == pl.Date
    assert (df["registr_dt"] > df["birth_date"]).all()
    assert df["birth_age"].min() >= 18  # type: ignore[operator]
    assert set(df["age_band"]) <= {"18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75+"}
    first = df.filter(pl.col("county_desc") == "ALAMANCE")["county_id"]
    assert set(first) == {1}
    assert df["voted_2024"].dtype == pl.Boolean


def test_canvass_notes_sometimes_name_people_phones_and_addresses() -> None:
    df = demo_data.generate(10_000)
    notes = df["canvass_notes"]
    assert 0 < notes.null_count() < df.height
    rows = df.filter(pl.col("canvass_notes").is_not_null()).to_dicts()
    with_name = sum(r["last_name"].title() in r["canvass_notes"] for r in rows)
    with_phone = sum(r["full_phone_number"] in r["canvass_notes"] for r in rows)
    with_address = sum(r["res_street_address"].title() in r["canvass_notes"] for r in rows)
    assert with_name > 100 and with_phone > 100 and with_address > 100


def test_hundred_thousand_rows_fast() -> None:
    t = time.perf_counter()
    df = demo_data.generate(100_000)
    elapsed = time.perf_counter() - t
    assert df.height == 100_000
    assert elapsed < 10.0, f"generating 100k rows took {elapsed:.1f} s"
