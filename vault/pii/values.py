"""What a sample of a column's values says, whatever the column is called.

The column classifier asks this module, for every column, which class the values
themselves support, independently of the header: e-mails, phones, street lines,
person names, name suffixes and titles, codes shaped like race, party, gender,
religion or union membership, and identifiers (one distinct, id-shaped value per
row). Each verdict carries a share and a one-line reason that names no value.

Light on purpose: no Presidio, no spaCy, so that a dry-run ``classify`` stays fast.
Person names are checked against Faker's given-name and surname lists of every
locale (shipped with the package, nothing is fetched), case-insensitively.
"""

from __future__ import annotations

import functools
import gzip
import importlib
import ipaddress
import pkgutil
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vault.pii.handling import Category

__all__ = [
    "RELIGION_WORDS",
    "UNION_WORDS",
    "ValueVerdict",
    "id_shaped",
    "name_tokens",
    "person_name_share",
    "profile",
]

# Shares of sampled non-blank values needed.
STRONG = 0.8  # formats that rarely occur by chance (e-mail, phone, address, codes)
NAMES = 0.6  # person names: some are missing from any list
UNIQUE = 0.95  # distinct share for "one value per row"
MIN_UNIQUE_SAMPLE = 20

RELIGION_WORDS = frozenset({
    "CATHOLIC", "ROMAN CATHOLIC", "PROTESTANT", "BAPTIST", "SOUTHERN BAPTIST", "METHODIST",
    "LUTHERAN", "PRESBYTERIAN", "EPISCOPALIAN", "EPISCOPAL", "PENTECOSTAL", "EVANGELICAL",
    "MORMON", "LDS", "JEWISH", "JUDAISM", "MUSLIM", "ISLAM", "ISLAMIC", "HINDU", "BUDDHIST",
    "SIKH", "ATHEIST", "AGNOSTIC", "ORTHODOX", "EASTERN ORTHODOX", "GREEK ORTHODOX",
    "CHRISTIAN", "NONDENOMINATIONAL", "NON-DENOMINATIONAL", "JEHOVAH'S WITNESS",
    "JEHOVAHS WITNESS", "QUAKER", "MENNONITE", "AMISH", "ADVENTIST", "SEVENTH-DAY ADVENTIST",
    "UNITARIAN", "BAHA'I", "JAIN", "SHINTO", "TAOIST", "WICCAN", "SECULAR", "NONE", "OTHER",
    "UNKNOWN", "NO RELIGION", "PREFER NOT TO SAY",
})
_RELIGION_NEUTRAL = frozenset({"NONE", "OTHER", "UNKNOWN", "PREFER NOT TO SAY", "SECULAR"})
UNION_WORDS = frozenset({
    "UNION", "NON-UNION", "NONUNION", "NON UNION", "UNION MEMBER", "NON-MEMBER", "NONMEMBER",
    "UNION HOUSEHOLD", "UNION HH", "AFL-CIO", "SEIU", "TEAMSTERS", "UAW", "AFSCME", "NEA", "AFT",
    "IBEW", "UFCW", "CWA", "USW", "IAM", "LIUNA", "UNITE HERE", "IUOE", "NNU",
    "FORMER MEMBER", "RETIRED MEMBER", "MEMBER",
})
_UNION_NEUTRAL = frozenset({"MEMBER", "NON-MEMBER", "NONMEMBER", "FORMER MEMBER",
                            "RETIRED MEMBER"})
_SUFFIXES = frozenset({"JR", "SR", "II", "III", "IV", "V", "VI", "2ND", "3RD", "ESQ", "MD",
                       "PHD", "JR.", "SR."})
_TITLES = frozenset({"MR", "MRS", "MS", "MISS", "DR", "REV", "MX", "PROF", "HON", "SIR", "FR",
                     "MR.", "MRS.", "MS.", "DR.", "REV.", "MX."})
