"""Our recognizers, where Presidio has none: voter-file identifiers and codes.

Two faces of the same knowledge:

* :func:`custom_recognizers` -> Presidio recognizers used on free text (street
  addresses, ZIP / ZIP+4, voter ids, party names, ages, birth dates, phone
  formats, card numbers, ISO timestamps, and the name, place and organisation
  cues of :mod:`vault.pii.names`);
* :data:`VALUE_CHECKS` -> whole-value predicates used by the column classifier
  on a *sample* of a column (``"27517-1234"`` is a ZIP+4, ``"DEM"`` a party
  code, ``"AX73187"`` an NC ``ncid``). A column is never scanned cell by cell.

Entity names are Presidio's where Presidio has one (``PERSON``, ``PHONE_NUMBER``,
``EMAIL_ADDRESS``, ``US_SSN``, ``US_DRIVER_LICENSE``, ``DATE_TIME``) and ours
otherwise (see :data:`ENTITIES`).
"""

from __future__ import annotations

import re

from faker.providers.address.en_US import Provider as _FakerAddress
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer

from vault.pii.checks import (  # noqa: F401  (re-exported: this module's public names)
    AGE,
    BIRTH_DATE,
    BIRTH_YEAR,
    DATE,
    DRIVER_LICENSE,
    EMAIL,
    ENTITIES,
    ETHNICITY,
    ETHNICITY_CODES,
    GENDER,
    GENDER_CODES,
    PARTY,
    PARTY_CODES,
    PERSON,
    PHONE,
    RACE,
    RACE_CODES,
    SSN,
    STREET_ADDRESS,
    STREET_SUFFIX_RE,
    VALUE_CHECKS,
    VOTER_ID,
    ZIP,
    _digits,
    value_share,
)
from vault.pii.group_pattern import TIER_KEY, GroupPatternRecognizer
from vault.pii.names import name_recognizers
from vault.pii.notes import note_recognizers

__all__ = [
    "ENTITIES",
    "ETHNICITY_CODES",
    "GENDER_CODES",
    "PARTY_CODES",
    "RACE_CODES",
    "RECOGNIZER_TIERS",
    "TIER_KEY",
    "VALUE_CHECKS",
    "GroupPatternRecognizer",
    "custom_recognizers",
    "value_share",
]

# --- free-text recognizers ----------------------------------------------------------
_CAP = r"[A-Z][A-Za-z'’\-]+"
# Country names (Faker's list, shipped with the package; nothing is fetched).
_COUNTRIES: tuple[str, ...] = (
    *(c for c in _FakerAddress.countries if "," not in c and "(" not in c),
    "United States", "USA", "UK", "Czech Republic",
)
_COUNTRY_ALT = "|".join(re.escape(c) for c in sorted(_COUNTRIES, key=len, reverse=True))
# street-name words written *before* the name (Romance, Slavic, German usage)
_STREET_PREFIX = (
    r"(?:Rue|Rua|Via|Viale|Calle|Carrer|Avenida|Avda\.|Av\.|Avenue|Boulevard|Bd\.|Chemin|"
    r"Allée|Impasse|Quai|Piazza|Largo|Travessa|Estrada|Praça|Plaza|Paseo|ul\.|ulica|Str\.|"
    r"Strada|Aleja|al\.)"
)

#: recognizer name -> tier used to resolve overlaps in :mod:`vault.pii.freetext`
#: (2 = specific pattern, the default; 1 = spaCy NER; 0 = broad catch-all).
RECOGNIZER_TIERS: dict[str, int] = {"AddressBlockRecognizer": 0}




def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


