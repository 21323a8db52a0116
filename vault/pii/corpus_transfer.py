"""A second development set in the presidio-research style: "dev-transfer".

Rules tuned on the 142 development templates of presidio-research's synthetic set
transferred poorly to its held-out templates (docs/PII.md). This set measures that
transfer *before* a held-out read: a rule is written on one development set and
judged on the other, whose wording it was not written on.

Templates, in :func:`vault.pii.corpus.fill` syntax:

* the templates that presidio-research's repository (github.com/microsoft/presidio-research,
  ``presidio_evaluator/data_generator/raw_data/templates.txt``,
  ``.../raw_data/faker_templates.txt`` and ``tests/data/templates.txt`` over their
  history) holds and that its
  ``synth_dataset_v2`` does not use: every repository template whose normalised text
  matched a template of the data set exactly, or shared half its words with one
  (Jaccard >= 0.5), was left out, by comparing hashes and word sets, without printing
  the data set's templates; 16 distinct ones were left (15 after the correction
  below), rewritten in our slot names.
  One was removed after the first measurement, as a wrong gold label, not a rule
  ("My accounts are N and N": the numbers were not gold, our bank-number recognizer
  rightly redacts them, and no gold label of the set's taxonomy is a bank account);
  and two weekdays written as literals became a gold ``DATE_TIME`` slot, as the
  presidio set labels weekdays (18 weekday-only gold spans on its dev split); dates
  got fixed bounds and Italian towns were dropped so that the set no longer changes
  between runs;
* 24 written for this set (2026-12-03), before any rule was tuned on it, on the
  pitfalls the presidio set is known for: company names that look like people or
  invented words, places and people in the same sentence, job titles and
  honorifics, nationalities, capitalised words that are no entity.

Slot values come from Faker (many locales: names, towns, streets, postcodes, phones,
companies, jobs) and from a few lists below; gold labels are presidio's (``PERSON``,
``TITLE``, ``ORGANIZATION``, ``GPE``, ``STREET_ADDRESS``, ``ZIP_CODE``, ``NRP``,
``DATE_TIME``, ...). Development only: rules may be tuned on it.
"""

from __future__ import annotations

import random
from datetime import date, datetime

from faker import Faker

from vault.pii.corpus import SLOTS, Slots, _faker, _name, _person_parts

__all__ = ["TRANSFER_SLOTS", "TRANSFER_TEMPLATES"]

_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "es_ES", "nl_NL", "pt_BR",
            "fi_FI", "da_DK", "pl_PL", "cs_CZ", "sv_SE", "no_NO", "en_AU", "en_CA")


def _local(rnd: random.Random) -> Faker:
    return _faker(rnd.choice(_LOCALES), rnd.randrange(1 << 30))


_SYLLABLES = ("ver", "da", "fe", "ro", "ex", "qua", "li", "zon", "tel", "vix", "mo", "ra",
              "bi", "lo", "nex", "tra", "pro", "sa", "cor", "vo", "ly", "ta", "gen", "ix")


def _brand(rnd: random.Random) -> str:
    word = "".join(rnd.choice(_SYLLABLES) for _ in range(rnd.randint(2, 3)))
    return word.capitalize()


def _company(fake: Faker, rnd: random.Random) -> str:
    roll = rnd.random()
    if roll < 0.45:
        return _local(rnd).company()
    if roll < 0.65:
        return _brand(rnd)
    if roll < 0.8:
        return f"{_brand(rnd)} {rnd.choice(['Labs', 'Health', 'Capital', 'Systems', 'Inc'])}"
    last = _person_parts(fake, rnd)[1]
    return rnd.choice([f"{last} & {_person_parts(fake, rnd)[1]}", f"{last}-{fake.last_name()}",
                       f"{_brand(rnd)} {last}"])


def _street_line(fake: Faker, rnd: random.Random) -> str:
    return _local(rnd).street_address().replace("\n", " ")


# it_IT draws its towns from a set: their order changes with PYTHONHASHSEED
_TOWN_LOCALES = tuple(loc for loc in _LOCALES if loc != "it_IT")


def _city(fake: Faker, rnd: random.Random) -> str:
    return str(_faker(rnd.choice(_TOWN_LOCALES), rnd.randrange(1 << 30)).city())


def _country(fake: Faker, rnd: random.Random) -> str:
    return str(fake.country())


_FIRST, _LAST = datetime(1996, 1, 1), datetime(2027, 12, 31)
_BORN_FIRST, _BORN_LAST = date(1930, 1, 1), date(2008, 12, 31)


def _date_time(fake: Faker, rnd: random.Random) -> str:
    d = fake.date_time_between(_FIRST, _LAST)  # fixed bounds: the set must not age
    return d.strftime(rnd.choice(["%B %d, %Y", "%d/%m/%Y", "%Y-%m-%d", "%d %B %Y",
                                  "%A, %B %d", "%I:%M %p", "%B %Y", "%m/%d/%Y %H:%M"]))


_NATIONALITIES = ("Kenyan", "Norwegian", "Chilean", "Vietnamese", "Hungarian", "Moroccan",
                  "Irish", "Peruvian", "Filipino", "Austrian", "Ghanaian", "Lebanese",
                  "Portuguese", "Thai", "Ukrainian", "Scottish", "Brazilian", "Danish")