_RACE_WORDS = frozenset({
    "WHITE", "BLACK", "ASIAN", "NATIVE AMERICAN", "AMERICAN INDIAN", "PACIFIC ISLANDER",
    "BLACK OR AFRICAN AMERICAN", "AFRICAN AMERICAN", "TWO OR MORE RACES", "MULTIRACIAL",
    "CAUCASIAN", "HISPANIC", "LATINO", "ALASKA NATIVE", "NATIVE HAWAIIAN",
    "AMERICAN INDIAN OR ALASKA NATIVE", "ASIAN OR PACIFIC ISLANDER", "MULTI", "OTHER",
    "UNKNOWN", "UNDESIGNATED",
})
_RACE_LETTERS = frozenset({"W", "B", "A", "I", "O", "U", "M", "P", "H"})
# one- and two-letter party codes (Pennsylvania: NF no affiliation, GR Green, LN Libertarian)
_PARTY_LETTERS = frozenset({"D", "R", "L", "G", "U", "I", "N", "O", "C", "X", "NP", "NF", "GR",
                            "LN", "NOP", "CN"})
_GENDER = frozenset({"M", "F", "U", "X", "O", "N", "MALE", "FEMALE", "UNKNOWN", "OTHER",
                     "NONBINARY", "NON-BINARY", "UNDESIGNATED"})
# Words that are given names or surnames somewhere but are, in a column, far more
# often a code, a status, a place word or an ordinary word.
_COMMON_WORDS_TEXT = """
    active inactive pending removed confirmation cancelled canceled purged denied verified
    yes no true false none null other unknown na n/a the and of a an in on at to by for
    north south east west city town county village township ward precinct district main
    street road avenue lane drive court park lake hill spring river green white black brown
    gray grey young king long may june april august will mark grant rich dale
"""
_COMMON_WORDS = frozenset(_COMMON_WORDS_TEXT.split())
_RE_TOKEN = re.compile(r"[^\W\d_](?:[^\W\d_]|['’\-.](?=[^\W\d_]))*\.?")
_RE_NAMEISH = re.compile(r"[^\W\d_](?:[^\W\d_]|[ ,'’.\-])*")
_RE_OPINION = re.compile(r"(?i)\b(?:strong(?:ly)?|lean(?:s|ing)?|soft)?[ -]?(?:support|oppose|"
                         r"undecided|supporter|against|favou?r)\b")
_RE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-.:/]{3,39}")


#: Faker's names of every locale, casefolded, one a line; the first line records the Faker
#: version. Shipped (not built at run time) because importing Faker's ~90 locale modules
#: costs seconds; ``python -m vault.pii.values`` rebuilds it.
NAMES_FILE = Path(__file__).with_name("person_names.txt.gz")


def build_name_list() -> tuple[str, frozenset[str]]:
    """(Faker version, casefolded given names and surnames of every Faker locale)."""
    import faker
    import faker.providers.person as person

    out: set[str] = set()
    for info in pkgutil.iter_modules(person.__path__):
        provider = importlib.import_module(f"{person.__name__}.{info.name}").Provider
        for attr in ("first_names", "first_names_male", "first_names_female",
                     "first_romanized_names", "last_names", "last_romanized_names"):
            names = vars(provider).get(attr)
            if isinstance(names, (list, tuple, dict, set, frozenset)):
                out.update(n.casefold() for n in names
                           if isinstance(n, str) and len(n) >= 2 and n.isalpha())
    return str(faker.VERSION), frozenset(out)


def write_name_list(path: Path = NAMES_FILE) -> None:
    version, names = build_name_list()
    text = f"# faker {version}\n" + "\n".join(sorted(names)) + "\n"
    path.write_bytes(gzip.compress(text.encode(), mtime=0))


@functools.cache
def _name_lists() -> frozenset[str]:
    """Casefolded given names and surnames of every Faker locale, less common words."""
    lines = gzip.decompress(NAMES_FILE.read_bytes()).decode().splitlines()
    return frozenset(n for n in lines[1:] if n) - _COMMON_WORDS


