"""Classification of the real NC voter file (Chatham County, 71 columns).

The expected class of every column was checked by hand against the NCSBE file
layout; values are never copied here (only column names and our labels). The
file is opened from its zip in ``../shared/data`` and the tests skip without it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import polars as pl
import pytest

from vault.pii import classify_frame
from vault.pii.classifier import ColumnClass, clear_cache
from vault.pii.generalize import zip5
from vault.pii.readers import read_delimited

D, S, Q, H = "direct", "special", "quasi", "harmless"

_DISTRICTS = [
    "precinct_abbrv", "precinct_desc", "ward_abbrv", "ward_desc", "cong_dist_abbrv",
    "super_court_abbrv", "judic_dist_abbrv", "nc_senate_abbrv", "nc_house_abbrv",
    "county_commiss_abbrv", "county_commiss_desc", "township_abbrv", "township_desc",
    "school_dist_abbrv", "school_dist_desc", "fire_dist_abbrv", "fire_dist_desc",
    "water_dist_abbrv", "water_dist_desc", "sewer_dist_abbrv", "sewer_dist_desc",
    "sanit_dist_abbrv", "sanit_dist_desc", "rescue_dist_abbrv", "rescue_dist_desc",
    "munic_dist_abbrv", "munic_dist_desc", "dist_1_abbrv", "dist_1_desc", "dist_2_abbrv",
    "dist_2_desc", "vtd_abbrv", "vtd_desc",
]

# column -> (category, entity). Why, where it is not obvious:
#  * name_prefx_cd / name_sufx_cd are parts of the name: erasing a person shreds them too.
#  * drivers_lic is a Y/N "has a licence" flag in NC files, not a licence number.
#  * county / state / status columns are the same for most of a county file: harmless.
#  * Confidential_ind marks address-confidentiality participants: quasi, encrypted.
EXPECTED: dict[str, tuple[str, str]] = {
    "county_id": (H, "COUNTY"),
    "county_desc": (H, "COUNTY"),
    "voter_reg_num": (D, "VOTER_ID"),
    "status_cd": (H, "STATUS"),
    "voter_status_desc": (H, "STATUS"),
    "reason_cd": (H, "STATUS"),
    "voter_status_reason_desc": (H, "STATUS"),
    "absent_ind": (H, "STATUS"),
    "name_prefx_cd": (D, "PERSON"),
    "last_name": (D, "PERSON"),
    "first_name": (D, "PERSON"),
    "midl_name": (D, "PERSON"),
    "name_sufx_cd": (D, "PERSON"),
    "res_street_address": (D, "US_STREET_ADDRESS"),
    "res_city_desc": (Q, "LOCATION"),
    "state_cd": (H, "STATE"),
    "zip_code": (Q, "US_ZIP_CODE"),
    "mail_addr1": (D, "US_STREET_ADDRESS"),
    "mail_addr2": (D, "US_STREET_ADDRESS"),
    "mail_addr3": (D, "US_STREET_ADDRESS"),
    "mail_addr4": (D, "US_STREET_ADDRESS"),
    "mail_city": (Q, "LOCATION"),
    "mail_state": (H, "STATE"),
    "mail_zipcode": (Q, "US_ZIP_CODE"),
    "full_phone_number": (D, "PHONE_NUMBER"),
    "race_code": (S, "RACE"),
    "ethnic_code": (S, "ETHNICITY"),
    "party_cd": (S, "PARTY"),
    "gender_code": (S, "GENDER"),
    "birth_age": (Q, "AGE"),
    "birth_place": (Q, "BIRTH_PLACE"),
    "drivers_lic": (Q, "US_DRIVER_LICENSE_FLAG"),
    "registr_dt": (Q, "REGISTRATION_DATE"),
    "municipality_abbrv": (Q, "LOCATION"),
    "municipality_desc": (Q, "LOCATION"),
    "Confidential_ind": (Q, "CONFIDENTIALITY_FLAG"),
    "birth_year": (Q, "BIRTH_YEAR"),
    "ncid": (D, "VOTER_ID"),
    **{name: (Q, "DISTRICT") for name in _DISTRICTS},
}
LOOKUP_KEYS = {"voter_reg_num", "ncid"}


_MEMO: dict[str, object] = {}  # read and classify once per session, not per test


@pytest.fixture
def nc_frame(shared_data: Path) -> pl.DataFrame:
    if "frame" not in _MEMO:
        path = shared_data / "nc_chatham_2018-12-22.zip"
        if not path.is_file():
            pytest.skip(f"{path.name} not in shared data")
        with zipfile.ZipFile(path) as zf:
            _MEMO["frame"] = read_delimited(zf.read("ncvoter.txt"), label="ncvoter.txt")
    frame = _MEMO["frame"]
    assert isinstance(frame, pl.DataFrame)
    return frame


@pytest.fixture
def nc_classes(nc_frame: pl.DataFrame) -> dict[str, ColumnClass]:
    if "classes" not in _MEMO:
        clear_cache()
        _MEMO["classes"] = {c.name: c for c in classify_frame(nc_frame)}
    classes = _MEMO["classes"]
    assert isinstance(classes, dict)
    return classes


def test_reader_sees_the_whole_file(nc_frame: pl.DataFrame) -> None:
    assert nc_frame.shape == (60_568, 71)
    assert set(nc_frame.dtypes) == {pl.String}


def test_expected_table_covers_every_column(nc_frame: pl.DataFrame) -> None:
    assert set(EXPECTED) == set(nc_frame.columns)
    assert len(EXPECTED) == 71


@pytest.mark.parametrize("column", sorted(EXPECTED))
def test_every_column_has_its_hand_checked_class(
    column: str, nc_classes: dict[str, ColumnClass]
) -> None:
    got = nc_classes[column]
    assert (got.category, got.entity) == EXPECTED[column]


def test_recall_on_direct_and_special_is_one(nc_classes: dict[str, ColumnClass]) -> None:
    for category in (D, S):
        expected = {n for n, (c, _) in EXPECTED.items() if c == category}
        found = {n for n in expected if nc_classes[n].category == category}
        assert len(found) / len(expected) == 1.0, sorted(expected - found)


def test_nothing_protected_is_kept_in_the_clear(nc_classes: dict[str, ColumnClass]) -> None:
    for name, (category, _) in EXPECTED.items():
        if category != H:
            assert nc_classes[name].handling != "keep", name


def test_lookup_keys_are_the_voter_ids(nc_classes: dict[str, ColumnClass]) -> None:
    assert {n for n, c in nc_classes.items() if c.lookup_key} == LOOKUP_KEYS


def test_confidence_is_a_share(nc_classes: dict[str, ColumnClass]) -> None:
    assert all(0.0 <= c.confidence <= 1.0 for c in nc_classes.values())
    # identifiers whose names *and* values agree score high
    for name in ("ncid", "voter_reg_num", "party_cd", "race_code", "full_phone_number"):
        assert nc_classes[name].confidence >= 0.9, name


def test_zip_generalises_to_five_digits(nc_frame: pl.DataFrame) -> None:
    # the file stores ZIPs as floats ("27517.0"); ZIP5 must come out whatever the form.
    # Asserts compare counts only, so a failure never prints a real value.
    src = nc_frame.get_column("zip_code").str.strip_chars()
    non_blank = int(src.drop_nulls().str.len_chars().gt(0).sum())
    out = nc_frame.select(zip5(pl.col("zip_code")).alias("z")).get_column("z").drop_nulls()
    generalised = out.len()
    five_digits = int(out.str.contains(r"^\d{5}$").sum())
    assert generalised == non_blank
    assert five_digits == generalised


def test_classification_is_cached_per_schema_and_sample(nc_frame: pl.DataFrame) -> None:
    first = classify_frame(nc_frame)
    again = classify_frame(nc_frame)  # the same frame (its batches): from the cache
    assert again == first
    assert all(a is b for a, b in zip(again, first, strict=True))
    # same header, other contents: classified on its own values, not the cached answer
    other = classify_frame(nc_frame.head(10))
    assert other[0] is not first[0]
    assert [(c.name, c.category) for c in other][:3] == [(c.name, c.category) for c in first][:3]