_RELIGIONS = ("Catholic", "Buddhist", "Hindu", "Muslim", "Jewish", "Lutheran", "Sikh",
              "Mormon", "Baptist", "Orthodox")

#: dev-transfer slots: the canvass slots plus presidio-style ones.
TRANSFER_SLOTS: Slots = {
    **SLOTS,
    "person": ("PERSON", _name),
    "company": ("ORGANIZATION", _company),
    "prefix": ("TITLE", lambda f, r: r.choice(["Mr.", "Mrs.", "Ms.", "Dr.", "Prof."])),
    "job": ("TITLE", lambda f, r: str(f.job()).split(",")[0]),
    "town": ("GPE", _city),
    "country": ("GPE", _country),
    "address": ("STREET_ADDRESS", _street_line),
    "postcode": ("ZIP_CODE", lambda f, r: str(_local(r).postcode())),
    "secondary": ("STREET_ADDRESS", lambda f, r: str(f.secondary_address())),
    "nationality": ("NRP", lambda f, r: r.choice(_NATIONALITIES)),
    "religion": ("NRP", lambda f, r: r.choice(_RELIGIONS)),
    "when": ("DATE_TIME", _date_time),
    "weekday": ("DATE_TIME", lambda f, r: str(f.day_of_week())),
    "birthday": ("DATE_TIME", lambda f, r: f.date_between(_BORN_FIRST, _BORN_LAST).strftime(
        r.choice(["%B %d, %Y", "%d.%m.%Y", "%m/%d/%Y"]))),
    "intl_phone": ("PHONE_NUMBER", lambda f, r: str(_local(r).phone_number())),
    "card": ("CREDIT_CARD", lambda f, r: str(f.credit_card_number())),
    "url": ("DOMAIN_NAME", lambda f, r: str(f.domain_name())),
    "iban": ("IBAN_CODE", lambda f, r: str(f.iban())),
    "ip": ("IP_ADDRESS", lambda f, r: str(f.ipv4())),
    "ssn": ("US_SSN", lambda f, r: str(f.ssn())),
}

#: Left over from presidio-research's repository (see the module docstring).
_FROM_PRESIDIO_RESEARCH: tuple[str, ...] = (
    "> \n> {person}\n> {company}\n> {person}\n> {address}\n> {secondary}\n> {town}\n"
    "> {country} {postcode}",
    "{person}\n{company}\n{address}\n{secondary}\n{town}\n{country} {postcode}",
    "Date: {when}\nName: {person}\nPhone: {intl_phone}",
    "Here's my phone number: {intl_phone}",
    "How can we reach you? You can call {intl_phone}",
    "I either live on {address} or {address}",
    "I was born on {birthday}",
    "I'd like to order a taxi to {address}",
    "My full address is {address}, {town} {postcode}",
    "My kids are {person} and {person}",
    "Name:    {person}\nAddress:     {address}, {town}",
    "Our last names are {last} and {last}",
    "You want my credit card? No problem: {card}",
    "{first} is from {company}",
    "{person}\n\n{job}\n\nPersonal Info:\nPhone:\n{intl_phone}\n\nE-mail:\n{email}\n\n"
    "Website:\n{url}\n\nAddress:\n{address}, {town}.",
)

#: Written for this set on 2026-12-03, before any rule was tuned on it.
_WRITTEN: tuple[str, ...] = (
    "{prefix} {last} from {company} will present the Quarterly Review on {when}.",
    "After the merger, {company} moved its Finance team to {town}.",
    "Please forward the Board Minutes to {person}, {job} at {company}.",
    "{person} ({age}) is a {nationality} citizen living in {town}, {country}.",
    "Our Summer Picnic is at Riverside Park this year; RSVP to {email} by {when}.",
    "The Annual Report of {company} lists {person} as Chief Financial Officer.",
    "Hi {first}, the Wi-Fi password at the {town} office changed on {weekday}.",
    "Shipping label:\n{person}\n{address}\n{town} {postcode}\n{country}",
    "{company} and {company} signed the Memorandum in {town} on {when}.",
    "I met {prefix} {person} at the Jazz Festival in {town}.",
    "As a {religion} family we don't eat pork, said {first}.",
    "Transfer the deposit to IBAN {iban} before {when}, reference Invoice 2231.",
    "Login from {ip} at {when} for user {email} was blocked by the Security Desk.",
    "{person} works as a {job} and drives a Toyota Corolla.",
    "Our new Product Manager, {person}, starts on {when}.",
    "The {nationality} delegation arrived in {town} with {person}.",
    "Chapter Four of Ocean Drift was written by {person} in {country}.",
    "Please cancel the Premium Plan for card {card}; my name is {person}.",
    "{first} {last}, {job}, {company}, {address}, {town}",
    "Visit {url} or call {intl_phone} for the Spring Sale.",
    "Our {weekday} Book Club meets at {company} on {address}.",
    "The patient, {person}, born {birthday}, SSN {ssn}, was seen at {town} General.",
    "Congratulations to {person} of {company} for the Innovation Award!",
    "Can {prefix} {last} confirm the Kickoff Meeting with {company} in {town}?",
)

TRANSFER_TEMPLATES: tuple[str, ...] = _FROM_PRESIDIO_RESEARCH + _WRITTEN
