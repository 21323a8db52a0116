"""Labels of resolved free-text spans from the shape of their line (after overlaps).

These rules change *labels* only, never which characters are redacted, except that
a form's field name ("Phone:", "Address:") is no longer redacted: it names a field,
not a value. Each rule is a general shape of postal or form text (examples are made
up), written on the development sets (docs/PII.md, fifth follow-up):

* **street names**: a person, organisation or group span on a street line is the
  street's name: after a street-type word written first ("rue", "ulica", "Travessa",
  "plac"), after a house number ("35 Ilvara Harbor"), or a word ending in a street
  suffix of Faker's Nordic, Dutch, German or Finnish lists and followed by a house
  number ("Tornevej 18", "Ostrenkogatan 4", "Halmi-Platz 12");
* **towns**: a person span right after "in" with no listed given name and no
  possessive ("signed in Velbruna", not "in Hedda Lindqvist's poems"), and a word
  shaped like Faker's US town names, a listed name plus a town ending
  ("Jenniferbury", "Ostrenkoport") or a compass or "New/Port/Lake" word before a
  listed name ("West Paul", "New Williamshire"), labelled a person or organisation
  by the NER, is a place;
* **companies**: a span inside capitalised words that end in a legal form ("Holm
  Lindqvist AB", "Bellini, Iacovelli e Doglio s.r.l.", "Velbrun Sp. z o.o.") is the
  company; two surnames alone joined by "&" or a hyphen, no given name and no
  honorific before ("Ortiz & Yi", "Walters-White"), are a firm;
* **dates**: what a street pattern took that is a day and a month name, with or
  without a year ("16 July 1998"), is a date.

Sixth follow-up (docs/PII.md), with the neighbouring spans where needed:

* **firms**: three surnames listed alone ("Nowak, Ostrova and Holm"); in a signature, a
  name line between the person's line and the address, or a "title" line shaped like a
  company ("Velbrunix", "Holm & Li");
* **streets**: a name (first word no listed given name) before a house number that ends
  the address ("Velbrunska 775"); a number taken for a date next to a street;
* **towns**: a name line between address lines; a name after a verb of moving and "to";
* **titles and employers**: a capitalised job noun, or a word before a lower-case one,
  after "as a" or a person and a comma ("as a Radio producer"); after a job title and
  "at", the employer.
"""

from __future__ import annotations

import importlib
import re
from functools import cache

from faker.providers.address.en_US import Provider as _UsAddress

from vault.pii.names import given_names, surnames

__all__ = ["line_label", "town_labels"]

_NAME_LABELS = frozenset({"PERSON", "ORGANIZATION", "NRP"})
_STREET = "US_STREET_ADDRESS"

# street-type words written before the name (any case, but "Via", "Al.", "C." only
# capitalised: "reached via Ana"), then optional particles
_STREET_WORD = (
    r"(?:Via|Al\.|C\.|(?i:rue|rua|rúa|viale|vial|calle|carrer|cuesta|avenida|avda\.|av\.|"
    r"avenue|boulevard|bd\.|chemin|allée|impasse|quai|piazza|largo|travessa|estrada|"
    r"praça|plaza|paseo|ul\.|ulica|str\.|strada|stretto|aleja|plac|pl\.))"
    r"(?:[ \t]+(?:de|del|della|da|das|do|dos|di|du|des|la|le|las|los))*[ \t]+")
_RE_STREET_BEFORE = re.compile(rf"(?<![\w.]){_STREET_WORD}\Z")
_RE_STREET_FIRST = re.compile(_STREET_WORD)
# a house number right before ("35 Ilvara Harbor", "Flat 84 69 Brown Circlet")
_RE_NUMBER_BEFORE = re.compile(
    r"(?:^|(?<=[\s,>]))(\d{1,5})[A-Za-z]?(?:/\d{1,4})?,?[ \t]+\Z", re.MULTILINE)
