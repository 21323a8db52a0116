"""Handling defaults and overrides, generalisation, and the ``classify`` command."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from flows.cli import classify as cli_classify
from vault.errors import BadInput
from vault.pii.classifier import ColumnClass, apply_policy, classify_frame
from vault.pii.generalize import age_band, birth_year, generalize_frame, zip5
from vault.pii.handling import CATEGORIES, HANDLINGS, default_handling, handling_for


def test_defaults_fail_closed() -> None:
    assert default_handling("unknown", "UNKNOWN") == "encrypt"
    assert default_handling("direct", "PERSON") == "encrypt"
    assert default_handling("special", "PARTY") == "encrypt"
    assert default_handling("quasi", "BIRTH_DATE") == "generalize"
    assert default_handling("quasi", "US_ZIP_CODE") == "generalize"
    assert default_handling("free_text", "FREE_TEXT") == "redact"
    assert default_handling("harmless", "STATUS") == "keep"


def test_overrides_entity_before_category() -> None:
    overrides = {"quasi": "drop", "BIRTH_DATE": "encrypt"}
    assert handling_for("quasi", "BIRTH_DATE", overrides) == "encrypt"
    assert handling_for("quasi", "DISTRICT", overrides) == "drop"
    assert handling_for("direct", "PERSON", overrides) == "encrypt"


def test_policy_cannot_keep_unknown_columns_in_the_clear() -> None:
    with pytest.raises(BadInput, match="fail closed"):
        handling_for("unknown", "UNKNOWN", {"unknown": "keep"})


def test_unknown_handling_rejected() -> None:
    with pytest.raises(BadInput):
        handling_for("quasi", "AGE", {"AGE": "publish"})


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(CATEGORIES), st.text(max_size=12), st.sampled_from(HANDLINGS))
def test_handling_is_always_one_of_six(category: str, entity: str, override: str) -> None:
    try:
        got = handling_for(category, entity, {category: override})  # type: ignore[arg-type]
    except BadInput:
        assert category == "unknown" and override == "keep"
    else:
        assert got in HANDLINGS


def test_classifier_applies_overrides() -> None:
    df = pl.DataFrame({"birth_date": ["1980-01-02", "1975-12-31"] * 20,
                       "party_cd": ["DEM", "REP"] * 20})
    classes = classify_frame(df, overrides={"special": "drop"}, use_presidio=False)
    assert [c.handling for c in classes] == ["generalize", "drop"]


def _eval(expr: pl.Expr, values: list[str | None]) -> list[object]:
    return pl.DataFrame({"v": values}, schema={"v": pl.String}).select(expr.alias("o"))[
        "o"
    ].to_list()


def test_zip5() -> None:
    got = _eval(zip5(pl.col("v")), ["27517-1234", "27517.0", "275171234", "2138", " 02138 ",
                                    "ABCDE", None, ""])
    assert got == ["27517", "27517", "27517", "02138", "02138", None, None, None]


def test_birth_year_and_age_band() -> None:
    values = ["04/05/1990", "1965-11-25", "19500101", "not a date", None]
    assert _eval(birth_year(pl.col("v")), values) == [1990, 1965, 1950, None, None]
    bands = _eval(age_band(pl.col("v"), as_of=date(2018, 12, 22)), values)
    assert bands == ["20-29", "50-59", "60-69", None, None]
    assert _eval(age_band(pl.col("v"), as_of=date(2020, 1, 1)), ["01/01/1920"]) == ["90+"]


def test_generalize_frame_only_touches_generalize_columns() -> None:
    df = pl.DataFrame({"dob": ["1990-04-05"], "zip": ["27517-1234"], "name": ["x"]})
    classes = [
        ColumnClass("dob", "BIRTH_DATE", "quasi", 1.0, "generalize", False),
        ColumnClass("zip", "US_ZIP_CODE", "quasi", 1.0, "generalize", False),
        ColumnClass("name", "PERSON", "direct", 1.0, "encrypt", False),
    ]
    out = generalize_frame(df, classes)
    assert out.row(0) == (1990, "27517", "x")
    banded = generalize_frame(df, classes, birth_date_to="age_band", as_of=date(2018, 1, 1))
    assert banded["dob"][0] == "20-29"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    cli_classify.register(app)

    @app.callback()
    def _root() -> None:
        pass

    return app


def test_classify_json_is_one_value_with_every_column(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text("ncid,first_name,party_cd,zip_code,status_cd\n"
                    + "AB123456,Ann,DEM,27517,A\n" * 30)
    result = CliRunner().invoke(app, ["classify", str(path), "--json"])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    cols = {c["name"]: c for c in doc["columns"]}
    assert list(cols) == ["ncid", "first_name", "party_cd", "zip_code", "status_cd"]
    for c in cols.values():
        assert {"name", "entity", "confidence", "handling"} <= set(c)
        assert c["handling"] in HANDLINGS
    assert cols["ncid"]["lookup_key"] is True
    assert cols["status_cd"]["handling"] == "keep"
    assert "Ann" not in result.stdout and "AB123456" not in result.stdout


def test_classify_table_for_people(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "v.tsv"
    path.write_text("voter_reg_num\tlast_name\n1\tLee\n")
    result = CliRunner().invoke(app, ["classify", str(path)])
    assert result.exit_code == 0
    assert "voter_reg_num" in result.stdout and "Lee" not in result.stdout


def test_classify_through_the_real_cli(tmp_path: Path) -> None:
    try:
        from flows import cli
    except ImportError as exc:  # another layer still being built in this tree
        pytest.skip(f"flows.cli not importable yet: {exc}")
    bad = tmp_path / "empty.csv"
    bad.write_text("")
    assert cli.main(["classify", str(bad), "--json"]) == 2
    good = tmp_path / "v.csv"
    good.write_text("email,notes\na@example.com,hi\n")
    assert cli.main(["classify", str(good), "--json"]) == 0


def test_typed_and_nested_columns_from_parquet_classify() -> None:
    df = pl.DataFrame({
        "birth_year": [1950 + i % 50 for i in range(100)],
        "zip_code": [27500 + i for i in range(100)],
        "tags": [["a", "b"]] * 100,
    })
    got = {c.name: c for c in classify_frame(df, use_presidio=False)}
    assert got["birth_year"].entity == "BIRTH_YEAR" and got["birth_year"].confidence == 1.0
    assert got["zip_code"].entity == "US_ZIP_CODE"
    assert got["tags"].handling == "encrypt"  # unknown nested data: fail closed


def test_apply_policy_callable() -> None:
    df = pl.DataFrame({"ncid": ["AB123456"] * 30, "status_cd": ["A"] * 30, "x": ["Q1"] * 30})
    classes = classify_frame(df, use_presidio=False)

    def policy(category: str, entity: str) -> str:
        return "tokenize" if entity == "VOTER_ID" else default_handling(category, entity)  # type: ignore[arg-type]

    got = {c.name: c for c in apply_policy(classes, policy, lookup_entities=frozenset())}
    assert got["ncid"].handling == "tokenize" and got["ncid"].lookup_key is False
    assert got["status_cd"].handling == "keep"
    with pytest.raises(BadInput, match="fail closed"):
        apply_policy(classes, lambda category, entity: "keep")
