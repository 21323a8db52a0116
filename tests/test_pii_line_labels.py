"""Labels from the shape of a span's line (``vault.pii.relabel``), on made-up text.

Each rule has a negative: the same words where the shape says a person stays a person.
"""

from __future__ import annotations

from vault.pii.freetext import find_spans
from vault.pii.relabel import line_label, town_labels


def _label(text: str, value: str, entity: str = "PERSON") -> str | None:
    start = text.index(value)
    return line_label(text, start, start + len(value), entity)


def test_name_after_a_street_word_or_house_number_is_the_street() -> None:
    assert _label("Please send it to 14, rue Ostravel", "Ostravel") == "US_STREET_ADDRESS"
    assert _label("I live on ulica Velbrunska 12", "Velbrunska") == "US_STREET_ADDRESS"
    assert _label("Deliver to 35 Ilvara Harbor", "Ilvara Harbor") == "US_STREET_ADDRESS"
    assert _label("Flat 2 88 Ostrova Views\nApt. 4", "Ostrova Views") == "US_STREET_ADDRESS"


def test_year_before_a_name_is_no_house_number() -> None:
    assert _label("In 2019 Maria Lopez joined the board", "Maria Lopez") == "PERSON"
    assert _label("Maria Lopez, 34, joined the board", "Maria Lopez") == "PERSON"


def test_word_with_a_street_suffix_before_a_number_is_a_street() -> None:
    assert _label("The shop is on Tornevej 18, north side", "Tornevej") == "US_STREET_ADDRESS"
    assert _label("Halmi-Platz 12", "Halmi") == "US_STREET_ADDRESS"
    assert _label("Ask Tornevej about it", "Tornevej") == "PERSON"  # no house number


def test_faker_shaped_town_names_are_places() -> None:
    assert _label("The team moved to Jenniferbury.", "Jenniferbury") == "LOCATION"
    assert _label("Offices in West Paul and beyond", "West Paul",
                  "ORGANIZATION") == "LOCATION"
    assert _label("We met Paul West yesterday", "Paul West") == "PERSON"
    assert _label("We met Jennifer yesterday", "Jennifer") == "PERSON"


def test_after_in_a_person_label_is_a_place_unless_a_full_listed_name() -> None:
    assert _label("The memorandum was signed in Velbruna.", "Velbruna") == "LOCATION"
    assert _label("She confides in Maria Lopez.", "Maria Lopez") == "PERSON"


def test_day_and_month_taken_for_a_street_is_a_date() -> None:
    text = "Login at 16 July 1998 from the lab"
    assert _label(text, "16 July 1998", "US_STREET_ADDRESS") == "DATE_TIME"
    assert _label("at 16 July Street", "16 July Street", "US_STREET_ADDRESS") \
        == "US_STREET_ADDRESS"


def test_form_field_names_are_not_redacted_but_names_in_a_chat_are() -> None:
    assert _label("Name: Ana Ruiz\nPhone: 555 0134", "Phone") is None
    assert _label("> Address: 12 Elm Street", "Address", "ORGANIZATION") is None
    assert _label("Rose: see you at noon", "Rose") == "PERSON"


def test_words_before_a_legal_form_are_the_company() -> None:
    assert _label("Reports to Holm Lindqvist AB in the fall", "Holm Lindqvist") \
        == "ORGANIZATION"
    assert _label("From Bellini, Iacovelli e Doglio s.r.l. today", "Iacovelli",
                  "LOCATION") == "ORGANIZATION"
    text = "Eduardo Pham, Administrator, Holm AB"
    assert _label(text, "Eduardo Pham") == "PERSON"


def test_two_surnames_joined_are_a_firm_but_not_given_names_or_after_an_honorific() -> None:
    assert _label("She is from Ortiz & Okonkwo", "Ortiz & Okonkwo") == "ORGANIZATION"
    assert _label("Sent by Walters-Okonkwo", "Walters-Okonkwo") == "ORGANIZATION"
    assert _label("Ana & Maria came", "Ana & Maria") == "PERSON"
    assert _label("Dr. Walters-Okonkwo came", "Walters-Okonkwo") == "PERSON"