_RE_NUMBER_AFTER = re.compile(r"[ \t]*,?[ \t]*\d{1,5}[A-Za-z]?(?:[-/]\d{1,4})?(?![\w.:/-])")
_RE_YEAR = re.compile(r"1[89]\d\d|20\d\d")
_RE_IN_BEFORE = re.compile(r"(?<![\w-])in[ \t]+\Z")
_RE_WORD_EXTEND_LEFT = re.compile(r"[^\W\d_][\w'’-]*-\Z")
_RE_WORD_EXTEND_RIGHT = re.compile(r"-[\w'’-]*")

_MONTHS = ("January|February|March|April|May|June|July|August|September|October|"
           "November|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec")
_RE_DAY_MONTH = re.compile(rf"\d{{1,2}}(?:st|nd|rd|th)?[ \t]+(?:{_MONTHS})\.?(?:[ \t]+\d{{4}})?\.?")

_COMPASS = frozenset({"North", "South", "East", "West", "New", "Port", "Lake", "Fort",
                      "Saint", "St.", "Mount"})
_TOWN_ENDINGS = tuple(sorted(set(_UsAddress.city_suffixes), key=len, reverse=True))


@cache
def _street_suffixes() -> tuple[str, ...]:
    """Street endings written as one word with the name: Faker's lists for Danish,
    Swedish, Norwegian, Finnish and Dutch, and German ones Faker writes as words."""
    out = {"straße", "strasse", "str.", "platz", "allee", "gasse", "ring", "weg", "damm",
           "ufer", "steig", "pfad"}
    for loc in ("da_DK", "sv_SE", "no_NO", "fi_FI", "nl_NL", "de_CH"):
        provider = importlib.import_module(f"faker.providers.address.{loc}").Provider
        out.update(s.strip().lower() for s in getattr(provider, "street_suffixes", ())
                   if s.strip() and s.strip().lower() != "street")
    return tuple(sorted(out, key=len, reverse=True))


def _listed(word: str) -> bool:
    return word in given_names() or word in surnames()


def _whole_word(text: str, start: int, end: int) -> tuple[int, int]:
    """The span widened over hyphens to the whole written word ("Halmi-Platz")."""
    left = _RE_WORD_EXTEND_LEFT.search(text, max(0, start - 40), start)
    right = _RE_WORD_EXTEND_RIGHT.match(text, end)
    return (left.start() if left else start), (right.end() if right else end)


def _street_name(text: str, start: int, end: int) -> bool:
    line_start = text.rfind("\n", 0, start) + 1
    if _RE_STREET_BEFORE.search(text, line_start, start) or (
            _RE_STREET_FIRST.match(text, start, end) and not text[start].islower()):
        return True
    num = _RE_NUMBER_BEFORE.search(text, line_start, start)
    if num is not None:
        # "in 2019 Ana Li": a year is a house number only at a line's start or after a comma
        lead = text[line_start : num.start()].rstrip(" \t>")
        if not _RE_YEAR.fullmatch(num.group(1)) or not lead or lead.endswith(","):
            return True
    a, b = _whole_word(text, start, end)
    last = text[a:b].split()[-1].lower() if text[a:b].split() else ""
    return (_RE_NUMBER_AFTER.match(text, b) is not None
            and any(last.endswith(s) and len(last) > len(s) + 2 for s in _street_suffixes()))


# a house number right after a name, then the end of the line or sentence, a comma and a
# capitalised word (the town), or a unit ("Velbrunska 775", "Campo Ostrova, 41, Dunmore",
# "Ostrova 12 Apt. 4"); not "Okafor, 34, joined" (an age) nor a year
_RE_HOUSE_NUMBER_AFTER = re.compile(
    r"(?:,[ \t]*|[ \t]+)(\d{1,4}[A-Za-z]?(?:[-/]\d{1,4})?)"
    r"(?=[ \t]*(?:\n|\Z|[.;](?:\s|\Z)|,[ \t]*[^\W\d_a-z]|[ \t]+(?:Apt|Suite|Unit|Flat|Piano|"
    r"Puerta|Floor|Fl)\b))")
