"""Rows are not people: multi-row files ingest with the right number of people.

Synthetic files only (names like ``Donor 7``), shaped like an FEC Schedule A
export (many contributions per donor, no id column) and a VAN contact export
(``Voter File VANID``, voters contacted several times, a household e-mail).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from vault import identity
from vault.identity import (
    NAME_ADDRESS,
    DigestResolver,
    IdentityPlan,
    plan_identity,
    pseudonyms,
    resolve,
)


@dataclass(frozen=True)
class C:  # the two fields of ColumnClass identity planning reads
    name: str
    entity: str


def test_shared_household_email_never_merges_two_voter_ids() -> None:
    frame = pl.DataFrame({
        "vanid": ["101", "102", "101", None, None, None],
        "email": ["home@example.org", "HOME@example.org ", "home@example.org",
                  "home@example.org", "solo@example.org", None],
    })
    plan = plan_identity([C("vanid", "VOTER_ID"), C("email", "EMAIL_ADDRESS")])
    keys, report = resolve(frame, plan)
    assert keys[0] == keys[2] != keys[1]  # spouses: two people, whatever e-mail they share
    assert keys[3] not in (keys[0], keys[1])  # e-mail only, two owners: ambiguous, not merged
    assert report.ambiguous == 1 and report.shared_not_merged == 1
    assert report.without_identifier == 1  # the last row: a person of its own
    assert report.people == 5  # 101, 102, the ambiguous row, solo@, the anonymous row


def test_weaker_id_links_to_its_one_stronger_person() -> None:
    frame = pl.DataFrame({"vanid": ["7", None], "phone": ["(919) 555-0101", "919.555.0101"]})
    keys, report = resolve(frame, plan_identity([C("vanid", "VOTER_ID"),
                                                 C("phone", "PHONE_NUMBER")]))
    assert keys[0] == keys[1] and report.linked == 1 and report.people == 1


def test_declared_person_key_comes_first() -> None:
    plan = plan_identity([C("email", "EMAIL_ADDRESS"), C("member", "UNKNOWN")], ("member",))
    assert plan.kinds == ["DECLARED", "EMAIL_ADDRESS"]


def _fec(n_donors: int = 60, per_donor: int = 5) -> pl.DataFrame:
    names, streets, cities, zips, amounts, dates = [], [], [], [], [], []
    for d in range(n_donors):
        for j in range(per_donor):
            # the same donor written differently across filings: case, commas, ZIP+4
            name = f"DONOR{d}, ALEX" if j % 2 == 0 else f"Donor{d} , Alex"
            names.append(name)
            streets.append(f"{100 + d} Maple St" if j % 2 == 0 else f"{100 + d} MAPLE ST.")
            cities.append("Durham")
            zips.append(f"277{d % 100:02d}" if j % 2 == 0 else f"277{d % 100:02d}-1234")
            amounts.append(25 * (j + 1))
            dates.append(f"2024-0{1 + j % 9}-15")
    return pl.DataFrame({
        "contributor_name": names, "contributor_street_1": streets, "contributor_city": cities,
        "contributor_zip": zips, "contribution_receipt_amount": amounts,
        "contribution_receipt_date": dates,
    })


def _van(voters: int = 80) -> tuple[pl.DataFrame, int]:
    rows: dict[str, list[object]] = {"Voter File VANID": [], "First Name": [], "Last Name": [],
                                     "Email": [], "Contact Date": [], "Result": []}
    for v in range(voters):
        times = 3 if v % 4 == 0 else 1  # some voters were contacted three times
        for t in range(times):
            rows["Voter File VANID"].append(str(900000 + v))
            rows["First Name"].append(f"Vo{v}")
            rows["Last Name"].append("Ter")
            # voters 1 and 2 are spouses sharing one household e-mail
            rows["Email"].append("house@example.org" if v in (1, 2) else f"v{v}@example.org")
            rows["Contact Date"].append(f"2024-10-{10 + t:02d}")
            rows["Result"].append(("Canvassed", "Not Home", "Refused")[t])
    return pl.DataFrame(rows), voters


POLICY_TAIL = """
[datasets.fec.privacy_unit]
rows_per_person = 10

