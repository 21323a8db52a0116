"""Canvass-note recognizers (``vault.pii.notes``) on made-up text, each with a negative case."""

from __future__ import annotations

import pytest

from vault.pii.freetext import find_spans


def _found(text: str) -> list[tuple[str, str]]:
    (spans,) = find_spans([text])
    return [(text[s.start : s.end], s.entity) for s in spans]


def _has(text: str, piece: str, entity: str) -> bool:
    return any(piece in got and ent == entity for got, ent in _found(text))


@pytest.mark.parametrize("phone", [
    "919/555-0134", "(919) 555-0134", "919.555.0134", "919 555 0134", "+1 919 555 0134",
    "+1-919-555-0134", "1-919-555-0134", "9195550134", "555-0134",
])
def test_every_us_phone_shape(phone: str) -> None:
    assert _has(f"left voicemail, best # {phone} after 5", phone, "PHONE_NUMBER")


def test_numbers_that_are_not_phones() -> None:
    got = _found("precinct 1999-2004 turnout was 45.5 percent, 12 doors knocked")
    assert not [g for g in got if g[1] == "PHONE_NUMBER"]


@pytest.mark.parametrize("date", ["3/14", "3/14/25", "03/14/2025", "Mar 3", "april 9th",
                                  "Tue 5/6", "2025-03-14"])
def test_date_shapes(date: str) -> None:
    assert _has(f"come back {date} after work", date, "DATE_TIME")


def test_vague_dates_are_not_redacted() -> None:
    got = _found("we will come back next week, maybe this month")
    assert not [g for g in got if g[1] == "DATE_TIME"]


@pytest.mark.parametrize("street", ["412 oak st", "1520 w main street apt 3", "77 NE 14th Ave",
                                    "9 elm ct #4b"])
def test_street_lines_in_any_case(street: str) -> None:
    assert _has(f"talked to them at {street}, yard sign", street.split()[0], "US_STREET_ADDRESS")


def test_durations_are_not_streets() -> None:
    got = _found("it is a 10 minute drive and 3 kids live there")
    assert not [g for g in got if g[1] == "US_STREET_ADDRESS"]


def test_lower_case_names() -> None:
    assert _has("talked to maria gonzalez about roads", "maria gonzalez", "PERSON")
    assert _has("husband tomasz is undecided", "tomasz", "PERSON")
    assert _has("ilkka said come back later", "ilkka", "PERSON")
    assert _has("mrs okafor wants a sign", "mrs okafor", "PERSON")
    assert not [g for g in _found("left lit at the door, strong support, will call")
                if g[1] == "PERSON"]


def test_ages_in_notes() -> None:
    assert _has("Grandma Rosa (84) needs a ride", "84", "AGE")
    assert _has("she is 67 and votes by mail", "67", "AGE")
    assert not [g for g in _found("item (12) on the list") if g[1] == "AGE"]


def test_town_between_street_and_zip() -> None:
    assert _has("family at 12 elm st lake vincent 79975, 3 voters", "lake vincent", "LOCATION")


def test_people_listed_together() -> None:
    text = "Our three founders: Lindgren, Michael and Whitaker started it."
    assert all(_has(text, w, "PERSON") for w in ("Lindgren", "Michael", "Whitaker"))
    assert not [g for g in _found("We sell Apples, Pears and Plums at the market.")
                if g[1] == "PERSON"]


def test_military_post_addresses_in_any_case() -> None:
    assert _has("send it to uscgc harlow\nfpo ae 09467 please", "uscgc", "US_STREET_ADDRESS")
    assert _has("PSC 3117, Box 4402\nAPO AA 34021", "PSC 3117", "US_STREET_ADDRESS")


def test_lower_case_names_introduced_with_an_initial_or_listed() -> None:
    assert _has("hi, my name is talita and I vote here", "talita", "PERSON")
    assert _has("everyone calls me bruno", "bruno", "PERSON")
    assert _has("follow up with daniel k brenner next month", "daniel k brenner", "PERSON")
    text = "their kids: marta, jonas, elif and tomas"
    assert all(_has(text, w, "PERSON") for w in ("marta", "jonas", "elif", "tomas"))
    for text in ("please call me back later", "they play rock and roll all night",
                 "my friend lives near the school", "we need eggs, milk, bread and butter"):
        assert not [g for g in _found(text) if g[1] == "PERSON"], text


def test_partners_listed_after_the_or_at_are_one_firm() -> None:
    text = "She spent a year at Keller, Brandt and Ruiz as a clerk."
    assert _has(text, "Keller, Brandt and Ruiz", "ORGANIZATION")
    assert _has("The Oduya, Brandt and Ruiz Quartet played.", "Oduya, Brandt and Ruiz Quartet",
                "ORGANIZATION")