_RE_HOUSE_NUMBER_END = re.compile(r"[ \t]+\d{1,4}[A-Za-z]?(?:[-/]\d{1,4})?\Z")


def _name_and_house_number(text: str, start: int, end: int) -> bool:
    """A name (its first word no listed given name) followed by a house number and the end
    of the address: a street written name first ("Velbrunska 775"); also when the span
    took the number in."""
    value = text[start:end]
    inner = _RE_HOUSE_NUMBER_END.search(value)
    if inner is not None:
        value, end = value[: inner.start()], start + inner.start()
    after = _RE_HOUSE_NUMBER_AFTER.match(text, end)
    words = value.split()
    if after is None or not words or not 1 <= len(words) <= 4:
        return False
    return (not _RE_YEAR.fullmatch(after.group(1)) and words[0] not in given_names()
            and words[0][:1].isupper())


def _town_shaped(value: str) -> bool:
    words = value.split()
    if len(words) == 2 and words[0] in _COMPASS:
        head = words[1]
        if _listed(head):
            return True
    elif len(words) == 1:
        head = words[0]
        if _listed(head):
            return False
    else:
        return False
    if not head.isalpha() or not head[:1].isupper():
        return False
    for ending in _TOWN_ENDINGS:
        stem = head[: -len(ending)]
        if head.endswith(ending) and len(stem) >= 3 and _listed(stem):
            return True
    return False


# legal forms written after a company's name (Faker's locales write them so)
_LEGAL_FORM = (
    r"(?:Sp\.[ \t]z[ \t]o\.o\.(?:[ \t]Sp\.k\.)?|Sp\.j\.|Sp\.k\.|s\.c\.|k\.s\.|v\.o\.s\.|"
    r"s\.r\.o\.|a\.s\.|o\.s\.|AB|HB|KB|Oy|Oyj|Ky|Osk|As[ \t]Oy|AS|ASA|A/S|ApS|I/S|AG|KG|KGaA|"
    r"GmbH|mbH|OHG|e\.V\.|GbR|S\.A\.|SA|SARL|S\.A\.R\.L\.|SAS|S\.A\.S\.|SNC|SpA|S\.p\.A\.|"
    r"s\.r\.l\.|S\.r\.l\.|Srl|S\.L\.(?:N\.E)?|S\.L\.L\.|S\.C\.P|S\.Coop\.|S\.Com\.|S/A|Ltda\.?|"
    r"BV|B\.V\.|NV|N\.V\.|VOF|e[ \t]figli|et[ \t]Fils|og[ \t]Sønner|og[ \t]Søn|y[ \t]Asociados|"
    r"&[ \t]Asociados|i[ \t]syn|und[ \t]Söhne|&[ \t]Co\.?|Inc\.?|LLC|Ltd\.?|PLC|plc|Corp\.?|"
    r"Group|Gruppe|Groupe)(?!\w)"
)
_CAP_WORD = r"[^\W\d_a-z][\w'’.]*(?:-[\w'’.]+)*"
_JOIN = r"[ \t]+(?:&|and|e|y|og|i|und|et|en)[ \t]+"
# "Holm Lindqvist AB", "Kovář & Dvořák k.s.", "Bellini, Iacovelli e Doglio s.r.l."
_RE_COMPANY = re.compile(
    rf"(?:(?:{_CAP_WORD}(?:{_JOIN}|[ \t]+))*?"
    rf"|{_CAP_WORD}(?:[ \t]*,[ \t]*{_CAP_WORD})*,?{_JOIN})"
    rf"{_CAP_WORD}[ \t,]*{_LEGAL_FORM}")
_W = r"[^\W\d_a-z][^\W\d_]+"
# two surnames joined by "&" or a hyphen, alone: a firm ("Ortiz & Yi", "Walters-White")
_RE_PARTNERS = re.compile(rf"({_W})[ \t]*&[ \t]*({_W})|({_W})-({_W})")
_RE_HONORIFIC_BEFORE = re.compile(r"(?:Mr|Mrs|Ms|Mx|Dr|Prof)\.?[ \t]+\Z")