class CardNumberRecognizer(PatternRecognizer):
    """Payment card numbers of 12-19 digits (Maestro to 19-digit Visa), contiguous or in
    groups, passing the Luhn check. Presidio's recognizer only knows 13-17 digits in
    fixed groups. A Luhn-valid number is not yet a card (one random number in ten
    passes), so the base score is below the threshold and a context word is needed."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity="CREDIT_CARD",
            name="CardNumberRecognizer",
            patterns=[
                Pattern("card digits", r"(?<![\w+\-.])[1-6]\d{3}(?:[ -]?\d{2,4}){2,4}(?![\w\-])",
                        0.3),
            ],
            context=["card", "credit", "debit", "cc", "visa", "mastercard", "amex", "maestro",
                     "charge", "billing"],
            global_regex_flags=re.MULTILINE,
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        digits = _digits(pattern_text)
        if not 12 <= len(digits) <= 19 or not _luhn(digits):
            return False
        return None  # valid: keep the pattern's score (True would make it 1.0)


def custom_recognizers() -> list[EntityRecognizer]:
    """Fresh instances of our Presidio recognizers (English)."""
    street = PatternRecognizer(
        supported_entity=STREET_ADDRESS,
        name="UsStreetAddressRecognizer",
        # Patterns of one score are alternatives of one regex: Presidio's cost is per
        # pattern and text, whatever the regex.
        patterns=[
            Pattern(
                "street line",
                # an optional building / unit number may stand before the house number;
                # the street's type after its name ("Elm Street") or before it ("Rue X")
                rf"\b\d{{1,6}}(?:[ \t]\d{{1,6}})?(?:[A-Za-z]?[ \t]+(?:[NSEW]\.?[ \t]+)?"
                rf"(?:{_CAP}[ \t]+){{0,3}}{_CAP}[ \t]+(?i:{STREET_SUFFIX_RE})\b\.?"
                rf"|[ \t]+{_STREET_PREFIX}(?:[ \t]+[^\W\d_][\w'’\-]*){{1,5}}"
                r"(?:[ \t]+\d{1,4}[a-z]?\b)?)",
                0.6,
            ),
            Pattern(
                "box, military address, street corner",
                r"\b(?i:p\.?\s*o\.?\s*box)\s+\d{1,6}\b"
                r"|\b(?:PSC|Unit|CMR)\s+\d{3,5},?\s+Box\s+\d{3,5}\b"
                r"|\b(?:APO|FPO|DPO)[ \t]+(?:AA|AE|AP)[ \t]+\d{5}\b"
                # "the corner of 5th Street and Main"
                r"|\b(?i:the[ \t]+)?corner[ \t]+of[ \t]+[^\n,?!]{3,60}?[ \t]+and[ \t]+"
                r"[^\n,?!]{2,40}?(?=[,?!\n]|\.(?:\s|$)|$)",
                0.6,
            ),
            Pattern(
                "unit, number words number",
                r"\b(?:Apt|Apartment|Suite|Ste|Unit|Lot)\.?\s*#?\s*\d{1,5}[A-Z]?\b"
                r"|\b\d{1,6}[ \t]+[A-ZÀ-ÖØ-Þ][\w.'’\-]*(?:[ \t]+[^\W\d_][\w.'’\-]*){0,3}"
                r"[ \t]+(?!\d{1,3}0s\b)\d{1,4}[a-z]?\b(?![/:\-]\d)\.?",  # not "the 70s", "6/24"
                0.5,
            ),
            Pattern("street type first, then the number",  # "Rua Nova 50", "Via dei X 1"
                    rf"\b{_STREET_PREFIX}(?:[ \t]+[^\W\d_][\w'’\-]*){{1,4}}[ \t]+\d{{1,4}}[a-z]?\b"
                    r"(?![/:.\-]\d)",
                    0.6),
            Pattern("street number (european)",
                    r"\b[A-ZÀ-ÖØ-Þ][\w'’\-]+(?:[ \t]+[A-ZÀ-ÖØ-Þ][\w'’\-]+)?[ \t]+"
                    r"(?!\d{1,3}0s\b)\d{1,4}[a-z]?\b(?![/:.\-]\d)",  # not a date: "It's 3/17"
                    0.3),
        ],
        context=["address", "live", "lives", "located", "street", "residence", "mail", "send",
                 "moved", "at"],
        global_regex_flags=re.MULTILINE,
    )
    # Tier 0: a street line, then up to four short lines (unit, city, region, country +
    # postcode; one blank line allowed; no ":", "@", "!" or "?", which mark labelled
    # fields, e-mails and sentences), as in signatures and letter heads. It labels
    # only what no other recognizer claims (phones, names and e-mails inside keep theirs).
    block = PatternRecognizer(
        supported_entity=STREET_ADDRESS,
        name="AddressBlockRecognizer",
        patterns=[
            Pattern("address block",
                    r"(?<![\w:.\-])\d{1,6}[ \t]+[^\W\d_][^\n:@]{2,50}"
                    r"(?:\n(?:[ \t>?]*\n)?[ \t>?]*[^\n!?:@]{2,40}(?=\n|$)){1,4}",
                    0.4),
        ],
        context=["address", "live", "lives", "located", "street", "residence", "mail", "send",
                 "moved"],
        global_regex_flags=re.MULTILINE,
    )
    zip_code = PatternRecognizer(
        supported_entity=ZIP,
        name="UsZipRecognizer",
        patterns=[
            Pattern("labelled postcode", r"(?<=ZIP: )[A-Z0-9][A-Z0-9 -]{2,8}\b", 0.6),
            Pattern("country postcode", r"(?<=[a-z] )\d{4,5}\b(?=\s*$)", 0.3),
            Pattern("zip+4", r"\b\d{5}-\d{4}\b", 0.5),
            Pattern("zip", r"\b\d{5}\b", 0.05),
            Pattern("state zip", r"\b[A-Z]{2}\s+\d{5}(?:-\d{4})?\b", 0.5),
        ],
        context=["zip", "zipcode", "postal", "code", "address"],
        global_regex_flags=re.MULTILINE,
    )
    voter_id = PatternRecognizer(
        supported_entity=VOTER_ID,
        name="VoterIdRecognizer",
        patterns=[
            Pattern("nc ncid", r"\b[A-Z]{2}\d{5,7}\b", 0.3),
            Pattern("numeric registration", r"\b\d{6,12}\b", 0.05),
        ],
        context=["voter", "ncid", "registration", "reg", "id", "sos"],
        global_regex_flags=re.MULTILINE,
    )
    party = PatternRecognizer(
        supported_entity=PARTY,
        name="PartyAffiliationRecognizer",
        deny_list=["Democrat", "Democrats", "Democratic Party", "Republican", "Republicans",
                   "Republican Party", "Libertarian", "Green Party", "Constitution Party",
                   "unaffiliated voter", "registered Democrat", "registered Republican"],
        deny_list_score=0.6,
    )
    age = PatternRecognizer(
        supported_entity=AGE,
        name="AgeRecognizer",
        patterns=[
            Pattern(
                "age phrase",
                r"\b\d{1,3}(?=[\s-]+(?:years?|yrs?)[\s-]+old\b|[ -]year[ -]old\b|\s?y/?o\b)"
                r"|(?<=\b[Aa]ged\s|\b[Aa]ge of |\bturned |\bturns )\d{1,3}\b"
                r"|(?:(?<=\bwill turn )|(?<='ll turn )|(?<=\bto turn )|(?<=\bI turn ))"
                r"\d{1,3}\b(?!\s*(?:degrees|°|%|percent|times|pages|minutes|km|miles))",
                0.6,
            ),
            Pattern(
                "age n, pronoun was n",
                r"(?<=\b[Aa]ge[:\s])\s?\d{1,3}\b"
                # "when she was 34." (a bare number closing a clause about a person)
                r"|(?<=\b(?:he|He|she|She|I) was )\d{1,3}\b(?=\s*(?:[.!?,;]|$))",
                0.5,
            ),
        ],
        global_regex_flags=re.MULTILINE,
    )
    birth = PatternRecognizer(
        supported_entity=BIRTH_DATE,
        name="BirthDateRecognizer",
        patterns=[
            Pattern("mdy", r"\b\d{1,2}/\d{1,2}/(?:19|20)\d{2}\b", 0.4),
            Pattern("iso", r"\b(?:19|20)\d{2}-\d{2}-\d{2}\b", 0.3),
        ],
        context=["born", "birth", "birthday", "dob", "b."],
        global_regex_flags=re.MULTILINE,
    )
    timestamp = PatternRecognizer(
        supported_entity=DATE,
        name="IsoTimestampRecognizer",
        patterns=[
            Pattern("iso date time",
                    r"\b(?:1[89]|20)\d{2}-[01]\d-[0-3]\d[ T][0-2]\d:[0-5]\d(?::[0-5]\d(?:\.\d+)?)?"
                    r"(?:Z|[+-][0-2]\d:?[0-5]\d)?(?![\w:])",
                    0.6),
        ],
        global_regex_flags=re.MULTILINE,
    )
    # Phone formats. Separators are spaces, dashes and dots on one line (never a newline),
    # and no match may touch a word, a colon or a slash, nor a dot or dash followed by a
    # digit (times, dates, versions).
    edge_l = r"(?<![\w.:/+\-])"
    edge_r = r"(?![\w:/]|[.\-]\d)"  # "555-0100-Office" ends at the digits
    phone = PatternRecognizer(
        supported_entity=PHONE,
        name="UsPhoneFormatsRecognizer",
        patterns=[
            Pattern(
                "us formats",
                r"\(\d{3}\)[ ]?\d{3}[-. ]\d{4}(?:[ ]?x\d{1,5})?"
                r"|\b(?:\+?1[-. ])?\d{3}[-.]\d{3}[-.]\d{4}(?:x\d{1,5})?\b",
                0.6,
            ),
            Pattern(
                "grouped, dotted, area code, international",
                rf"{edge_l}(?:(?!(?:1[89]|20)\d\d-\d\d-\d\d)\+?\d{{2,5}}(?:[ \-]\d{{2,4}}){{2,4}}"
                rf"|0\d(?:\.\d{{2}}){{4}}"
                rf"|\(\d{{2,5}}\)[ ]?\d{{3,4}}(?:[ \-]\d{{2,4}}){{1,2}}"
                rf"|\+\d{{1,3}}[ \-]?(?:\(0\)[ ]?)?\d{{1,5}}(?:[ \-]?\d{{2,8}}){{1,4}}){edge_r}",
                0.45,
            ),
        ],
        context=["phone", "call", "cell", "mobile", "tel", "number", "reach", "text", "office",
                 "fax", "desk", "answering", "message", "contact", "dial", "ring"],
        global_regex_flags=re.MULTILINE,
    )
    # Numbers of other shapes ("480 1234", "0312 4567890", "4805551234") only next to a
    # cue: "call me on", "reach us at", "Phone:", "mobile number is", "... (office)". The cue is in
    # the pattern, not in Presidio's context words, which skip stop words ("call" is
    # one) and cost a pass over the tokens for every candidate.
    phone_cue = GroupPatternRecognizer(
        PHONE, "PhoneCueRecognizer",
        [r"\b(?:(?i:call|ring|text|reach|dial)(?:[ \t]+(?:me|us|him|her|them))?(?:[ \t]+(?:on|at))?"
         r"|(?i:phone|tel|telephone|mobile|cell|fax|desk|office)(?:[ \t]+(?:number|no\.?))?"
         r"(?:[ \t]+is|[ \t]*[:#])?)[ \t]*\n?[ \t]*(?P<x>\+?\(?\d[\d \-().]{5,18}\d)(?![\w\-])",
         # ... or a label after it: "480 1234 office", "4805551234-Fax"
         r"(?<![\w+\-.])(?P<x>\+?\(?\d[\d \-().]{5,18}\d)[ \t]*-?[ \t]*"
         r"(?i:office|fax|mobile|cell|home|work|desk)\b"],
        0.6, check=lambda v: 7 <= len(_digits(v)) <= 15,
    )
    country = PatternRecognizer(
        supported_entity="LOCATION",
        name="CountryNameRecognizer",
        deny_list=list(_COUNTRIES),
        deny_list_score=0.5,
        global_regex_flags=0,  # case-sensitive: "Chad" the country, not "chad"
    )
    country_postcode = PatternRecognizer(
        supported_entity="LOCATION",
        name="CountryPostcodeRecognizer",
        patterns=[Pattern("country postcode",
                          rf"\b(?:{_COUNTRY_ALT})[ \t]+\d{{3,6}}(?:[ -]\d{{2,4}})?\b", 0.6)],
        global_regex_flags=0,
    )
    return [street, block, zip_code, voter_id, party, age, birth, timestamp, phone, phone_cue,
            country,
            country_postcode, CardNumberRecognizer(), *name_recognizers(), *note_recognizers()]