def _towns(text: str, spans: list[tuple[str, str]]) -> list[str]:
    located = [(text.index(v), text.index(v) + len(v), e) for v, e in spans]
    return town_labels(text, sorted(located))


def test_name_after_a_street_or_before_a_postcode_is_a_town() -> None:
    text = "12 Elm Road, Velbruna"
    assert _towns(text, [("12 Elm Road", "US_STREET_ADDRESS"), ("Velbruna", "PERSON")]) \
        == ["US_STREET_ADDRESS", "LOCATION"]
    assert _towns("Ship to Velbruna 2684.", [("Velbruna", "PERSON")]) == ["LOCATION"]
    assert _towns("Ship to Velbruna 1998.", [("Velbruna", "PERSON")]) == ["PERSON"]
    assert _towns("Dupont-sur-Loire", [("Dupont", "PERSON")]) == ["LOCATION"]


def test_one_word_and_a_street_is_a_corner() -> None:
    text = "Return it to Ostrova and Tornevej 15 please"
    assert _towns(text, [("Ostrova", "PERSON"), ("Tornevej 15", "US_STREET_ADDRESS")]) \
        == ["US_STREET_ADDRESS", "US_STREET_ADDRESS"]
    text = "Maria Lopez and 12 Elm Road"
    assert _towns(text, [("Maria Lopez", "PERSON"), ("12 Elm Road", "US_STREET_ADDRESS")]) \
        == ["PERSON", "US_STREET_ADDRESS"]


def test_end_to_end_a_foreign_street_line_is_not_a_person() -> None:
    text = "Please send the parcel to Travessa Ilvara Moutinho, 23 before Friday."
    (spans,) = find_spans([text])
    labels = {s.entity for s in spans if "Ilvara" in text[s.start : s.end]}
    assert labels and "PERSON" not in labels


def test_via_as_a_preposition_is_no_street() -> None:
    assert _label("We reached them via Maria Lopez", "Maria Lopez") == "PERSON"
    assert _label("Ufficio in Via Ostravel 12", "Ostravel") == "US_STREET_ADDRESS"


def test_after_in_a_possessive_or_a_given_name_stays_a_person() -> None:
    assert _label("the poems in Hedda Okonkwo's book", "Hedda Okonkwo's") == "PERSON"
    assert _label("a part in Maria Velbrunska", "Maria Velbrunska") == "PERSON"


def test_three_surnames_in_a_list_are_a_firm() -> None:
    text = "After the audit, Nowak, Ostrova and Holmqvist moved their offices."
    for name in ("Nowak", "Ostrova", "Holmqvist"):
        assert _label(text, name) == "ORGANIZATION"
    assert _label("Yours,\nkowalski, nowak and lindqvist\n12 Elm Street", "nowak") \
        == "ORGANIZATION"
    # negatives: a list a colon introduces, a name that runs on, mixed case
    assert _label("Our founders: Kowalski, Nowak and Lindqvist", "Nowak") == "PERSON"
    assert _label("I met Kowalski, Nowak and Maria Lindqvist", "Nowak") == "PERSON"
    assert _label("I met kowalski, Nowak and Lindqvist", "Nowak") == "PERSON"
    assert _label("After the audit, Ostrova, Velbrun and Zelvarin left", "Velbrun") \
        == "PERSON"  # fewer than two listed surnames


def _labels(text: str, spans: list[tuple[str, str]]) -> list[str]:
    found = sorted((text.index(v), text.index(v) + len(v), e) for v, e in spans)
    return town_labels(text, found)