# three surnames in a list, alone: a firm ("Ostrova, Velbrun and Holm"; any case, one
# case throughout); not a list a colon introduces, not one whose last word runs on into
# another capitalised word ("..., Ana and Jose Li")
_WA = r"[^\W\d_][^\W\d_'’]+"
_RE_THREE_NAMES = re.compile(
    rf"(?<![\w'’&-])({_WA}),[ \t]+({_WA}),?[ \t]+(?:and|&)[ \t]+({_WA})"
    rf"(?![\w'’-]|[ \t]+[^\W\d_a-z])")


def _three_names(text: str, start: int, end: int) -> bool:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    for m in _RE_THREE_NAMES.finditer(text, line_start, line_end):
        if not (m.start() <= start and end <= m.end()):
            continue
        words = m.groups()
        same_case = (all(w[0].isupper() and w[1:].islower() for w in words)
                     or all(w.islower() for w in words))
        return (same_case and ":" not in text[line_start : m.start()]
                and sum(w.capitalize() in surnames() for w in words) >= 2)
    return False


def _in_company(text: str, start: int, end: int) -> bool:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    return any(m.start() <= start and end <= m.end()
               for m in _RE_COMPANY.finditer(text, line_start, line_end))


def _partners(text: str, start: int, end: int) -> bool:
    m = _RE_PARTNERS.fullmatch(text, start, end)
    return (m is not None and not any(w in given_names() for w in m.groups() if w)
            and not _RE_HONORIFIC_BEFORE.search(text, max(0, start - 6), start))


# a verb of moving earlier in the clause, then "to" right before the span: "moved its
# team to Velbruna", "relocated the office to Ostrava"
_RE_MOVED_TO_BEFORE = re.compile(
    r"\b(?:moved|moving|moves|relocated|relocating|relocates|transferred|travelled|"
    r"traveled|flew|drove|returned|went|shipped)\b[^.;:!?\n]{0,40}?[ \t]to[ \t]+\Z",
    re.IGNORECASE)


def _new_label(text: str, start: int, end: int, entity: str) -> str:
    value = text[start:end]
    if entity in (*_NAME_LABELS, "LOCATION", _STREET) and _in_company(text, start, end):
        return "ORGANIZATION"
    if entity == "PERSON" and _partners(text, start, end):
        return "ORGANIZATION"
    if entity in ("PERSON", "LOCATION", "NRP") and _three_names(text, start, end):
        return "ORGANIZATION"
    if entity in _NAME_LABELS and (_street_name(text, start, end)
                                   or _name_and_house_number(text, start, end)):
        return _STREET
    if entity in ("PERSON", "ORGANIZATION") and _town_shaped(value):
        return "LOCATION"
    if (entity == "PERSON" and _RE_IN_BEFORE.search(text, max(0, start - 8), start)
            and not value.endswith(("'s", "’s"))
            and not any(w in given_names() for w in value.split())):
        return "LOCATION"
    if (entity in ("PERSON", "ORGANIZATION")
            and _RE_MOVED_TO_BEFORE.search(text, max(0, start - 60), start)
            and not any(w in given_names() for w in value.split())):
        return "LOCATION"
    if entity == _STREET and _RE_DAY_MONTH.fullmatch(value):
        return "DATE_TIME"
    return entity


# a form's field name at the start of a line: "Phone:", "E-mail:", "Address:"
_FIELD_NAMES = frozenset({
    "phone", "telephone", "tel", "mobile", "cell", "desk", "fax", "home", "work", "office",
    "address", "email", "e-mail", "website", "web", "name", "date", "contact", "subject",
    "company", "title", "position", "city", "country", "zip", "postcode", "birthday",
})
_RE_FIELD = re.compile(r"(?:^|(?<=\n))[ \t>]*([A-Za-z][\w-]*)[ \t]*:")


