"""Synthetic canvass notes with gold spans, for evaluating free-text detection.

A *template* is a note with slots, ``"talked to {name_lc} at {street_lc}"``; each
slot draws a fake value (Faker, seeded) and, when it is PII, records a gold span
labelled like presidio-research's synthetic set (``PERSON``, ``STREET_ADDRESS``,
``GPE``, ``ZIP_CODE``, ``PHONE_NUMBER``, ``DATE_TIME``, ``EMAIL_ADDRESS``, ``AGE``,
``ORGANIZATION``), so :func:`vault.pii.evaluation.score_spans` scores both sets
alike. Records have the presidio set's shape: ``full_text``, ``spans``
(``entity_type``, ``entity_value``, ``start_position``, ``end_position``) and
``template_id``.

Two template sets, never mixed:

* :data:`vault.pii.corpus_heldout.TEMPLATES`: the **held-out** canvass notes. They
  were written and committed before any detection rule was tuned against them, and
  rules are never tuned by reading their per-template failures: only the overall
  figure is reported (``bench/pii.py --heldout``).
* :data:`DEV_TEMPLATES` (below): separate development notes, written apart from the
  held-out ones, on which rules may be tuned.

What the slots draw on purpose: lower-case names and addresses, names from many
locales (Spanish, Portuguese, Vietnamese, Polish, Nigerian, Indian, Chinese and
Japanese romanised, Turkish, ...), every common US phone shape (``aaa/bbb-cccc``,
``bbb-cccc``, ``(aaa) bbb-cccc``, ``aaa.bbb.cccc``, ``+1 aaa bbb cccc``, ...),
dates written ``m/d``, ``m/d/yy``, ``m/d/yyyy``, ``Mar 3``, ISO, and apartment or
unit numbers. Names come from Faker, whose lists our name recognizer also uses:
the name figures are optimistic for names that are in no Faker locale.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from faker import Faker

__all__ = ["DEV_TEMPLATES", "DEV_TEMPLATES_2", "SLOTS", "Slots", "fill", "generate_notes"]

Gen = Callable[[Faker, random.Random], str]

_LATIN_LOCALES = (
    "es_MX", "es_CO", "pt_BR", "vi_VN", "pl_PL", "it_IT", "de_DE", "fr_FR", "tr_TR",
    "nl_NL", "ro_RO", "hu_HU", "cs_CZ", "en_IN", "en_NG", "yo_NG", "ig_NG", "en_PK",
    "id_ID", "sw", "en_KE", "fi_FI", "ga_IE",
)
_ROMANISED = ("zh_CN", "ja_JP")
_FAKERS: dict[tuple[str, int], Faker] = {}


def _faker(locale: str, seed: int) -> Faker:
    key = (locale, seed)
    fake = _FAKERS.get(key)
    if fake is None:
        fake = Faker(locale)
        fake.seed_instance(seed)
        _FAKERS[key] = fake
    return fake


def _latin(text: str) -> bool:
    return all(
        not ch.isalpha() or "LATIN" in unicodedata.name(ch, "") for ch in text
    )


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _person_parts(fake: Faker, rnd: random.Random) -> tuple[str, str]:
    """(given, family): 40% en_US, the rest from other locales, Latin script only."""
    seed = rnd.randrange(1 << 30)
    for _ in range(20):
        roll = rnd.random()
        if roll < 0.4:
            src = _faker("en_US", seed)
            first, last = src.first_name(), src.last_name()
        elif roll < 0.5:
            src = _faker(rnd.choice(_ROMANISED), seed)
            first, last = src.first_romanized_name(), src.last_romanized_name()
        else:
            src = _faker(rnd.choice(_LATIN_LOCALES), seed)
            first, last = src.first_name(), src.last_name()
        if rnd.random() < 0.5:  # people type without diacritics
            first, last = _ascii(first), _ascii(last)
        if first and last and _latin(first + last):
            return first, last
    return "Ana", "Ruiz"


def _name(fake: Faker, rnd: random.Random) -> str:
    first, last = _person_parts(fake, rnd)
    return f"{first} {last}"


def _street(fake: Faker, rnd: random.Random) -> str:
    number = str(rnd.choice([rnd.randint(1, 99), rnd.randint(100, 9999), rnd.randint(10000,
                                                                                      29999)]))
    direction = rnd.choice(["", "", "", "N ", "S ", "E ", "W ", "NE "])
    name = rnd.choice([fake.last_name(), fake.street_name().split()[0],
                       rnd.choice(["Main", "Oak", "Maple", "Park", "Cedar", "Elm", "Pine",
                                   "Washington", "Lake", "Hill", "2nd", "3rd", "5th", "14th"])])
    suffix = rnd.choice(["St", "St.", "Street", "Ave", "Ave.", "Avenue", "Rd", "Road", "Dr",
                         "Drive", "Ln", "Lane", "Blvd", "Ct", "Court", "Way", "Pl", "Cir",
                         "Pkwy", "Ter", "Trl"])
    return f"{number} {direction}{name} {suffix}"


def _apt(fake: Faker, rnd: random.Random) -> str:
    unit = rnd.choice([str(rnd.randint(1, 40)), f"{rnd.randint(1, 9)}{rnd.choice('ABCDEF')}",
                       f"{rnd.randint(1, 30)}{rnd.randint(0, 2)}{rnd.randint(1, 9)}",
                       rnd.choice("ABCDEFGH")])
    form = rnd.choice(["Apt {}", "Apt. {}", "apt {}", "#{}", "# {}", "Unit {}", "unit {}",
                       "Apartment {}", "apartment {}", "Ste {}", "Suite {}"])
    return form.format(unit)


def _street_apt(fake: Faker, rnd: random.Random) -> str:
    sep = rnd.choice([" ", ", ", " "])
    return _street(fake, rnd) + sep + _apt(fake, rnd)


def _phone(fake: Faker, rnd: random.Random) -> str:
    a = rnd.randint(201, 989)
    b = rnd.randint(200, 999)
    c = rnd.randint(0, 9999)
    shape = rnd.choice([
        "{a}-{b}-{c}", "({a}) {b}-{c}", "({a}){b}-{c}", "{a}.{b}.{c}", "{a}/{b}-{c}",
        "{a} {b} {c}", "{a}{b}{c}", "+1 {a} {b} {c}", "+1-{a}-{b}-{c}", "+1 ({a}) {b}-{c}",
        "1-{a}-{b}-{c}", "{b}-{c}", "{b}-{c}", "{b}.{c}", "+1{a}{b}{c}",
    ])
    return shape.format(a=a, b=b, c=f"{c:04d}")


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


def _date(fake: Faker, rnd: random.Random) -> str:
    d = fake.date_between("-2y", "+1y")
    shape = rnd.choice(["md", "md", "mdy2", "mdy4", "mon_d", "month_d", "month_dth", "iso",
                        "dow_md", "md_dash"])
    if shape == "md":
        return f"{d.month}/{d.day}"
    if shape == "mdy2":
        return f"{d.month}/{d.day}/{d.year % 100:02d}"
    if shape == "mdy4":
        return f"{d.month:02d}/{d.day:02d}/{d.year}"
    if shape == "mon_d":
        return f"{_MONTHS[d.month - 1][:3]} {d.day}"
    if shape == "month_d":
        return f"{_MONTHS[d.month - 1]} {d.day}"
    if shape == "month_dth":
        th = "th" if 10 < d.day < 14 else {1: "st", 2: "nd", 3: "rd"}.get(d.day % 10, "th")
        return f"{_MONTHS[d.month - 1]} {d.day}{th}"
    if shape == "iso":
        return d.isoformat()
    if shape == "dow_md":
        return f"{d.strftime('%a')} {d.month}/{d.day}"
    return f"{d.month}-{d.day}"


def _email(fake: Faker, rnd: random.Random) -> str:
    first, last = _person_parts(fake, rnd)
    user = rnd.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}{rnd.randint(1, 99)}",
                       f"{last}_{first}"]).lower()
    user = re.sub(r"[^a-z0-9._]", "", _ascii(user)) or "voter"
    return f"{user}@{rnd.choice(['gmail.com', 'yahoo.com', 'aol.com', 'hotmail.com', 'icloud.com', fake.domain_name()])}"  # noqa: E501


def _org(fake: Faker, rnd: random.Random) -> str:
    return rnd.choice([fake.company(), f"{fake.last_name()} Elementary",
                       f"{fake.city()} Memorial Hospital", f"{fake.last_name()} Hardware",
                       "Walmart", "Home Depot", "the post office", "Amazon"])


def _lower(gen: Gen) -> Gen:
    return lambda f, r: gen(f, r).lower()


def _pick(*options: str) -> Gen:
    return lambda f, r: r.choice(options)


#: slot -> (gold label or None, generator)
SLOTS: dict[str, tuple[str | None, Gen]] = {
    "name": ("PERSON", _name),
    "name_lc": ("PERSON", _lower(_name)),
    "first": ("PERSON", lambda f, r: _person_parts(f, r)[0]),
    "first_lc": ("PERSON", lambda f, r: _person_parts(f, r)[0].lower()),
    "last": ("PERSON", lambda f, r: _person_parts(f, r)[1]),
    "last_lc": ("PERSON", lambda f, r: _person_parts(f, r)[1].lower()),
    "mr_last": ("PERSON", lambda f, r: r.choice(["Mr.", "Mrs.", "Ms.", "mr", "mrs", "Dr."])
                + " " + _person_parts(f, r)[1]),
    "street": ("STREET_ADDRESS", _street),
    "street_lc": ("STREET_ADDRESS", _lower(_street)),
    "street_apt": ("STREET_ADDRESS", _street_apt),
    "street_apt_lc": ("STREET_ADDRESS", _lower(_street_apt)),
    "apt": ("STREET_ADDRESS", _apt),
    "city": ("GPE", lambda f, r: f.city()),
    "city_lc": ("GPE", lambda f, r: f.city().lower()),
    "zip": ("ZIP_CODE", lambda f, r: f.zipcode()),
    "phone": ("PHONE_NUMBER", _phone),
    "date": ("DATE_TIME", _date),
    "email": ("EMAIL_ADDRESS", _email),
    "age": ("AGE", lambda f, r: str(r.randint(18, 97))),
    "org": ("ORGANIZATION", _org),
    # not PII
    "issue": (None, _pick("school funding", "the bond measure", "property taxes", "roads",
                          "the library levy", "crime", "healthcare costs", "the new stadium",
                          "housing", "water rates", "early voting", "the recall")),
    "stance": (None, _pick("supportive", "strong yes", "leaning no", "undecided", "opposed",
                           "wants more info", "not interested", "soft support")),
    "time": (None, _pick("after 5", "mornings", "weekends", "evenings", "before noon")),
    "pron": (None, _pick("she", "he", "they")),
    "n": (None, lambda f, r: str(r.randint(2, 6))),
}

_SLOT_RE = re.compile(r"\{(\w+)\}")


Slots = dict[str, tuple[str | None, Gen]]


def fill(template: str, fake: Faker, rnd: random.Random,
         slots: Slots | None = None) -> tuple[str, list[dict[str, Any]]]:
    """One note from ``template`` and its gold spans (slots: :data:`SLOTS` by default)."""
    table = SLOTS if slots is None else slots
    out: list[str] = []
    spans: list[dict[str, Any]] = []
    pos = 0
    length = 0
    for m in _SLOT_RE.finditer(template):
        literal = template[pos : m.start()]
        out.append(literal)
        length += len(literal)
        label, gen = table[m.group(1)]
        value = gen(fake, rnd)
        if label is not None:
            spans.append({"entity_type": label, "entity_value": value,
                          "start_position": length, "end_position": length + len(value)})
        out.append(value)
        length += len(value)
        pos = m.end()
    out.append(template[pos:])
    return "".join(out), spans


def generate_notes(templates: tuple[str, ...], n: int, seed: int,
                   slots: Slots | None = None) -> list[dict[str, Any]]:
    """``n`` notes, templates taken in turn from a seeded shuffle (each used ~equally)."""
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rnd = random.Random(seed)
    _FAKERS.clear()
    order = list(range(len(templates)))
    records: list[dict[str, Any]] = []
    while len(records) < n:
        rnd.shuffle(order)
        for tid in order:
            if len(records) == n:
                break
            text, spans = fill(templates[tid], fake, rnd, slots)
            records.append({"full_text": text, "spans": spans, "template_id": tid})
    return records


#: Development notes: rules may be tuned on these (never on the held-out set).
DEV_TEMPLATES: tuple[str, ...] = (
    "door knock: {name_lc}, {street_lc}. {stance} on {issue}",
    "{name} answered, said to call {phone} {time}",
    "Lit drop at {street_apt}, no answer. Try again {date}",
    "spoke w {first_lc} about {issue}; {pron} is {age} and votes by mail",
    "{mr_last} wants a sign, deliver to {street} {apt} by {date}",
    "callback {phone} ask for {first}",
    "{first} {last_lc} moved to {city}, new # {phone}",
    "DNC request from {name_lc} ({email})",
    "voter {name} at {street_apt_lc} needs absentee ballot app, mail by {date}",
    "Met {name} outside {org}. cell: {phone}. {stance}.",
    "{first_lc} said husband {first} is {stance}, both over {age}",
    "event rsvp {name}, {email}, {phone}",
    "family at {street_lc} {city_lc} {zip}: {n} voters, {stance}",
    "follow up {date} w/ {mr_last} re {issue}",
    "{name_lc} - wrong address, lives at {street_apt} now",
    "phone bank: {phone} disconnected; alt {phone}",
    "Grandma {first} ({age}) needs ride {date} {time}",
    "{first} works nights at {org}, text {phone}",
    "canvassed {street}, {apt}. talked to {last} family, {stance}",
    "volunteer lead: {name}, avail {date} & {date}",
    "{name} asked about {issue}, email {email} the fact sheet",
    "hh of {n}: {first_lc}, {first_lc}, {first_lc} {last_lc}",
    "moved away - forward to {street_lc}, {city}, {zip}",
    "{pron} gave number {phone} and said come by {date}",
    "note from {first}: neighbor {name_lc} at {apt} also interested",
)

#: A second development set, written during the follow-up that tuned overlap resolution
#: (2026-12-02), to check on wording the rules had not seen that a change does not lose
#: coordinated or lower-case names ("x and y both home"). Development only, like
#: :data:`DEV_TEMPLATES`.
DEV_TEMPLATES_2: tuple[str, ...] = (
    "{name_lc} and {first_lc} both home, {stance} on {issue}",
    "knocked at {street_lc}; {first} and {first_lc} ({age}) said call {phone}",
    "{first_lc} {last_lc} answered, husband {first_lc} not home. back {date}",
    "left flyer w/ {name} at {street_apt_lc}, {city_lc} {zip}",
    "{mr_last} at {street} says {pron} moved from {city} on {date}; email {email}",
    "neighbor {name_lc} works for {org}, reach at {phone} {time}",
    "hh: {first_lc}, {first_lc} and {name_lc}. {stance}",
    "{name} ({age}) {stance}; wants info on {issue}, text {phone}",
    "dropped lit {date} to {first_lc} {last_lc} {street_apt_lc}",
    "{first} {last_lc} and {first_lc} at {street_lc} - {stance}",
)