def name_tokens(value: str) -> list[str]:
    """Alphabetic tokens of a value, casefolded, without trailing dots."""
    return [t.rstrip(".").casefold() for t in _RE_TOKEN.findall(value)]


def _is_person_name(value: str, names: frozenset[str]) -> bool:
    if len(value) > 60 or _RE_NAMEISH.fullmatch(value) is None:
        return False
    tokens = name_tokens(value)
    if not 1 <= len(tokens) <= 5 or (len(tokens) == 1 and len(tokens[0]) < 3):
        return False  # a lone two-letter token is a code ("MA", "LA"), not a name
    return any(t in names for t in tokens)


def person_name_share(values: Sequence[str]) -> float:
    """Share of values that look like a person's name (or name part) in any locale."""
    if not values:
        return 0.0
    names = _name_lists()
    return sum(_is_person_name(v, names) for v in values) / len(values)


_RE_DATEISH = re.compile(r"\d{1,4}[/.\-]\d{1,2}[/.\-]\d{1,4}(?:[ T].*)?")


def id_shaped(value: str) -> bool:
    """One token of letters and digits (with a digit), 4-40 characters, not a date,
    not a plain number of 5 digits or fewer (a ZIP, an amount, a count)."""
    if _RE_ID.fullmatch(value) is None or not any(ch.isdigit() for ch in value):
        return False
    if _RE_DATEISH.fullmatch(value) or _is_ip(value):
        return False
    plain = value.replace(".", "", 1)
    if plain.isdigit() and len(plain) <= 5:
        return False
    return not re.fullmatch(r"\d+\.\d+", value)  # a decimal amount


_RE_STREET_START = re.compile(r"\d+[A-Za-z]?(?:-\d+)?\s+[^\W\d_]")
_RE_UNIT_OR_BOX = re.compile(r"(?i)(?:apt|apartment|unit|suite|ste|#|lot|rm|room|bldg|fl"
                             r"|p\.?\s*o\.?\s*box|rr|hc|rural route)\b|#")


def _street_like(value: str) -> bool:
    """Stricter than the classifier's address check, for values that override a name: a
    house number directly followed by two or more words, or a unit / box form
    (``"1 - Strong Support"`` is an answer code, not an address)."""
    if _RE_UNIT_OR_BOX.match(value):
        return True
    return (_RE_STREET_START.match(value) is not None
            and len(_RE_TOKEN.findall(value)) >= 2)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class ValueVerdict:
    """The class a sample of values supports, and why (no value is ever quoted)."""

    entity: str
    category: Category
    share: float
    reason: str


def _share(values: Sequence[str], check: Callable[[str], bool]) -> float:
    return sum(bool(check(v)) for v in values) / len(values) if values else 0.0


def _upper_set(values: Sequence[str]) -> set[str]:
    return {v.strip().upper() for v in values}


def _pct(share: float) -> str:
    return f"{round(100 * share)}%"