def _field_name(text: str, start: int, end: int) -> bool:
    m = _RE_FIELD.match(text, text.rfind("\n", 0, start) + 1)
    return (m is not None and m.group(1).lower() in _FIELD_NAMES
            and m.start(1) <= start and end <= m.end() and end > m.start(1))


def line_label(text: str, start: int, end: int, entity: str) -> str | None:
    """The label of a resolved span from its line's shape, or None when it is a form's
    field name (not redacted)."""
    if entity in _NAME_LABELS and _field_name(text, start, end):
        return None
    return _new_label(text, start, end, entity)


# a postcode right after a town on its line: "Velbruna 2684", "Ostrava E9E 8N8"
_RE_POSTCODE_AFTER = re.compile(
    r"[ \t]+(?:\d{4,5}(?:-\d{3,4})?|[A-Z]\d[A-Z][ \t]?\d[A-Z]\d|[A-Z]{1,2}\d[A-Z\d]?[ \t]\d[A-Z]{2}"
    r"|\d{2}-\d{3}|\d{3}[ \t]\d{2})(?=[ \t]*(?:[,.\n]|\Z))")
_RE_TOWN_PARTICLE = re.compile(r"-(?:sur|sous|la|le|les|en|de|du|lès|am|an|im|bei|nad|pod)-")
_RE_COMMA_GAP = re.compile(r"[ \t]*,[ \t]*")
_RE_AND_GAP = re.compile(r"[ \t]+(?:and|&)[ \t]+")


_RE_QUOTE_LEAD = re.compile(r"[ \t>]*")
_ADDRESS = frozenset({_STREET, "LOCATION", "US_ZIP_CODE"})


def _line_of(text: str, pos: int) -> tuple[int, int]:
    """(start, end) of the content of the line holding ``pos``, without a quote mark
    ("> ") and the blanks at its edges."""
    a = text.rfind("\n", 0, pos) + 1
    b = text.find("\n", pos)
    b = len(text) if b < 0 else b
    a = _RE_QUOTE_LEAD.match(text, a, b).end()  # type: ignore[union-attr]
    return a, a + len(text[a:b].rstrip())


def _next_line(text: str, pos: int, step: int) -> tuple[int, int] | None:
    """The nearest non-blank line before (``step`` -1) or after (+1) the line of ``pos``."""
    if step < 0:
        cut = text.rfind("\n", 0, pos)
        while cut >= 0:
            start = text.rfind("\n", 0, cut) + 1
            line = _line_of(text, start)
            if line[1] > line[0]:
                return line
            cut = start - 1
        return None
    cut = text.find("\n", pos)
    while cut >= 0:
        line = _line_of(text, cut + 1)
        if line[1] > line[0]:
            return line
        cut = text.find("\n", cut + 1)
    return None