def test_a_name_line_between_a_person_and_the_address_is_the_company() -> None:
    text = "Regards,\n> Ana Okafor\n> Velbrunix\n> 14 Elm Street\n> Dunmore"
    got = _labels(text, [("Ana Okafor", "PERSON"), ("Velbrunix", "PERSON"),
                         ("14 Elm Street", "US_STREET_ADDRESS")])
    assert got[1] == "ORGANIZATION"
    text = "Ana Okafor\nHolm-Ostrova\n\n88 Birch Lane"
    assert _labels(text, [("Ana Okafor", "PERSON"), ("Holm-Ostrova", "PERSON")])[1] \
        == "ORGANIZATION"
    # negatives: two addressees (a listed given name), no address after, no name before
    text = "Ana Okafor\nMaria Lindqvist\n14 Elm Street"
    assert _labels(text, [("Ana Okafor", "PERSON"), ("Maria Lindqvist", "PERSON"),
                          ("14 Elm Street", "US_STREET_ADDRESS")])[1] == "PERSON"
    text = "Ana Okafor\nVelbrunix\nsee you soon"
    assert _labels(text, [("Ana Okafor", "PERSON"), ("Velbrunix", "PERSON")])[1] == "PERSON"
    text = "Thanks!\nVelbrunix\n14 Elm Street"
    assert _labels(text, [("Velbrunix", "PERSON"),
                          ("14 Elm Street", "US_STREET_ADDRESS")])[0] == "PERSON"


_WORDS = frozenset({"senior", "loan", "officer", "herpetologist", "radio", "producer",
                    "software", "engineer"})


def test_a_company_shaped_title_line_is_the_company() -> None:
    text = "Ana Okafor\nVelbrunix\nMaria Lindqvist"
    found = [(0, 10, "PERSON"), (11, 20, "TITLE"), (21, 36, "PERSON")]
    assert town_labels(text, found, _WORDS)[1] == "ORGANIZATION"
    text = "Ana Okafor\nHolm & Ostrova\nMaria Lindqvist"
    found = [(0, 10, "PERSON"), (11, 25, "TITLE"), (26, 41, "PERSON")]
    assert town_labels(text, found, _WORDS)[1] == "ORGANIZATION"
    # negatives: English words are a job title; an all-caps acronym stays a title
    for title in ("Herpetologist", "Senior loan officer", "CEO"):
        text = f"Ana Okafor\n{title}\nMaria Lindqvist"
        found = [(0, 10, "PERSON"), (11, 11 + len(title), "TITLE"),
                 (12 + len(title), 27 + len(title), "PERSON")]
        assert town_labels(text, found, _WORDS)[1] == "TITLE"


def test_a_capitalised_word_before_a_job_noun_starts_a_title() -> None:
    text = "Ana Okafor works as a Radio producer in town."
    assert _labels(text, [("Ana Okafor", "PERSON"), ("Radio", "ORGANIZATION")])[1] == "TITLE"
    text = "Ana Okafor, Software engineer at Velbrunix."
    assert _labels(text, [("Ana Okafor", "PERSON"), ("Software", "ORGANIZATION")])[1] \
        == "TITLE"
    # negatives: no job noun after, or no "as a" / person before
    text = "Ana Okafor works at Velbrunix today."
    assert _labels(text, [("Ana Okafor", "PERSON"), ("Velbrunix", "ORGANIZATION")])[1] \
        == "ORGANIZATION"
    text = "The Velbrunix engineer came by."
    assert _labels(text, [("Velbrunix", "ORGANIZATION")])[0] == "ORGANIZATION"


def test_a_name_before_a_house_number_and_the_end_of_the_address_is_the_street() -> None:
    assert _label("Please drive me to Velbrunska 775", "Velbrunska") == "US_STREET_ADDRESS"
    assert _label("Send it to Quadra Ostrova, 41, Dunmore", "Quadra Ostrova") \
        == "US_STREET_ADDRESS"
    assert _label("We meet on Holmvika 12.", "Holmvika 12", "ORGANIZATION") \
        == "US_STREET_ADDRESS"
    assert _label("Ostrovagatan 9 Apt. 4", "Ostrovagatan") == "US_STREET_ADDRESS"
    # negatives: an age in apposition, a listed given name first, a year, no number
    assert _label("Okafor, 34, joined the board", "Okafor") == "PERSON"
    assert _label("Please call Maria Lindqvist 12", "Maria Lindqvist") == "PERSON"
    assert _label("It was Velbrunska 1998.", "Velbrunska") == "PERSON"
    assert _label("Please drive me to Velbrunska now", "Velbrunska") == "PERSON"


