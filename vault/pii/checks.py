"""Whole-value checks used by the column classifier: cheap, no Presidio, no spaCy.

``VALUE_CHECKS`` maps an entity to a predicate on one stripped, non-blank value
(``"27517-1234"`` is a ZIP+4, ``"DEM"`` a party code, ``"AX73187"`` an NC
``ncid``); :func:`value_share` is the share of a sample that a check accepts. A
column is never scanned cell by cell. Kept apart from :mod:`vault.pii.recognizers`
(which re-exports all of this) so that classifying a file never imports Presidio.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import date

__all__ = [
    "ENTITIES",
    "ETHNICITY_CODES",
    "GENDER_CODES",
    "PARTY_CODES",
    "RACE_CODES",
    "STREET_SUFFIX_RE",
    "VALUE_CHECKS",
    "value_share",
]

# --- entity names -----------------------------------------------------------------
PERSON = "PERSON"
STREET_ADDRESS = "US_STREET_ADDRESS"
ZIP = "US_ZIP_CODE"
PHONE = "PHONE_NUMBER"
EMAIL = "EMAIL_ADDRESS"
VOTER_ID = "VOTER_ID"
DRIVER_LICENSE = "US_DRIVER_LICENSE"
SSN = "US_SSN"
PARTY = "PARTY"
RACE = "RACE"
ETHNICITY = "ETHNICITY"
GENDER = "GENDER"
BIRTH_DATE = "BIRTH_DATE"
BIRTH_YEAR = "BIRTH_YEAR"
AGE = "AGE"
DATE = "DATE_TIME"

ENTITIES = (
    PERSON, STREET_ADDRESS, ZIP, PHONE, EMAIL, VOTER_ID, DRIVER_LICENSE, SSN, PARTY, RACE,
    ETHNICITY, GENDER, BIRTH_DATE, BIRTH_YEAR, AGE, DATE,
)

# --- code lists (upper case) ---------------------------------------------------------
PARTY_CODES = frozenset({
    "DEM", "REP", "UNA", "LIB", "GRE", "CST", "NPA", "NPP", "IND", "UNR", "UAF", "NON",
    "OTH", "GRN", "CPF", "REF", "AIP", "PF", "WFP", "NLP", "DEMOCRAT", "DEMOCRATIC",
    "REPUBLICAN", "LIBERTARIAN", "GREEN", "CONSTITUTION", "UNAFFILIATED", "INDEPENDENT",
    "NO PARTY AFFILIATION", "NONPARTISAN", "D", "R", "L", "G", "U", "I", "C", "N", "O",
})
# Multi-letter codes that say "party" on their own, without a column-name hint.
_PARTY_STRONG = frozenset(c for c in PARTY_CODES if len(c) >= 3) - {"NON", "OTH", "IND"}
RACE_CODES = frozenset({
    "W", "B", "A", "I", "O", "U", "M", "P", "H", "WH", "BL", "AS", "AI", "HP", "MR", "OT",
    "UN", "WHITE", "BLACK", "ASIAN", "OTHER", "MULTI", "MULTIRACIAL", "NATIVE AMERICAN",
    "AMERICAN INDIAN", "PACIFIC ISLANDER", "HISPANIC", "UNKNOWN", "UNDESIGNATED",
    "BLACK OR AFRICAN AMERICAN", "TWO OR MORE RACES",
})
ETHNICITY_CODES = frozenset({
    "HL", "NL", "UN", "H", "N", "U", "HISPANIC", "NOT HISPANIC", "HISPANIC OR LATINO",
    "NOT HISPANIC OR LATINO", "UNDESIGNATED", "UNKNOWN",
})
GENDER_CODES = frozenset({
    "M", "F", "U", "X", "O", "N", "MALE", "FEMALE", "UNKNOWN", "OTHER", "NONBINARY",
    "NON-BINARY", "UNDESIGNATED",
})
_FLAG_CODES = frozenset({"Y", "N", "T", "F", "0", "1", "YES", "NO", "TRUE", "FALSE", "U"})

# --- whole-value patterns ---------------------------------------------------------
STREET_SUFFIX_RE = (
    r"(?:st|street|ave|avenue|av|rd|road|dr|drive|ln|lane|blvd|boulevard|ct|court|way|"
    r"pl|place|cir|circle|pkwy|parkway|hwy|highway|ter|terrace|trl|trail|sq|square|"
    r"loop|run|pike|row|path|xing|crossing|cv|cove|pt|point|plz|plaza|aly|alley|"
    r"mnr|manor|holw|hollow|rdg|ridge|vw|view|walk|bnd|bend|crk|creek|gln|glen)"
)
_RE_ADDRESS = re.compile(
    r"(?:\d+[a-z]?(?:-\d+)?\s+(?:[nsew]{1,2}\.?\s+)?[\w.'\- ]{1,40}"
    r"|p\.?\s*o\.?\s*box\s+\d+[\w ]*|(?:apt|unit|suite|ste|#|lot|rm|room|bldg|fl)\.?\s*#?\s*[\w-]+"
    r"|(?:rr|hc|rural route)\s*\d+.*)",
    re.IGNORECASE,
)
_RE_ZIP = re.compile(r"\d{5}(?:-?\d{4})?(?:\.0+)?|\d{9}(?:\.0+)?")
_RE_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_RE_SSN = re.compile(r"(?!000|666|9\d\d)\d{3}-?(?!00)\d{2}-?(?!0000)\d{4}")
_RE_VOTER_ID = re.compile(r"(?:[a-z]{1,3}\d{4,12}|\d{4,12}(?:\.0+)?|[a-z]{2}\d{3,10}[a-z]?)",
                          re.IGNORECASE)
_RE_DL = re.compile(r"(?=.*\d)[a-z0-9*-]{4,16}", re.IGNORECASE)
_RE_NAME = re.compile(r"[^\W\d_](?:[^\W\d_]|[ '’.\-])*", re.UNICODE)
_RE_YEAR = re.compile(r"(?:18|19|20)\d{2}(?:\.0+)?")
_RE_AGE = re.compile(r"\d{1,3}(?:\.0+)?")
_RE_DATE_MDY = re.compile(r"(\d{1,2})[/-](\d{1,2})[/-](\d{4})(?:\s+\d{1,2}:\d{2}(?::\d{2})?)?")
_RE_DATE_YMD = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?Z?)?")


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def _is_phone(value: str) -> bool:
    if any(ch.isalpha() for ch in value.replace("x", "").replace("ext", "")):
        return False
    digits = _digits(value.split("x")[0])
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return (len(digits) == 10 and digits[0] not in "01") or len(digits) == 7


def _date_year(value: str) -> int | None:
    """The year of a valid calendar date written M/D/YYYY, YYYY-MM-DD or YYYYMMDD, else None."""
    m = _RE_DATE_MDY.fullmatch(value)
    if m is not None:
        month, day, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
    else:
        m = _RE_DATE_YMD.fullmatch(value)
        if m is None:
            return None
        year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    try:
        date(year, month, day)
    except ValueError:
        return None
    return year if 1800 <= year <= 2100 else None


def _is_date(value: str) -> bool:
    return _date_year(value) is not None


def _is_birth_date(value: str) -> bool:
    year = _date_year(value)
    return year is not None and year <= date.today().year


def _is_age(value: str) -> bool:
    return _RE_AGE.fullmatch(value) is not None and 0 <= float(value) <= 125


def _is_address(value: str) -> bool:
    if _RE_ADDRESS.fullmatch(value) is None:
        return False
    # a bare number is not an address line
    return any(ch.isalpha() for ch in value)


def _in(codes: frozenset[str]) -> Callable[[str], bool]:
    return lambda value: value.upper() in codes


#: entity -> predicate on one stripped, non-blank value.
VALUE_CHECKS: dict[str, Callable[[str], bool]] = {
    PERSON: lambda v: _RE_NAME.fullmatch(v) is not None and len(v) <= 60,
    STREET_ADDRESS: _is_address,
    ZIP: lambda v: _RE_ZIP.fullmatch(v) is not None,
    PHONE: _is_phone,
    EMAIL: lambda v: _RE_EMAIL.fullmatch(v) is not None,
    SSN: lambda v: _RE_SSN.fullmatch(v) is not None,
    VOTER_ID: lambda v: _RE_VOTER_ID.fullmatch(v) is not None,
    DRIVER_LICENSE: lambda v: _RE_DL.fullmatch(v) is not None,
    PARTY: _in(PARTY_CODES),
    "PARTY_STRONG": _in(_PARTY_STRONG),
    RACE: _in(RACE_CODES),
    ETHNICITY: _in(ETHNICITY_CODES),
    GENDER: _in(GENDER_CODES),
    BIRTH_DATE: _is_birth_date,
    BIRTH_YEAR: lambda v: _RE_YEAR.fullmatch(v) is not None,
    AGE: _is_age,
    DATE: _is_date,
    "FLAG": _in(_FLAG_CODES),
}


def value_share(entity: str, values: Iterable[str]) -> float:
    """Share of ``values`` (stripped, non-blank) that ``entity``'s check accepts."""
    check = VALUE_CHECKS[entity]
    total = hits = 0
    for value in values:
        total += 1
        hits += bool(check(value))
    return hits / total if total else 0.0