def _lines_around(text: str, a: int, b: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The non-blank lines before and after span ``a:b`` when it is a whole line, else None."""
    if _line_of(text, a) != (a, b):
        return None
    prev, nxt = _next_line(text, a, -1), _next_line(text, b, +1)
    return None if prev is None or nxt is None else (prev, nxt)


def _company_line(text: str, spans: list[tuple[int, int, str]], i: int) -> bool:
    """A person span that is a whole line between a line that is a person's name and the
    address: the company of a letter head or signature ("Ana Li / Velbrun-Holm / 12 Elm
    Street"), when it is one word, partners ("&"), or names no listed given name."""
    a, b, _ = spans[i]
    around = _lines_around(text, a, b)
    if around is None:
        return False
    prev, nxt = around
    if not any(s <= prev[0] and prev[1] <= t and e == "PERSON" for s, t, e in spans):
        return False
    if not (text[nxt[0]].isdigit()
            or any(s == nxt[0] and e in _ADDRESS for s, t, e in spans)):
        return False
    words = text[a:b].split()
    return len(words) == 1 or "&" in words or not any(w in given_names() for w in words)


def _town_line(text: str, spans: list[tuple[int, int, str]], i: int) -> bool:
    """A span that is a whole line between an address line (a street, unit or postcode
    ends the line above) and a line that starts with a place or postcode (the country):
    the town ("12 Elm Street / Apt. 4 / Velbruna / Norway 0150")."""
    a, b, _ = spans[i]
    around = _lines_around(text, a, b)
    if around is None:
        return False
    prev, nxt = around
    return (any(t == prev[1] and e in _ADDRESS for s, t, e in spans)
            and any(s == nxt[0] and e in _ADDRESS for s, t, e in spans))


_RE_ADDRESS_GAP = re.compile(r"[ \t]*,?[ \t]*")
_RE_HOUSE_NUMBER = re.compile(r"\d{1,4}[A-Za-z]?(?:[-/]\d{1,4})?")
_RE_STREET_WORD_AFTER = re.compile(rf"[ \t]*,?[ \t]*{_STREET_WORD}")


def _house_number(text: str, spans: list[tuple[int, int, str]], i: int) -> bool:
    """A number taken for a date that is a house number: right after a street on its line
    ("Ostrovagatan 46-65", "Quadra Ostrova, 41") or right before a street word ("94, rue
    Velbrun"); never a year."""
    a, b, _ = spans[i]
    if not _RE_HOUSE_NUMBER.fullmatch(text, a, b) or _RE_YEAR.fullmatch(text, a, b):
        return False
    prev = spans[i - 1] if i else None
    return ((prev is not None and prev[2] == _STREET
             and _RE_ADDRESS_GAP.fullmatch(text, prev[1], a) is not None)
            or _RE_STREET_WORD_AFTER.match(text, b) is not None)


def _company_shaped_title(text: str, a: int, b: int, words: frozenset[str]) -> bool:
    """A line the signature rule took for a job title that reads as a company: partners
    ("Holm & Li"), or capitalised words (hyphenated or not) of which one is no English
    word ("Velbrunix", "Ostrova-Holm"); job titles are English words ("Herpetologist",
    "Senior loan officer")."""
    value = text[a:b]
    if _line_of(text, a) != (a, b) or not words:
        return False
    if re.search(r"(?<!\S)&(?!\S)", value):
        return True
    parts = [w for w in re.split(r"[ \t-]+", value) if w]
    return (0 < len(parts) <= 3
            and all(w.isalpha() and w[0].isupper() and not w.isupper() and len(w) >= 3
                    for w in parts)
            and any(w.lower() not in words for w in parts))


# head nouns of job titles, written in lower case after a capitalised first word
# ("a Radio producer", "Software engineer at")
_JOB_NOUNS = frozenset({
    "engineer", "producer", "planner", "analyst", "nurse", "officer", "administrator",
    "assistant", "controller", "manager", "researcher", "designer", "technician",
    "consultant", "director", "teacher", "scientist", "developer", "editor", "therapist",
    "operator", "inspector", "specialist", "coordinator", "advisor", "adviser", "clerk",
    "agent", "worker", "surveyor", "architect", "accountant", "lawyer", "journalist",
    "librarian", "pharmacist", "physician", "psychologist", "secretary", "supervisor",
    "trainer", "writer", "executive", "broadcaster", "buyer", "chemist", "curator",
    "economist", "educator", "geologist", "instructor", "lecturer", "physicist",
    "programmer", "radiographer", "representative", "salesman", "statistician",
    "surgeon", "translator", "tutor", "underwriter", "volunteer", "conservator",
})
_RE_AS_A_BEFORE = re.compile(r"(?<![\w-])as[ \t]+an?[ \t]+\Z", re.IGNORECASE)
_RE_JOB_AFTER = re.compile(r"[ \t]+([a-z]+)\b")


def _job_noun(word: str) -> bool:
    word = word.lower()
    return word in _JOB_NOUNS or (word.endswith("ist") and len(word) > 6)


def _job_title(text: str, spans: list[tuple[int, int, str]], i: int) -> bool:
    """An organisation or place span that is or starts a job title, after "as a" or right
    after a person and a comma: before a lower-case head noun of a job ("as a Radio
    producer", "Ana Li, Software engineer at ..."), or itself one capitalised job noun
    ("as a Engineer", "Ana Li, Designer, Velbrunix")."""
    a, b, _ = spans[i]
    prev = spans[i - 1] if i else None
    placed = (_RE_AS_A_BEFORE.search(text, max(0, a - 8), a) is not None
              or (prev is not None and prev[2] == "PERSON"
                  and _RE_COMMA_GAP.fullmatch(text, prev[1], a) is not None))
    if not placed:
        return False
    m = _RE_JOB_AFTER.match(text, b)
    if m is not None and m.group(1) in _JOB_NOUNS:
        return True
    value = text[a:b].rstrip(",")
    return (len(value.split()) == 1 and value[:1].isupper() and _job_noun(value)
            and _RE_JOB_END.match(text, a + len(value)) is not None)


_RE_JOB_END = re.compile(r"[ \t]*(?:,|\Z|\n|[ \t]+(?:and|at)\b)")
# a job title, then "at" the employer: "Retail manager at Velbrunix"
_RE_JOB_AT_BEFORE = re.compile(r"([^\W\d_]+)[ \t]+at[ \t]+\Z")


def _employer(text: str, spans: list[tuple[int, int, str]], i: int) -> bool:
    """A person or place span right after a job title and "at" is the employer."""
    a = spans[i][0]
    m = _RE_JOB_AT_BEFORE.search(text, max(0, a - 40), a)
    if m is None:
        return False
    prev = spans[i - 1] if i else None
    return _job_noun(m.group(1)) or (prev is not None and prev[2] == "TITLE"
                                     and prev[1] >= m.start(1))


def town_labels(text: str, spans: list[tuple[int, int, str]],
                words: frozenset[str] = frozenset()) -> list[str]:
    """Second pass, with the neighbours' labels: a person, organisation or group span is a
    town when a street ends right before it on its line ("12 Elm Road, Velbruna"), when a
    postcode follows it ("Velbruna 2684"), or when it is part of a hyphenated place name
    ("Dupont-sur-Loire", "Amsterdam-Velbrun" after a place); one word joined by "and" to
    the street that follows is a corner ("Ostrova and Tornevej 15"). ``spans`` are
    sorted."""
    out = [e for _, _, e in spans]
    for i, (a, b, e) in enumerate(spans):
        if e == "TITLE" and _company_shaped_title(text, a, b, words):
            out[i] = "ORGANIZATION"
            continue
        if e in ("ORGANIZATION", "LOCATION") and _job_title(text, spans, i):
            out[i] = "TITLE"
            continue
        if e == "DATE_TIME" and _house_number(text, spans, i):
            out[i] = _STREET
            continue
        if e in ("PERSON", "LOCATION") and _employer(text, spans, i):
            out[i] = "ORGANIZATION"
            continue
        if e not in _NAME_LABELS:
            continue
        if _town_line(text, spans, i):
            out[i] = "LOCATION"
            continue
        if e == "PERSON" and _company_line(text, spans, i):
            out[i] = "ORGANIZATION"
            continue
        prev = spans[i - 1] if i else None
        if prev is not None and prev[2] == _STREET and _RE_COMMA_GAP.fullmatch(text, prev[1], a):
            out[i] = "LOCATION"
            continue
        post = _RE_POSTCODE_AFTER.match(text, b)
        if post is not None and not _RE_YEAR.fullmatch(post.group().strip()):
            out[i] = "LOCATION"
            continue
        nxt = spans[i + 1] if i + 1 < len(spans) else None
        if (nxt is not None and nxt[2] == _STREET and len(text[a:b].split()) == 1
                and _RE_AND_GAP.fullmatch(text, b, nxt[0])):
            out[i] = _STREET
            continue
        wa, wb = _whole_word(text, a, b)
        if (wa, wb) != (a, b) and (_RE_TOWN_PARTICLE.search(text, wa, wb) or any(
                s < wb and wa < t and ent == "LOCATION" for s, t, ent in spans)):
            out[i] = "LOCATION"
    return out