def test_a_capitalised_job_noun_after_as_a_or_a_person_is_a_title() -> None:
    text = "Ana Okafor works as a Surveyor and cycles to work."
    assert _labels(text, [("Ana Okafor", "PERSON"), ("Surveyor", "ORGANIZATION")])[1] \
        == "TITLE"
    text = "Ana Okafor, Geologist, Velbrunix Ltd"
    assert _labels(text, [("Ana Okafor", "PERSON"), ("Geologist", "ORGANIZATION")])[1] \
        == "TITLE"
    # negative: an employer is no job noun
    text = "Ana Okafor, Velbrunix, 12 Elm Street"
    assert _labels(text, [("Ana Okafor", "PERSON"), ("Velbrunix", "ORGANIZATION")])[1] \
        == "ORGANIZATION"


def test_after_a_job_title_and_at_is_the_employer() -> None:
    text = "Kai Holm, Retail manager at Ostrovaks."
    assert _labels(text, [("Kai Holm", "PERSON"), ("Ostrovaks", "PERSON")])[1] \
        == "ORGANIZATION"
    text = "Kai Holm, Herpetologist at Velbrun Holm."
    assert _labels(text, [("Kai Holm", "PERSON"), ("Velbrun Holm", "LOCATION")])[1] \
        == "ORGANIZATION"
    # negatives: no job before "at"
    text = "Kai Holm, waiting at Ostrovaks."
    assert _labels(text, [("Kai Holm", "PERSON"), ("Ostrovaks", "PERSON")])[1] == "PERSON"


def test_a_name_line_between_address_lines_is_the_town() -> None:
    text = "Ana Okafor\n14 Elm Street\nApt. 4\nVelbruna\nNorway 0150"
    spans = [("Ana Okafor", "PERSON"), ("14 Elm Street", "US_STREET_ADDRESS"),
             ("Apt. 4", "US_STREET_ADDRESS"), ("Velbruna", "PERSON"), ("Norway", "LOCATION")]
    assert _labels(text, spans)[3] == "LOCATION"
    # negative: the addressee above the street is no town
    assert _labels(text, spans)[0] == "PERSON"


def test_a_number_taken_for_a_date_next_to_a_street_is_the_house_number() -> None:
    text = "Deliver to Ostrovagatan 46-65, Velbruna"
    assert _labels(text, [("Ostrovagatan", "US_STREET_ADDRESS"), ("46-65", "DATE_TIME")])[1] \
        == "US_STREET_ADDRESS"
    text = "Ana Okafor, 94, rue Velbrun, Dunmore"
    assert _labels(text, [("Ana Okafor", "PERSON"), ("94", "DATE_TIME")])[1] \
        == "US_STREET_ADDRESS"
    # negatives: a year after a street, a date elsewhere
    text = "Ostrovagatan, 1998"
    assert _labels(text, [("Ostrovagatan", "US_STREET_ADDRESS"), ("1998", "DATE_TIME")])[1] \
        == "DATE_TIME"
    text = "We met on 5/4 at noon"
    assert _labels(text, [("5/4", "DATE_TIME")])[0] == "DATE_TIME"


def test_after_a_verb_of_moving_and_to_is_a_place() -> None:
    text = "In spring the firm moved its archive to Velbruna."
    assert _label(text, "Velbruna", "ORGANIZATION") == "LOCATION"
    assert _label("They relocated to Ostrava last year", "Ostrava") == "LOCATION"
    # negatives: a listed given name, no verb of moving, another clause
    assert _label("She moved the box to Maria Lindqvist.", "Maria Lindqvist") == "PERSON"
    assert _label("I wrote to Velbruna yesterday.", "Velbruna") == "PERSON"
    assert _label("We moved on. Then I talked to Velbruna.", "Velbruna") == "PERSON"