def profile(values: Sequence[str], checks: dict[str, Callable[[str], bool]]) -> list[
        ValueVerdict]:
    """Every class the sampled ``values`` support, most sensitive first.

    ``checks`` are the whole-value predicates of :data:`vault.pii.recognizers.VALUE_CHECKS`
    (passed in, so this module stays free of Presidio).
    """
    n = len(values)
    if n == 0:
        return []
    out: list[ValueVerdict] = []
    of = f"of {n} sampled values"
    distinct = len(set(values))
    upper = _upper_set(values)

    def add(entity: str, category: Category, share: float, what: str) -> None:
        out.append(ValueVerdict(entity, category, round(share, 3), f"{_pct(share)} {of} {what}"))

    # --- direct identifiers -------------------------------------------------------
    share = _share(values, checks["EMAIL_ADDRESS"])
    if share >= STRONG:
        add("EMAIL_ADDRESS", "direct", share, "are e-mail addresses")
    share = _share(values, lambda v: re.fullmatch(r"\d{3}-\d{2}-\d{4}", v) is not None
                   and checks["US_SSN"](v))
    if share >= STRONG:
        add("US_SSN", "direct", share, "are SSN-shaped (ddd-dd-dddd)")
    share = _share(values, checks["PHONE_NUMBER"])
    if share >= STRONG and distinct >= min(5, n):
        add("PHONE_NUMBER", "direct", share, "are phone numbers (7 or 10 digits)")
    share = _share(values, _is_ip)
    if share >= STRONG:
        add("IP_ADDRESS", "direct", share, "are IP addresses")
    share = _share(values, lambda v: checks["US_STREET_ADDRESS"](v) and _street_like(v))
    if share >= STRONG:
        add("US_STREET_ADDRESS", "direct", share,
            "are street lines, unit/apartment numbers or PO boxes")
    if n >= 3 and distinct >= min(5, n):
        unique = distinct / n
        id_share = _share(values, id_shaped)
        if n >= MIN_UNIQUE_SAMPLE and unique >= UNIQUE and id_share >= STRONG:
            add("VOTER_ID", "direct", id_share,
                f"are id-shaped and {_pct(unique)} distinct (one per row): a per-person key")
    share = _share(values, lambda v: v.strip().upper() in _SUFFIXES)
    if share >= STRONG and upper & {"JR", "SR", "JR.", "SR.", "II", "III"}:
        add("PERSON", "direct", share, "are name suffixes (Jr, Sr, III)")
    share = _share(values, lambda v: v.strip().upper() in _TITLES)
    if share >= STRONG and len(upper & _TITLES) >= 2:
        add("PERSON", "direct", share, "are personal titles (Mr, Mrs, Dr)")
    if distinct >= min(10, max(3, n // 3)):
        share = person_name_share(values)
        if share >= NAMES:
            add("PERSON", "direct", share,
                f"are person names or name parts (given/surname lists), {distinct} distinct")

    # --- special categories ------------------------------------------------------
    share = _share(values, lambda v: v.strip().upper() in RELIGION_WORDS)
    if share >= STRONG and len(upper & (RELIGION_WORDS - _RELIGION_NEUTRAL)) >= 2:
        add("RELIGION", "special", share, "are religions or denominations")
    share = _share(values, lambda v: v.strip().upper() in UNION_WORDS)
    if share >= STRONG and upper & (UNION_WORDS - _UNION_NEUTRAL):
        add("UNION_MEMBERSHIP", "special", share, "are trade-union membership values")
    share = _share(values, lambda v: v.strip().upper() in _RACE_WORDS)
    if share >= STRONG and len(upper & (_RACE_WORDS - {"OTHER", "UNKNOWN", "UNDESIGNATED"})) >= 2:
        add("RACE", "special", share, "are race/ethnicity words")
    share = _share(values, lambda v: v.strip().upper() in _RACE_LETTERS)
    if share >= 0.95 and {"W", "B"} <= upper and len(upper & _RACE_LETTERS) >= 3:
        add("RACE", "special", share, "are one-letter race codes (W, B, A, ...)")
    share = _share(values, lambda v: len(v) <= 40 and _RE_OPINION.search(v) is not None)
    if share >= STRONG:
        add("POLITICAL_OPINION", "special", share,
            "are support/oppose answers (a political opinion)")
    share = _share(values, checks["PARTY_STRONG"])
    if share >= STRONG:
        add("PARTY", "special", share, "are party names or codes (DEM, REP, ...)")
    share = _share(values, lambda v: v.strip().upper() in _PARTY_LETTERS)
    if share >= 0.6 and {"D", "R"} <= upper and len(upper) <= 8:
        add("PARTY", "special", share, "are one-letter party codes with both D and R")
    share = _share(values, lambda v: v.strip().upper() in _GENDER)
    if share >= 0.95 and ({"M", "F"} <= upper or {"MALE", "FEMALE"} <= upper) and len(upper) <= 6:
        add("GENDER", "special", share, "are gender codes with both M and F")
    return out


if __name__ == "__main__":
    write_name_list()
