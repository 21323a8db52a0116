"""Free-text redaction: PII spans found by Presidio replaced by ``<ENTITY>`` markers.

Only columns classified ``free_text`` come here; they are scanned cell by cell,
in batches through spaCy's ``nlp.pipe`` (one NLP pass per cell, then Presidio's
recognizers on the precomputed artifacts). Large inputs are split into chunks
and run on a pool of worker processes (``spawn``), each building its own engine
once; the pool lives as long as the process (``shutdown_pools`` stops it), so the
batches of an ingest pay the workers' start-up once. Results keep the input order.

Overlapping detections are split, not merged: every character any detection
found is redacted, and each part is labelled by the best detection covering it,
except that some leftovers of a worse detection (the NER's modifiers, blanks, the
rest of an address block's line) take the label of the better one they touch (see
``_resolve``). ``None`` and blank cells pass through.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import polars as pl
from faker.providers.address.en_US import Provider as _FakerAddress
from presidio_analyzer import RecognizerResult
from spacy.lang.en.stop_words import STOP_WORDS as _STOP_WORDS

from vault.pii.engine import LANGUAGE, get_analyzer
from vault.pii.names import (
    _ORG_SUFFIX,
    NOT_NAMES,
    given_names,
    person_shaped,
    repeated_names,
    surnames,
)
from vault.pii.recognizers import RECOGNIZER_TIERS, TIER_KEY
from vault.pii.relabel import line_label, town_labels

__all__ = ["DEFAULT_THRESHOLD", "Span", "find_spans", "redact_texts", "shutdown_pools"]

DEFAULT_THRESHOLD = 0.35
PARALLEL_MIN_TEXTS = 2_000  # below this, starting workers costs more than it saves
_CHUNK = 1_000


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    entity: str
    score: float


# Overlaps are resolved the way Presidio's anonymizer resolves intersections: the
# better detection keeps all its characters, a worse one keeps only what is left
# (possibly in two pieces), so nothing found is un-redacted and each part keeps the
# label of the detection that knows most about it. "Better" is a tier first, then
# the score, then the shorter span:
# * tier 2, pattern recognizers (checksums, formats, context words): they say more
#   about *what* a span is than the statistical NER, which scores every entity 0.85;
# * tier 1, spaCy's NER (and our weak name/place guesses, which only fill gaps);
# * tier 0, broad catch-alls (address blocks), which only label what nothing else did.
_TIER_NER = 1
# a later mention of a full name's word ("... and later Varhegyi"): above the NER's
# guess, below street patterns (>= 0.6), which may contain a surname ("Smith Street")
_REPEAT_SCORE = 0.55
_TIER_BLOCK = 0
_TIERS: dict[str, int] = {"SpacyRecognizer": _TIER_NER, **RECOGNIZER_TIERS}


def _rank(span: Span, tier: int) -> tuple[int, float, int]:
    return (tier, span.score, span.start - span.end)


def _resolve(spans: Iterable[tuple[Span, int]], text: str | None = None) -> list[Span]:
    """Non-overlapping spans covering the union of ``(span, tier)``, labelled by rank.

    What is left of a worse detection after the better ones took their characters is
    kept (nothing found is un-redacted), but its label depends on what it is:

    * a leftover of the NER's tier (spaCy and the weak name guesses) joins a better
      detection it touches that lies *inside* the NER's span: the NER's boundaries
      took in modifiers ("Northern" of "Northern Norway", "year old" of "83 year
      old"), and its label for the whole was outranked. When the better detection
      crosses the NER's boundary ("maria lopez 412" | "412 oak st"), the NER ran into
      a neighbour, and its leftover keeps its own label;
    * a leftover without a letter or a digit (line breaks, spaces, commas between the
      lines of an address block; needs ``text``) joins the better detection it touches:
      it discloses nothing of its own;
    * a leftover of an address block (tier 0) that starts inside a line, after a better
      detection ("40512 before noon.", "555-0134-Fax"), joins it: the block only
      labels whole lines nobody else claimed;
    * any other leftover (an address line no other recognizer claimed) keeps its label.
    """
    claimed: list[tuple[int, int]] = []  # disjoint intervals, sorted
    # (piece, rank order of its detection, joins a better piece it touches, and only
    # one inside these bounds)
    pieces: list[tuple[Span, int, bool, tuple[int, int]]] = []
    for order, (span, tier) in enumerate(sorted(spans, key=lambda st: _rank(*st), reverse=True)):
        pos = span.start
        cut = False
        own: list[tuple[int, int]] = []
        for start, end in claimed:
            if end <= pos:
                continue
            if start >= span.end:
                break
            cut = True
            if start > pos:
                own.append((pos, start))
            pos = max(pos, end)
        if pos < span.end:
            own.append((pos, span.end))
        for a, b in own:
            joins = cut and (tier == _TIER_NER or (text is not None and (
                not any(ch.isalnum() for ch in text[a:b])
                or (tier == _TIER_BLOCK and not _starts_line(text, a, span.start)))))
            blank = text is not None and not any(ch.isalnum() for ch in text[a:b])
            bounds = (span.start, span.end) if tier == _TIER_NER and not blank else (0, 1 << 62)
            pieces.append((Span(a, b, span.entity, span.score), order, joins, bounds))
        claimed = _union([*claimed, (span.start, span.end)])
    ordered = sorted(pieces, key=lambda p: p[0].start)
    labels = [p[0].entity for p in ordered]
    scores = [p[0].score for p in ordered]
    # a joining piece takes the label of a touching piece of a better detection that
    # does not itself join (the left one first: modifiers precede what they modify)
    for i, (piece, order, joins, (lo, hi)) in enumerate(ordered):
        if not joins:
            continue
        for j in (i - 1, i + 1):
            if not 0 <= j < len(ordered):
                continue
            other, other_order, other_joins, _ = ordered[j]
            if (other_order < order and not other_joins and lo <= other.start
                    and other.end <= hi
                    and (other.end == piece.start or other.start == piece.end)):
                labels[i], scores[i] = other.entity, other.score
                break
    out: list[Span] = []
    for (piece, *_), entity, score in zip(ordered, labels, scores, strict=True):
        if out and out[-1].end == piece.start and out[-1].entity == entity:
            last = out[-1]
            out[-1] = Span(last.start, piece.end, last.entity, max(last.score, score))
        else:
            out.append(Span(piece.start, piece.end, entity, score))
    return out if text is None else _trimmed(text, out)


def _trimmed(text: str, spans: list[Span]) -> list[Span]:
    """Spans without the blanks at their edges; a span without a letter or a digit (a
    line break, a dash, a full stop left between two detections) is dropped: it
    discloses nothing, and a reader would see a marker where nothing was found."""
    out: list[Span] = []
    for span in spans:
        value = text[span.start : span.end]
        if not any(ch.isalnum() for ch in value):
            continue
        start = span.start + len(value) - len(value.lstrip())
        end = span.end - (len(value) - len(value.rstrip()))
        out.append(span if (start, end) == (span.start, span.end)
                   else Span(start, end, span.entity, span.score))
    return out


def _starts_line(text: str, pos: int, block_start: int) -> bool:
    """Whether only blanks stand between ``pos`` and the start of its line (or block)."""
    line_start = max(text.rfind("\n", 0, pos) + 1, block_start)
    return not text[line_start:pos].strip()


def _union(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _tier(result: RecognizerResult) -> int:
    meta = result.recognition_metadata or {}
    tier = meta.get(TIER_KEY)
    if isinstance(tier, int):
        return tier
    return _TIERS.get(str(meta.get(RecognizerResult.RECOGNIZER_NAME_KEY, "")), 2)


_RE_DATE_ANCHOR = re.compile(
    r"\d|(?i:\b(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
    r"|(?:mon|tues?|wed(?:nes)?|thu(?:rs?)?|fri|sat(?:ur)?|sun)(?:days?)?)\b)")


_RE_DURATION = re.compile(
    r"(?i:(?:about|almost|nearly|over|under|for|the[ \t]+(?:last|past|next)|last|past|next)"
    r"[ \t]+)?\d{1,3}\+?[ \t-]*(?i:years?|yrs?|months?|weeks?|days?|hours?|hrs?|minutes?"
    r"|mins?)")
# "the last Friday", "next Tuesday", "this weekend": relative to a day nobody wrote down
_RE_RELATIVE_DAY = re.compile(
    r"(?i:(?:the[ \t]+)?(?:last|next|this|past|coming|following|previous)[ \t]+"
    r"(?:(?:mon|tues|wednes|thurs|fri|satur|sun)day|weekend|week|night|morning|evening|"
    r"afternoon))")
# names of identifiers and form fields that the NER takes for organisations ("my SSN:",
# "the ATM", "IBAN"): they name a kind of number, not a body anyone belongs to
_NOT_ORGS = frozenset({"SSN", "ITIN", "TIN", "EIN", "DOB", "ZIP", "ID", "PIN", "ATM", "IBAN",
                       "SWIFT", "BIC", "CVV", "VIN", "DL", "PO",
                       # field labels of a signature ("Mobile: ...", "Desk: ...")
                       "Mobile", "Desk", "Phone", "Fax", "Tel", "Cell", "Email", "E-mail",
                       "Office", "Home", "Work", "Address"})


def _not_personal(text: str, result: RecognizerResult,
                  nouns: frozenset[str] = frozenset(), words: frozenset[str] = frozenset()
                  ) -> bool:
    """A date the NER found with neither a digit, a month nor a weekday ("next week",
    "this month", "nights"), or a duration ("8+ years", "the last 3 months"): it places
    nobody in time, so it is not redacted. Also the NER's organisations that are names of
    identifiers (:data:`_NOT_ORGS`), and a lone capitalised word the NER calls a person
    that is an English common noun (``nouns``, the model's own lemma index) and in no
    list of given names or surnames ("Bookkeeper", "Gratitude", "Lanterns"). And an
    organisation that is English words in lower case ("spoke w", "neighbor") or one
    plural common noun ("Gardeners"), with no listed name, no company word and no
    workplace cue before it ("at", "for", ...; ``words``, :func:`_common_org`)."""
    if _tier(result) != _TIER_NER:
        return False
    if result.entity_type == "ORGANIZATION":
        return (text[result.start : result.end].rstrip(":") in _NOT_ORGS
                or _common_org(text, result.start, result.end, words))
    if result.entity_type == "PERSON" and nouns:
        return _common_noun(text[result.start : result.end], nouns)
    return result.entity_type == "DATE_TIME" and (
        _RE_DATE_ANCHOR.search(text, result.start, result.end) is None
        or _RE_RELATIVE_DAY.fullmatch(text, result.start, result.end) is not None
        or _RE_DURATION.fullmatch(text, result.start, result.end) is not None)


def _common_org(text: str, start: int, end: int, words: frozenset[str]) -> bool:
    """Whether the NER's organisation is English words, none a listed name, in lower
    case or one plural noun, without a company word or a workplace cue before it: a
    body has a name ("Gardeners" and "spoke w" are not one; "works at home depot" and
    "Brightwater Labs" keep theirs)."""
    value = text[start:end]
    parts = [w for w in _RE_PHRASE_SPLIT.split(value) if w]
    if (not words or not parts or _RE_ORG_WORD.search(value)
            or _RE_ORG_BEFORE.search(text, 0, start)
            or not (value.islower() or (len(parts) == 1 and value.endswith("s")))):
        return False
    return all(w.isalpha() and _unknown_word_known(w, words)
               and not any(n in given_names() or n in surnames() for n in (w, w.capitalize()))
               for w in parts)


def _common_noun(value: str, nouns: frozenset[str]) -> bool:
    """Whether ``value`` is a capitalised common noun ("Bookkeeper") or a phrase of
    common words ("Quiet Evenings"): every word an English noun or adjective (or a
    stop word), none a listed name or a country."""
    words = _RE_PHRASE_SPLIT.split(value.strip())
    content = [w for w in words if w.lower() not in _STOP_WORDS]
    if not content or not value[:1].isupper():
        return False
    for word in content:
        if not word.isalpha() or word in given_names() or word in surnames() or (
                word in NOT_NAMES or word in _COUNTRY_WORDS):
            return False  # a listed name, even one that is also a word ("Frank", "Dale")
        low = word.lower()
        if not (low in nouns or (low.endswith("s") and low[:-1] in nouns)):
            return False
    return True


_RE_PHRASE_SPLIT = re.compile(r"[ \t,&]+")
_COUNTRY_WORDS = frozenset(w for c in _FakerAddress.countries for w in c.split())


def common_nouns(nlp: object) -> frozenset[str]:
    """English common nouns and adjectives of a spaCy pipeline's lemmatizer index
    (WordNet's, in the English models), lower case; empty when the pipeline has none."""
    try:
        table = nlp.get_pipe("lemmatizer").lookups.get_table("lemma_index")  # type: ignore[attr-defined]
        return frozenset(w for pos in ("noun", "adj") for w in table[pos] if w.isalpha())
    except (KeyError, AttributeError, ValueError):
        return frozenset()


_RE_BARE_NUMBER = re.compile(r"\d{4,5}(?:-\d{4})?")
_RE_YEAR = re.compile(r"1\d{3}|20\d\d")
# words, then a postcode: "Vellby NO 4410", "Quinta do Vale Fresco 4470-201"
_RE_PLACE_POSTCODE = re.compile(r"[^\W\d_][^\d]*\s(\d{4,5})(?:-\d{3,4})?")


# "... in X": a place ("two years at Brightwater in Tromsdal"), unless X has a company word
_RE_IN_BEFORE = re.compile(r"(?<![\w-])in[ \t]+\Z")
_RE_ORG_WORD = re.compile(rf"\b(?:{_ORG_SUFFIX}|(?i:university|school|office|department|agency|"
                          r"council|committee|board|party|team|club|church|hospital))\b")


def _entity(text: str, result: RecognizerResult, start: int | None = None,
            end: int | None = None, words: frozenset[str] = frozenset()) -> str:
    """The entity of a result, with two corrections of the NER's labels for numbers:

    * a bare 4-5 digit number (or ZIP+4) that is not a year is not a date: it is
      labelled a postcode (a ZIP in US text, a postcode after a town elsewhere), the
      commonest such number in text that names people and places;
    * words ending in such a number ("Vellby NO 4410", "Monteverde Alto 2044"), which
      the NER calls a date or an organisation, are a place and its postcode: neither
      dates nor organisations end in a 4-5 digit number that is not a year;
    * an organisation shaped like a person's name (:func:`vault.pii.names.person_shaped`),
      or two words that are listed names or no English word (:func:`_unknown_person`,
      given ``words``), is a person; one right after "in" without a company word is a
      place.
    """
    if _tier(result) != _TIER_NER or result.entity_type not in ("DATE_TIME", "ORGANIZATION"):
        return result.entity_type
    start = result.start if start is None else start
    end = result.end if end is None else end
    value = text[start:end]
    if result.entity_type == "ORGANIZATION":
        if person_shaped(value) or _unknown_person(text, start, value, words):
            return "PERSON"
        if _RE_IN_BEFORE.search(text, 0, start) and not _RE_ORG_WORD.search(value):
            return "LOCATION"
    if result.entity_type == "DATE_TIME" and _RE_BARE_NUMBER.fullmatch(value):
        return result.entity_type if _RE_YEAR.fullmatch(value) else "US_ZIP_CODE"
    place = _RE_PLACE_POSTCODE.fullmatch(value)
    if place is not None and not _RE_YEAR.fullmatch(place.group(1)):
        return "LOCATION"
    return result.entity_type


def _unknown_person(text: str, start: int, value: str, words: frozenset[str]) -> bool:
    """Whether words the NER took for an organisation are a person's name, or two joined
    by "and", that nobody listed: two words (or "X and Y") each a listed given name or
    surname or a capitalised word that is no English word and no two English words run
    together ("Ilvar Ostrenko", "Ostrenko and Hale"), no company word, and not after
    "at/from/for/joined/with" (where one works)."""
    parts = _RE_SPACES.split(_possessive(value.strip()))
    if len(parts) == 3 and parts[1] == "and":
        parts = [parts[0], parts[2]]
    if (len(parts) != 2 or not words or _RE_ORG_WORD.search(value)
            or _RE_ORG_BEFORE.search(text, 0, start)):
        return False
    return all(w in given_names() or w in surnames() or (
        w.isalpha() and w[:1].isupper() and not w.isupper()
        and not _unknown_word_known(w, words) and not _compound(w.lower(), words))
        for w in parts)


def _possessive(value: str) -> str:
    return value[:-2] if value.endswith(("'s", "\u2019s")) else value


_RE_SPACES = re.compile(r"\s+")


def _address_lines(text: str, found: list[tuple[Span, int]]) -> list[tuple[Span, int]]:
    """The NER's people and organisations on the lines *after* the street line of an
    address block are places: those lines hold the unit, town, region, country and
    postcode ("Campo Sereno", "HOLT", "Varga Squares"); the addressee's name and
    company stand before the street line, outside the block."""
    blocks = [(s.start, s.end) for s, tier in found if tier == _TIER_BLOCK]
    if not blocks:
        return found
    lines = [(text.find("\n", a, b), b) for a, b in blocks]
    out: list[tuple[Span, int]] = []
    for span, tier in found:
        if (tier == _TIER_NER and span.entity in _NOT_IN_ADDRESS_LINES
                and any(0 <= a < span.start and span.end <= b for a, b in lines)):
            span = Span(span.start, span.end, "LOCATION", span.score)
        out.append((span, tier))
    return out


_NOT_IN_ADDRESS_LINES = frozenset({"PERSON", "ORGANIZATION", "NRP"})


def _ner_lines(text: str, start: int, end: int, tier: int) -> list[tuple[int, int]]:
    """The NER's spans cut at line breaks: a name, a company or a place does not run
    from one line of an address or a signature into the next ("Elm St\\n Apt",
    "Keller-Brandt\\nOakview"); each line's part keeps the label (an address block is
    ours, tier 0, and is not cut)."""
    value = text[start:end]
    if tier != _TIER_NER or "\n" not in value:
        return [(start, end)]
    out: list[tuple[int, int]] = []
    pos = start
    for part in value.split("\n"):
        a = pos + len(part) - len(part.lstrip())
        b = pos + len(part.rstrip())
        if b > a:
            out.append((a, b))
        pos += len(part) + 1
    return out


_RE_TOWN_GAP = re.compile(r"[ \t]+|,[ \t]*")
_RE_TOWN_END = re.compile(r"[ \t]*(?:[,.;\n]|\d|\Z)")
_TOWN_LABELS = frozenset({"PERSON", "ORGANIZATION", "NRP"})


def _towns_after_streets(text: str, found: list[tuple[Span, int]]) -> list[tuple[Span, int]]:
    """The NER's person or organisation right after a street line or unit, on its line,
    is the town ("Suite 12 Tromsdal", "Birkevej 15, Tromsdal V"): after a comma
    only when the line, a postcode or another field follows."""
    ends = {s.end for s, tier in found if s.entity == "US_STREET_ADDRESS" and tier > _TIER_NER}
    if not ends:
        return found
    out: list[tuple[Span, int]] = []
    for span, tier in found:
        if tier == _TIER_NER and span.entity in _TOWN_LABELS:
            for e in ends:
                gap = _RE_TOWN_GAP.fullmatch(text, e, span.start) if e < span.start else None
                if gap is not None and ("," not in gap.group()
                                        or _RE_TOWN_END.match(text, span.end)):
                    span = Span(span.start, span.end, "LOCATION", span.score)
                    break
        out.append((span, tier))
    return out


#: recognizers of one street line ("12 Elm Street", "Rua Nova 25", "412 oak st apt 4b")
_STREET_LINE_RECOGNIZERS = frozenset({"UsStreetAddressRecognizer", "NoteStreetRecognizer"})


def _not_inside_streets(found: list[tuple[Span, int]],
                        results: list[RecognizerResult]) -> list[tuple[Span, int]]:
    """People and organisations found strictly inside a street line are the street's
    name ("Rua Nova" of "31 Rua Nova 25", "Lily" of "12 Lily Way"): they
    are left to the street."""
    streets = [(r.start, r.end) for r in results
               if (r.recognition_metadata or {}).get(RecognizerResult.RECOGNIZER_NAME_KEY)
               in _STREET_LINE_RECOGNIZERS]
    if not streets:
        return found
    return [(span, tier) for span, tier in found
            if span.entity not in _NAMES_IN_STREETS
            or not any(a <= span.start and span.end <= b and (a, b) != (span.start, span.end)
                       for a, b in streets)]


_NAMES_IN_STREETS = frozenset({"PERSON", "ORGANIZATION"})

# a line of a signature or letter head: at most six words, no digit, no field label,
# e-mail or sentence ending; a leading bullet or "???" is not part of it
_RE_LINE = re.compile(r"[^\n]*")
_RE_LINE_LEAD = re.compile(r"[^\w\n]*")
_RE_SHORT_LINE = re.compile(r"[^\W\d_][^\d\n:@/!?;]{1,58}[^\W\d_.]\.?")
_TITLE_GLUE = frozenset({"and", "of", "&"})


def _lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of each line's content, without a leading bullet and the blanks at
    its edges (empty lines have start == end)."""
    out: list[tuple[int, int]] = []
    for m in _RE_LINE.finditer(text):
        if m.start() > 0 and text[m.start() - 1] != "\n":
            continue  # finditer's empty match at the end of a line
        a = _RE_LINE_LEAD.match(text, m.start(), m.end())
        start = a.end() if a else m.start()
        end = start + len(text[start : m.end()].rstrip())
        out.append((start, max(start, end)))
    return out


def _short_line(text: str, start: int, end: int) -> bool:
    value = text[start:end]
    if not _RE_SHORT_LINE.fullmatch(value):
        return False
    words = value.replace(",", " ").split()
    return len(words) <= 6 and not any(
        w.lower() in _STOP_WORDS and w.lower() not in _TITLE_GLUE for w in words)


def _signature_lines(text: str, found: list[tuple[Span, int]]) -> list[tuple[Span, int]]:
    """A signature or letter head: a line that is a person's name, then one or two short
    lines nobody claimed, then the address (or the end of the block). Two lines are the
    person's title and company ("Senior loan officer", "Keller-Brandt"); one line is the
    company when the address follows at once, the title otherwise. A short line right
    above a line that is a country is the town ("TROMSDAL" above "Norway")."""
    if "\n" not in text:
        return []
    lines = _lines(text)
    covered = [(s.start, s.end, s.entity) for s, _ in found]
    patterns = [(s.start, s.end) for s, tier in found if tier > _TIER_NER]

    def fully(start: int, end: int, entities: frozenset[str] | None = None) -> bool:
        return end > start and any(a <= start and end <= b and (entities is None or e in entities)
                                   for a, b, e in covered)

    def touched(start: int, end: int) -> bool:  # by a pattern (the NER may be wrong)
        return any(a < end and start < b for a, b in patterns)

    def starts_address(start: int, end: int) -> bool:
        return end > start and any(a == start and e in _ADDRESS_ENTITIES for a, b, e in covered)

    out: list[tuple[Span, int]] = []
    towns: set[int] = set()
    for i, (start, end) in enumerate(lines):
        # a town line above a country line
        if (i + 1 < len(lines) and _short_line(text, start, end) and not touched(start, end)
                and fully(*lines[i + 1], frozenset({"LOCATION"}))
                and len(text[start:end].split()) <= 4):
            out.append((Span(start, end, "LOCATION", 0.5), 2))
            towns.add(i)
    for i, (start, end) in enumerate(lines):
        if not fully(start, end, frozenset({"PERSON"})):
            continue
        picked: list[tuple[int, int]] = []
        j, blanks = i + 1, 0
        while j < len(lines) and len(picked) < 2:
            a, b = lines[j]
            if a == b:
                blanks += 1
                if blanks > 1:
                    break
                j += 1
                continue
            if j in towns or not _short_line(text, a, b) or fully(a, b, _NOT_SIGNATURE):
                break
            if any(e == "PERSON" and x < b and a < y for x, y, e in covered):
                break  # another person's name: a list of names, not a signature
            picked.append((a, b))
            blanks = 0
            j += 1
        if not picked:
            continue
        nxt = next(((a, b) for a, b in lines[j:] if a != b), None)
        address = nxt is not None and starts_address(*nxt)
        if len(picked) == 2:
            labels = ["TITLE", "ORGANIZATION"]
        else:
            labels = ["ORGANIZATION" if address else "TITLE"]
        for (a, b), label in zip(picked, labels, strict=True):
            out.append((Span(a, b, label, 0.5), 2))
    return out


# "Ana Li, the site foreman, said": a job title in apposition to a person
_RE_APPOSITIVE = re.compile(
    r",[ \t]+(?:the|our|their|his|her|its|a|an)[ \t]+"
    r"(?P<x>[^\W\d_][\w'’\-]*(?:[ \t]+[^\W\d_][\w'’\-]*){0,3}),[ \t]")


def _appositive_titles(text: str, found: list[tuple[Span, int]]) -> list[tuple[Span, int]]:
    """A person's title in apposition ("Ana Li, the site foreman, said ..."): TITLE."""
    out: list[tuple[Span, int]] = []
    for span, _ in found:
        if span.entity != "PERSON":
            continue
        m = _RE_APPOSITIVE.match(text, span.end)
        if m is None:
            continue
        words = m.group("x").split()
        if all(w.lower() in _STOP_WORDS for w in words):
            continue
        out.append((Span(m.start("x"), m.end("x"), "TITLE", 0.5), 2))
    return out


_ADDRESS_ENTITIES = frozenset({"US_STREET_ADDRESS"})
# lines that are not a title or a company: a phone, an e-mail, a place
_NOT_SIGNATURE = frozenset({"PHONE_NUMBER", "EMAIL_ADDRESS", "LOCATION", "US_STREET_ADDRESS",
                            "DATE_TIME", "URL"})


def _spans_local(
    texts: Sequence[str | None], batch_size: int, model: str | None, threshold: float
) -> list[list[Span]]:
    analyzer = get_analyzer(model)
    nouns = _vocab(common_nouns, model)
    words = _vocab(english_words, model)
    out: list[list[Span]] = [[] for _ in texts]
    todo = [(i, t) for i, t in enumerate(texts) if t is not None and t.strip()]
    if not todo:
        return out
    docs = analyzer.nlp_engine.process_batch(
        [t for _, t in todo], LANGUAGE, batch_size=batch_size, n_process=1
    )
    for (i, _), (text, artifacts) in zip(todo, docs, strict=True):
        results = analyzer.analyze(
            text, LANGUAGE, nlp_artifacts=artifacts, score_threshold=threshold
        )
        found = [(Span(a, b, _entity(text, r, a, b, words), r.score), tier) for r in results
                 if not _not_personal(text, r, nouns, words)
                 for tier in (_tier(r),) for a, b in _ner_lines(text, r.start, r.end, tier)]
        found = _not_inside_streets(found, results)
        found = _address_lines(text, found)
        found += _signature_lines(text, found)
        found += _appositive_titles(text, found)
        people = [(s.start, s.end) for s, _ in found if s.entity == "PERSON"]
        found += [(Span(a, b, "PERSON", _REPEAT_SCORE), 2) for a, b in repeated_names(text, people)]
        found = _towns_after_streets(text, found)
        found = _numbers_in_addresses(text, found)
        found += _unknown_proper_nouns(text, artifacts.tokens, found, words)
        # a date's leftover without a digit, a month or a weekday ("12345 | last night")
        out[i] = [s for s in _relabelled(text, _resolve(found, text), words)
                  if s.entity != "DATE_TIME"
                  or _RE_DATE_ANCHOR.search(text, s.start, s.end) is not None]
    return out


def _relabelled(text: str, spans: list[Span], words: frozenset[str]) -> list[Span]:
    """Labels from the shape of each span's line (:func:`vault.pii.relabel.line_label`)."""
    out: list[Span] = []
    for s in spans:
        entity = line_label(text, s.start, s.end, s.entity)
        if entity is not None:
            out.append(s if entity == s.entity else Span(s.start, s.end, entity, s.score))
    out.sort(key=lambda s: s.start)
    towns = town_labels(text, [(s.start, s.end, s.entity) for s in out], words)
    return [s if e == s.entity else Span(s.start, s.end, e, s.score)
            for s, e in zip(out, towns, strict=True)]


_VOCAB: dict[tuple[str, str | None], frozenset[str]] = {}


def _vocab(build: Callable[[object], frozenset[str]], model: str | None) -> frozenset[str]:
    """A word list derived once per model from its spaCy pipeline (nouns, all words)."""
    key = (build.__name__, model)
    got = _VOCAB.get(key)
    if got is None:
        nlp = get_analyzer(model).nlp_engine.nlp[LANGUAGE]  # type: ignore[attr-defined]
        got = _VOCAB[key] = build(nlp)
    return got


_RE_BARE_NUMBERS = re.compile(r"\d{1,5}(?:[ \t]+\d{1,5})*")
_RE_ADDRESS_GAP = re.compile(r"[ \t]*,?[ \t]*")
_PLACE_ENTITIES = frozenset({"LOCATION", "US_STREET_ADDRESS", "US_ZIP_CODE"})


def _numbers_in_addresses(text: str, found: list[tuple[Span, int]]) -> list[tuple[Span, int]]:
    """A bare number (or numbers) that the NER calls a date, right before or after a
    street, a town or a postcode on its line, is a house, unit or postcode number of that
    address ("Birkevej 18", "36 rue X"): a date is no bare number next to a place,
    unless it is a year (1000-2099)."""
    places = [(s.start, s.end) for s, _ in found if s.entity in _PLACE_ENTITIES]
    if not places:
        return found
    out: list[tuple[Span, int]] = []
    for span, tier in found:
        if (tier == _TIER_NER and span.entity == "DATE_TIME"
                and _RE_BARE_NUMBERS.fullmatch(text, span.start, span.end)
                and not _RE_YEAR.fullmatch(text, span.start, span.end)
                and any((e <= span.start and _RE_ADDRESS_GAP.fullmatch(text, e, span.start))
                        or (span.end <= s and _RE_ADDRESS_GAP.fullmatch(text, span.end, s))
                        for s, e in places)):
            span = Span(span.start, span.end, "LOCATION", span.score)
        out.append((span, tier))
    return out


def english_words(nlp: object) -> frozenset[str]:
    """Every word of a spaCy pipeline's lemmatizer index (nouns, verbs, adjectives,
    adverbs; WordNet's in the English models) and its irregular forms ("met", "geese"),
    lower case; empty when it has none."""
    try:
        lookups = nlp.get_pipe("lemmatizer").lookups  # type: ignore[attr-defined]
        index, irregular = lookups.get_table("lemma_index"), lookups.get_table("lemma_exc")
        pos = ("noun", "verb", "adj", "adv")
        return frozenset(w for p in pos for table in (index, irregular) for w in table[p]
                         if w.isalpha())
    except (KeyError, AttributeError, ValueError):
        return frozenset()


def _unknown_proper_nouns(text: str, doc: object, found: list[tuple[Span, int]],
                          words: frozenset[str]) -> list[tuple[Span, int]]:
    """Capitalised proper nouns (the tagger's ``PROPN``) that no recognizer claimed and
    that are no English word: a name of someone or somewhere nobody listed ("Ostrova
    said", "Suite 4 Vardenby"). What cannot be classified is sensitive: a run of them is
    redacted, labelled as the detection it touches on its line (a town after a street
    takes the address's label), else as a person (weak tier: it only fills gaps)."""
    if not words:
        return []
    claimed = [(s.start, s.end, s.entity) for s, _ in found]
    runs: list[list[int]] = []
    for tok in doc:  # type: ignore[attr-defined]
        value = tok.text
        if (tok.pos_ != "PROPN" or not value.isalpha() or len(value) < 3
                or not value[0].isupper() or _unknown_word_known(value, words)
                or tok.lemma_.lower() in words):
            continue
        a, b = tok.idx, tok.idx + len(value)
        if any(s < b and a < e for s, e, _ in claimed):
            continue
        if runs and text[runs[-1][1] : a] == " ":
            runs[-1][1] = b
        else:
            runs.append([a, b])
    out: list[tuple[Span, int]] = []
    for a, b in runs:
        entity = _unknown_label(text, a, b, words)
        for s, e, ent in claimed:
            gap = text[e:a] if e <= a else text[b:s] if b <= s else None
            if gap is not None and len(gap) <= 2 and not gap.strip(" ,"):
                entity = ent
                break
        out.append((Span(a, b, entity, 0.4), _TIER_NER))
    return out


# "at X", "from X", "for X", "joined X": where one works or what one comes from
_RE_ORG_BEFORE = re.compile(r"(?<![\w-])(?:at|from|for|joined|with)[ \t]+\Z", re.IGNORECASE)


def _unknown_label(text: str, start: int, end: int, words: frozenset[str]) -> str:
    """The label of an unknown proper noun alone: a place after "in"; a person when a
    word of it is a listed name; an organisation after "at/from/for/joined/with" or when
    it is two English words run together ("Brightwater", "Cloudnest"); else a person."""
    value = text[start:end]
    if _RE_IN_BEFORE.search(text, 0, start):
        return "LOCATION"
    if any(w in given_names() or w in surnames() for w in value.split()):
        return "PERSON"
    if _RE_ORG_BEFORE.search(text, 0, start) or any(
            _compound(w.lower(), words) for w in value.split()):
        return "ORGANIZATION"
    return "PERSON"


def _compound(word: str, words: frozenset[str]) -> bool:
    """Whether ``word`` is two English words of four letters or more run together."""
    return any(word[:i] in words and _unknown_word_known(word[i:], words)
               for i in range(4, len(word) - 3))


def _unknown_word_known(value: str, words: frozenset[str]) -> bool:
    low = value.lower()
    return (low in words or low in _STOP_WORDS or value in _NOT_ORGS
            or (low.endswith("s") and low[:-1] in words)
            or (low.endswith("es") and low[:-2] in words)
            or (low.endswith("ies") and low[:-3] + "y" in words))


def _worker_chunk(args: tuple[list[str | None], int, str | None, float]) -> list[list[Span]]:
    texts, batch_size, model, threshold = args
    return _spans_local(texts, batch_size, model, threshold)


def _warm(model: str | None) -> None:
    get_analyzer(model)


def find_spans(
    texts: Sequence[str | None] | pl.Series,
    *,
    batch_size: int = 128,
    n_process: int | None = 1,
    model: str | None = None,
    score_threshold: float = DEFAULT_THRESHOLD,
) -> list[list[Span]]:
    """Merged PII spans per text. ``n_process=None``: all cores when the input is large."""
    items: list[str | None] = texts.to_list() if isinstance(texts, pl.Series) else list(texts)
    procs = (os.cpu_count() or 1) if n_process is None else n_process
    if procs <= 1 or len(items) < PARALLEL_MIN_TEXTS:
        return _spans_local(items, batch_size, model, score_threshold)
    # several chunks per worker keep them evenly loaded; at most _CHUNK texts each
    size = max(1, min(_CHUNK, -(-len(items) // (procs * 4))))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    parts = _pool(procs, model).map(
        _worker_chunk, [(c, batch_size, model, score_threshold) for c in chunks]
    )
    return [spans for part in parts for spans in part]


_POOLS: dict[tuple[int, str | None], ProcessPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(procs: int, model: str | None) -> ProcessPoolExecutor:
    """A worker pool kept for the life of the process: batches of one ingest pay the
    workers' start-up (imports + model load, seconds) once, not per batch."""
    with _POOLS_LOCK:
        pool = _POOLS.get((procs, model))
        if pool is None:
            pool = ProcessPoolExecutor(
                max_workers=procs,
                mp_context=get_context("spawn"),  # Polars and spaCy are not fork-safe
                initializer=_warm,
                initargs=(model,),
            )
            _POOLS[(procs, model)] = pool
        return pool


@atexit.register
def shutdown_pools() -> None:
    """Stop the worker pools (also run at interpreter exit)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


def redact_texts(
    texts: Sequence[str | None] | pl.Series,
    *,
    batch_size: int = 128,
    n_process: int | None = 1,
    model: str | None = None,
    score_threshold: float = DEFAULT_THRESHOLD,
) -> list[str | None]:
    """Each text with its PII spans replaced by ``<ENTITY>``; order and ``None`` kept."""
    items: list[str | None] = texts.to_list() if isinstance(texts, pl.Series) else list(texts)
    all_spans = find_spans(
        items, batch_size=batch_size, n_process=n_process, model=model,
        score_threshold=score_threshold,
    )
    out: list[str | None] = []
    for text, spans in zip(items, all_spans, strict=True):
        if text is None or not spans:
            out.append(text)
            continue
        pieces: list[str] = []
        pos = 0
        for span in spans:
            pieces.append(text[pos : span.start])
            pieces.append(f"<{span.entity}>")
            pos = span.end
        pieces.append(text[pos:])
        out.append("".join(pieces))
    return out
