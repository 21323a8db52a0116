"""Readers: every format in, every bad input out as one clear BadInput line."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vault.errors import BadInput
from vault.pii.readers import iter_batches, read_delimited, read_table

SECRET = "Zyxwvut-4417"  # a cell value that must never appear in an error message


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("v.csv", "id,name,zip\n1,Ann,02138\n2,Bob,27517\n"),
        ("v.tsv", "id\tname\tzip\n1\tAnn\t02138\n2\tBob\t27517\n"),
        ("v.txt", "id;name;zip\n1;Ann;02138\n2;Bob;27517\n"),
        ("v.psv", "id|name|zip\n1|Ann|02138\n2|Bob|27517\n"),
        ("v.csv", 'id,name,zip\n1,"Ann, Jr.",02138\n2,Bob,27517\n'),
    ],
)
def test_delimited_sniffed_and_read_as_strings(tmp_path: Path, name: str, text: str) -> None:
    df = read_table(_write(tmp_path, name, text.encode()))
    assert df.columns == ["id", "name", "zip"]
    assert df.height == 2
    assert df.schema == {"id": pl.String, "name": pl.String, "zip": pl.String}
    assert df["zip"][0] == "02138"  # leading zero kept: nothing is inferred as a number


def test_latin1_and_bom(tmp_path: Path) -> None:
    latin = read_table(_write(tmp_path, "l.csv", "name,city\nJosé,Zürich\n".encode("latin-1")))
    assert latin.row(0) == ("José", "Zürich")
    bom = read_table(_write(tmp_path, "b.csv", b"\xef\xbb\xbfname,city\nAnn,Oslo\n"))
    assert bom.columns == ["name", "city"]


def test_blank_lines_are_not_rows(tmp_path: Path) -> None:
    df = read_table(_write(tmp_path, "v.csv", b"a,b\n1,2\n\n3,4\n"))
    assert df.height == 2


def test_parquet_and_jsonl(tmp_path: Path) -> None:
    frame = pl.DataFrame({"voter_id": ["1", "2"], "age": [30, 41]})
    pq = tmp_path / "v.parquet"
    frame.write_parquet(pq)
    assert read_table(pq).equals(frame)
    jl = tmp_path / "v.jsonl"
    frame.write_ndjson(jl)
    assert read_table(jl).equals(frame)


def test_iter_batches_covers_every_row_once(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},x{i}" for i in range(1005))
    path = _write(tmp_path, "v.csv", f"id,val\n{rows}\n".encode())
    batches = list(iter_batches(path, 100))
    assert [b.height for b in batches] == [100] * 10 + [5]
    assert pl.concat(batches)["id"].to_list() == [str(i) for i in range(1005)]


BAD: list[tuple[str, bytes, str]] = [
    ("empty.csv", b"", "empty"),
    ("blank.csv", b"\n\n  \n", "empty"),
    ("ragged_short.csv", f"a,b,c\n1,2,3\n{SECRET},5\n".encode(), "line 3: 2 fields"),
    ("ragged_long.csv", f"a,b\n1,2\n{SECRET},5,6\n".encode(), "line 3: 3 fields"),
    ("dup.csv", f"a,b,a\n{SECRET},2,3\n".encode(), "same name"),
    ("empty_name.csv", f"a,,c\n{SECRET},2,3\n".encode(), "empty name"),
    ("junk.csv", bytes(range(256)) * 40, "binary"),
    ("junk.bin", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "binary"),
    ("bad.parquet", b"PAR1" + SECRET.encode() + b"PAR1", "Parquet"),
    ("bad.jsonl", ('{"a": "' + SECRET + '"}\n{"a": \n').encode(), "JSON Lines"),
]


@pytest.mark.parametrize(("name", "data", "needle"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_without_values(
    tmp_path: Path, name: str, data: bytes, needle: str
) -> None:
    with pytest.raises(BadInput) as info:
        read_table(_write(tmp_path, name, data))
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert SECRET not in message
    assert message.startswith(name)
    assert info.value.exit_code == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file"):
        read_table(tmp_path / "nope.csv")


def test_batch_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(BadInput):
        list(iter_batches(_write(tmp_path, "v.csv", b"a\n1\n"), 0))


_cell = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(min_value=1, max_value=5).flatmap(
        lambda w: st.tuples(
            st.lists(
                st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
                min_size=w,
                max_size=w,
                unique=True,
            ),
            st.lists(st.lists(_cell, min_size=w, max_size=w), min_size=1, max_size=20),
        )
    ),
    st.sampled_from([",", "\t", ";", "|"]),
)
def test_round_trip_through_csv_writer(
    table: tuple[list[str], list[list[str]]], delimiter: str
) -> None:
    header, rows = table
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(header)
    writer.writerows(rows)
    df = read_delimited(buf.getvalue().encode("utf-8"), label="t.csv")
    assert df.columns == header
    got = [[v if v is not None else "" for v in row] for row in df.rows()]
    assert got == rows


def test_classify_without_a_vault_is_a_local_dry_run(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from flows.cli import main

    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "no-vault-here"))
    data = tmp_path / "people.csv"
    data.write_text("email,party\nann@example.org,DEM\nbob@example.org,REP\n")
    assert main(["classify", str(data), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {c["name"]: c["handling"] for c in out["columns"]} == {"email": "encrypt",
                                                                  "party": "encrypt"}
    assert not (tmp_path / "no-vault-here").exists()  # nothing stored, no home created