[datasets.van.privacy_unit]
person_key = "Voter File VANID"
rows_per_person = 3
"""


@pytest.fixture
def home_engine(db_url: str, tmp_path: Path) -> tuple[object, Engine]:
    from policies.load import default_policy_text
    from vault.db import make_engine
    from vault.home import VaultHome
    from vault.setup import init_home

    home = VaultHome(tmp_path / "home", db_url_override=db_url)
    init_home(home)
    home.policy_path.write_text(default_policy_text() + POLICY_TAIL, encoding="utf-8")
    return home, make_engine(home.db_url)


def test_fec_style_donor_file_has_sixty_people(
    home_engine: tuple[object, Engine], tmp_path: Path
) -> None:
    from vault.access import authenticate
    from vault.home import VaultHome
    from vault.ingest import ingest_path

    home, engine = home_engine
    assert isinstance(home, VaultHome)
    path = tmp_path / "schedule_a.csv"
    _fec().write_csv(path)
    report = ingest_path(engine, home, authenticate(engine, home, None), path, "fec")
    assert report.rows_added == 300  # every contribution is kept...
    assert report.people == 60  # ...and they are 60 people (normalised name + address)
    assert report.identity is not None
    assert report.identity["by_kind"] == {NAME_ADDRESS: 300}
    engine.dispose()


def test_van_style_contact_file_counts_voters_not_contacts(
    home_engine: tuple[object, Engine], tmp_path: Path
) -> None:
    from vault.access import authenticate
    from vault.home import VaultHome
    from vault.ingest import ingest_path

    home, engine = home_engine
    assert isinstance(home, VaultHome)
    frame, voters = _van()
    path = tmp_path / "contacts.csv"
    frame.write_csv(path)
    report = ingest_path(engine, home, authenticate(engine, home, None), path, "van")
    assert report.rows_added == frame.height  # no contact dropped, no spouse dropped
    assert report.duplicates_skipped == 0
    assert report.people == voters  # 80 voters, 120 contacts
    assert report.identity is not None and report.identity["shared_not_merged"] == 1
    engine.dispose()


def test_release_on_ingested_contacts_is_person_level(
    home_engine: tuple[object, Engine], tmp_path: Path
) -> None:
    """The stored pseudonyms reach the release: the unit is a person, bound k = 3."""
    from fractions import Fraction

    from vault.access import authenticate
    from vault.dp import ReleaseRequest, run_release
    from vault.home import VaultHome
    from vault.ingest import ingest_path
    from vault.principals import add_principal

    home, engine = home_engine
    assert isinstance(home, VaultHome)
    frame, _ = _van()
    path = tmp_path / "contacts.csv"
    frame.write_csv(path)
    ingest_path(engine, home, authenticate(engine, home, None), path, "van")
    with engine.begin() as conn:
        add_principal(conn, "alice", "analyst")
    from dp_helpers import ALICE

    res = run_release(engine, home, ALICE,  # the installed policy: default + POLICY_TAIL
                      ReleaseRequest.build("van", [], ["count"], Fraction("0.5")))
    unit = res.to_json()["accuracy"]["privacy_unit"]
    assert (unit["unit"], unit["rows_per_person"]) == ("person", 3)
    # 80 voters, at most 3 rows each kept: the count is of rows, bounded per person
    assert abs(res.rows[0]["count"] - frame.height) < 60
    engine.dispose()


def _by_digests(frame: pl.DataFrame, plan: IdentityPlan, key: bytes,
                cuts: list[int]) -> tuple[list[str], dict[str, object]]:
    # persons read back 7 rows at a time (a million in use): links land in every window
    with DigestResolver(key, plan) as resolver, mock.patch.object(identity, "_WINDOW", 7):
        bounds = [0, *sorted(c % (frame.height + 1) for c in cuts), frame.height]
        for a, b in itertools.pairwise(bounds):
            resolver.add(frame.slice(a, b - a))
        people, report = resolver.resolve()
    got = pseudonyms(key, people.batch(0, frame.height)).to_list()
    return got, report.to_json()


_POOL = st.sampled_from([None, "", "1", "2", "3", "a@x.org", "A@x.org ", "b@x.org",
                         "(919) 555-0101", "919.555.0101", "919 555 0102"])


@given(st.lists(st.tuples(_POOL, _POOL, _POOL, _POOL), min_size=0, max_size=40),
       st.lists(st.integers(min_value=0, max_value=40), max_size=4))
@settings(max_examples=150, deadline=None)
def test_digest_resolution_is_the_in_memory_rule(rows: list[tuple[str | None, ...]],
                                                 cuts: list[int]) -> None:
    """Bounded-memory resolution over keyed digests, fed in any batch split, gives each
    row exactly the pseudonym of its in-memory person key, and the same counts."""
    frame = pl.DataFrame(rows, schema={"vanid": pl.String, "ssn": pl.String,
                                       "email": pl.String, "phone": pl.String}, orient="row")
    plan = plan_identity([C("vanid", "VOTER_ID"), C("ssn", "US_SSN"),
                          C("email", "EMAIL_ADDRESS"), C("phone", "PHONE_NUMBER")])
    key = b"k" * 32
    keys, report = resolve(frame, plan)
    want = pseudonyms(key, keys).to_list()
    got, got_report = _by_digests(frame, plan, key, cuts)
    anonymous = [k.startswith("ROW:") for k in keys.to_list()]
    assert [g for g, a in zip(got, anonymous, strict=True) if not a] == \
        [w for w, a in zip(want, anonymous, strict=True) if not a]
    anon = [g for g, a in zip(got, anonymous, strict=True) if a]
    identified = {g for g, a in zip(got, anonymous, strict=True) if not a}
    assert len(set(anon)) == len(anon) and not set(anon) & identified  # each its own person
    assert got_report == report.to_json()


def test_digest_resolution_of_names_and_addresses() -> None:
    frame = _fec(n_donors=12, per_donor=3)
    plan = plan_identity([C("contributor_name", "PERSON"),
                          C("contributor_street_1", "US_STREET_ADDRESS"),
                          C("contributor_zip", "US_ZIP_CODE")])
    keys, report = resolve(frame, plan)
    got, got_report = _by_digests(frame, plan, b"q" * 32, [5, 17])
    assert got == pseudonyms(b"q" * 32, keys).to_list()
    assert got_report == report.to_json() and report.people == 12


def test_resolved_people_live_in_an_unnamed_file_and_ship_as_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resolved pseudonyms are read batch by batch from a temporary file nobody can
    open by name (none is left in the temporary folder, however the process ends); a part
    of them (what a Dask worker gets) is in memory and pickles with its rows only."""
    import pickle
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    frame = pl.DataFrame({"vanid": [str(i % 7) if i % 5 else None for i in range(40)],
                          "email": [f"p{i % 9}@example.org" for i in range(40)]})
    plan = plan_identity([C("vanid", "VOTER_ID"), C("email", "EMAIL_ADDRESS")])
    with DigestResolver(b"u" * 32, plan) as resolver:
        for at in range(0, 40, 16):
            resolver.add(frame.slice(at, 16))
        assert {p.name for p in tmp_path.iterdir()} != set()  # the resolver's own folder
        people, _ = resolver.resolve()
    assert list(tmp_path.iterdir()) == []  # folder gone; the result's file has no name
    whole = people.batch(0, 40).to_list()
    assert len(people) == 40 and len(set(whole)) > 1
    assert people.batch(16, 16).to_list() == whole[16:32]
    assert people.batch(32, 16).to_list() == whole[32:]  # the end: fewer rows
    assert people.batch(40, 16).to_list() == []
    part = pickle.loads(pickle.dumps(people.part(8, 24)))
    assert len(part) == 24 and part.batch(0, 24).to_list() == whole[8:32]
    again = pickle.loads(pickle.dumps(people))  # the whole of them, as rows
    assert again.batch(0, 40).to_list() == whole
    people.close()
