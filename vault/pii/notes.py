"""Recognizers for how canvass notes are typed: fast, lower-case, abbreviated.

Canvassers write ``talked to maria lopez at 412 oak st apt 4b, call 919/555-0134,
come back 3/14``: lower-case names and street lines, every US phone shape, dates
written ``m/d`` and units written ``apt 4b`` or ``#3``. The NER and the other
recognizers expect edited prose. These patterns come from US postal and phone
conventions and from the words notes use to introduce a person (relations,
"spoke with", "ask for"), not from any evaluation text:

* **street line, any case**: a house number, up to three words (or a numbered
  street, "14th"), a street type (``st``, ``ave``, ...), an optional unit;
  never after a duration or distance word ("10 minute drive");
* **unit**: ``apt 4b``, ``Apt. 12``, ``unit 7``, ``suite 210``, ``#3``, any case;
* **phone**: ``(aaa) bbb-cccc``, ``aaa/bbb-cccc``, ``aaa.bbb.cccc``, ``aaa bbb cccc``,
  ``+1 ...``, ``1-aaa-...``, ten bare digits, and 7-digit ``bbb-cccc`` (exchange
  2-9); never inside a longer number, a date or a decimal;
* **date**: ``m/d``, ``m/d/yy``, ``m/d/yyyy`` (month 1-12, day 1-31), ISO dates,
  month names and abbreviations with a day ("Mar 3", "april 9th"), with an
  optional weekday ("Tue 5/6");
* **age**: ``(67)`` or ``(age 67)`` right after a word, "she is 67", "age: 67";
* **lower-case names**: a given name followed by a surname, both from Faker's
  lists of every locale (:func:`vault.pii.names.given_names`), in lower case; or
  one lower-case name after a cue word ("husband tomasz", "ask for mei",
  "spoke w/ ana");
* **ZIP after a place**: five digits (or ZIP+4) closing an address after a town.
"""

from __future__ import annotations

import re

from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from spacy.lang.en.stop_words import STOP_WORDS

from vault.pii.checks import STREET_SUFFIX_RE
from vault.pii.group_pattern import TIER_KEY, GroupPatternRecognizer

__all__ = ["note_recognizers"]

_UNIT = (r"(?:(?<![\w])(?i:apt|apartment|unit|suite|ste|lot|rm|room|bldg|fl)\.?[ \t]*#?[ \t]*"
         r"(?:\d{1,5}[A-Za-z]?|[A-Za-z]\d{0,4})\b|#[ \t]?\d{1,4}[A-Za-z]?\b(?![-.]\d))")
_NOT_BEFORE_SUFFIX = (r"(?!(?i:minutes?|mins?|hours?|hrs?|miles?|mi|blocks?|days?|weeks?|"
                      r"months?|years?|yrs?|times?|kids?|people|voters?|dogs?|cats?|cars?|"
                      r"doors?|houses?|homes?|of|and|or|the|to|in|on|at|for)\b)")
_WORD = r"[^\W\d_][\w'’.\-]*"
_STREET_NAME_WORD = rf"(?:{_NOT_BEFORE_SUFFIX}{_WORD}|\d{{1,3}}(?i:st|nd|rd|th))"
_STREET = (rf"(?<![\w/.\-])\d{{1,6}}[A-Za-z]?[ \t]+(?:(?i:[nsew]{{1,2}})\.?[ \t]+)?"
           rf"(?:{_STREET_NAME_WORD}[ \t]+){{1,3}}(?i:{STREET_SUFFIX_RE})\b\.?"
           rf"(?:,?[ \t]*{_UNIT})?")

_EDGE_L = r"(?<![\w+/.\-])"
_EDGE_R = r"(?![\w/]|[.\-]\d)"
_PHONE = (
    rf"{_EDGE_L}(?:(?:\+1|1)[ \t.\-]?)?(?:\([2-9]\d\d\)[ \t]?|[2-9]\d\d[ \t./\-])"
    rf"[2-9]\d\d[ \t.\-]\d{{4}}{_EDGE_R}"
    rf"|{_EDGE_L}(?:\+1|1)?[2-9]\d\d[2-9]\d{{6}}{_EDGE_R}"
)
_PHONE7 = rf"{_EDGE_L}[2-9]\d\d[\-.]\d{{4}}{_EDGE_R}"

_MONTH = (r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|"
          r"aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_WEEKDAY = r"(?i:mon|tues?|wed|thu(?:rs?)?|fri|sat|sun)[a-z]*\.?,?[ \t]+"
_DATE = (
    rf"(?<![\w/.\-])(?:{_WEEKDAY})?(?:1[0-2]|0?[1-9])/(?:3[01]|[12]\d|0?[1-9])"
    rf"(?:/(?:\d{{4}}|\d{{2}}))?(?![\w/]|\.\d)"
    rf"|(?<![\w\-])(?:19|20)\d\d-[01]\d-[0-3]\d(?![\w\-])"
    rf"|\b(?:{_WEEKDAY})?{_MONTH}\.?[ \t]+(?:3[01]|[12]\d|0?[1-9])(?i:st|nd|rd|th)?\b"
    rf"(?:,?[ \t]+(?:19|20)\d\d\b)?"
)
_AGE_CUES = [
    r"(?<=[^\W\d_])[ \t]+\((?i:age[ \t]*)?(?P<x>(?:1[89]|[2-9]\d|1[01]\d))\)",
    r"\b(?i:(?:she|he|they|i)[ \t]+(?:is|was|are|am)|(?:she|he|they)'s|age:?)[ \t]+"
    r"(?P<x>(?:1[89]|[2-9]\d|1[01]\d))\b(?![ \t]*(?:%|percent|minutes|mins|hours|miles|"
    r"blocks|doors|times|votes|voters|people|years? ago|degrees))",
]
_ZIP = [r"(?<=[^\W\d_])(?<!voter)(?<!\bid)(?<!\bno)(?<!\bnumber),?[ \t]+(?P<x>\d{5}(?:-\d{4})?)"
        r"(?![\w\-/.]|[ \t]*(?:voters|people|times))"]

_HONORIFIC = (r"(?P<x>\b(?i:mrs|mr|ms|miss|dr)\.?[ \t]+"
              r"(?!(?i:and|or|the|to|at|on|in|is|was|said|says|wants)\b)[^\W\d_][\w'’\-]+"
              r"(?:[ \t]+[A-Z][\w'’\-]+)?)")
_CUED_NAME = (r"\b(?i:ask(?:ed)?[ \t]+for|talked[ \t]+to|spoke[ \t]+(?:to|with|w/?)|neighbou?r|"
              r"husband|wife|son|daughter|grand(?:son|daughter|ma|pa|mother|father)|mom|dad|"
              r"sister|brother|caller|owner|tenant|pastor|volunteer|contact:?)"
              r"[ \t]+(?P<x>[A-Z][\w'’\-]+(?:[ \t]+[A-Z][\w'’\-]+)?)")
_TOWN = (rf"\b(?i:{STREET_SUFFIX_RE})\.?,?[ \t]+(?:{_UNIT}[ \t,]+)?"
         r"(?P<x>[^\W\d_][\w'’\-]+(?:[ \t]+[^\W\d_][\w'’\-]+){0,2}),?[ \t]+\d{5}(?:-\d{4})?\b")
_MILITARY = (r"(?P<x>\b(?i:usns|usnv|uscgc|uss|psc[ \t]+\d{3,5},?[ \t]+box|unit[ \t]+\d{3,5},?"
             r"[ \t]+box|cmr[ \t]+\d{3,5},?[ \t]+box)[ \t]+[\w'’\-]+[ \t]*,?[ \t]*\n?[ \t]*"
             r"(?i:apo|fpo|dpo)[ \t]+(?i:aa|ae|ap)[ \t]+\d{5}\b)")
_LIST = re.compile(r"(?<![\w'’\-])([A-Z][\w'’\-]+)((?:,[ \t]+[A-Z][\w'’\-]+)+),?[ \t]+"
                   r"(?:and|&)[ \t]+([A-Z][\w'’\-]+)\b")
_CUE = (r"(?i:talked[ \t]+to|spoke[ \t]+(?:to|with|w/?)|spoke|met|meet|voter|resident|"
        r"neighbou?r|husband|wife|son|daughter|mom|mother|dad|father|grandson|granddaughter|"
        r"grandma|grandpa|grandmother|grandfather|sister|brother|aunt|uncle|cousin|partner|"
        r"roommate|owner|tenant|landlord|caller|ask[ \t]+for|asked[ \t]+for|w/|with|per|"
        r"from|and|&|hh[ \t]+of|family|pastor|mrs?|ms|dr)\.?:?")
_CAP_THEN_LOWER = re.compile(r"\b([A-Z][a-zà-öø-ÿ'’\-]+)[ \t]+([a-zà-öø-ÿ][a-zà-öø-ÿ'’\-]+)\b")
_LOWER_WORD = re.compile(r"(?<![\w@.'’\-])[a-zà-öø-ÿā-ž][a-zà-öø-ÿā-ž'’\-]+(?![\w@\-])")


class LowerCaseNameRecognizer(EntityRecognizer):
    """PERSON for lower-case names: given name + surname from the name lists, or one
    listed name right after a cue word ("husband tomasz")."""

    SCORE = 0.6

    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON"], name="LowerCaseNameRecognizer")
        self._cue = re.compile(rf"(?:^|(?<=[\s,;:(]))(?:{_CUE})[ \t]+$")

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities: list[str],
                nlp_artifacts: NlpArtifacts | None = None) -> list[RecognizerResult]:
        from vault.pii.names import given_names, surnames

        given, family = _lower_lists(given_names(), surnames())
        words = [(m.start(), m.end(), m.group()) for m in _LOWER_WORD.finditer(text)]
        out: list[RecognizerResult] = []
        # a given name, an initial and a surname ("daniel k brenner", "ana t. ruiz")
        for m in _RE_LOWER_INITIAL.finditer(text):
            if m.group(1) in given and m.group(2) in family:
                out.append(self._result(m.start(), m.end()))
        # a name introduced as one, in any case ("my name is talita", "call me bruno")
        for m in _RE_INTRODUCED.finditer(text):
            first, second = m.group(1), m.group(2)
            if first.lower() in _NOT_A_NAME:
                continue
            stop = m.end(1)
            if second is not None and second.lower() not in _NOT_A_NAME:
                stop = m.end(2)
            out.append(self._result(m.start(1), stop))
        # people listed together in lower case ("marta, jonas, elif and tomas"):
        # each word, when most of them are listed names
        for m in _RE_LOWER_LIST.finditer(text):
            items = list(_RE_LIST_WORD.finditer(m.group()))
            names = [i for i in items if i.group() in given or i.group() in family]
            if len(items) >= 3 and 3 * len(names) >= 2 * len(items):
                out += [self._result(m.start() + i.start(), m.start() + i.end()) for i in items
                        if i.group() not in _NOT_A_NAME]
        # a capitalised given name + a lower-case surname ("Anne ortiz")
        for m in _CAP_THEN_LOWER.finditer(text):
            if m.group(1) in given_names() and m.group(2) in family:
                out.append(self._result(m.start(), m.end()))
        i = 0
        while i < len(words):
            start, end, word = words[i]
            nxt = words[i + 1] if i + 1 < len(words) else None
            adjacent = nxt is not None and text[end:nxt[0]] in (" ", "\t")
            if word in given and adjacent and nxt is not None and nxt[2] in family:
                out.append(self._result(start, nxt[1]))
                i += 2
                continue
            before = text[max(0, start - 30):start]
            cue = self._cue.search(before)
            cued = cue is not None and (
                # "and" joins a name to a name ("Ana Li and tomasz"), not "rock and roll"
                cue.group().strip().lower() not in ("and", "&")
                or _after_name(text[:cue.start()], given, family))
            verb = (word in given and adjacent and nxt is not None and nxt[2] in _NAME_VERBS
                    # "my friend lives", "the guard said": a noun, not a name
                    and _RE_DETERMINER_BEFORE.search(before) is None)
            if (word in given or word in family) and (cued or verb):
                stop = end
                if adjacent and nxt is not None and (nxt[2] in family or nxt[2] in given):
                    stop = nxt[1]
                    i += 1
                out.append(self._result(start, stop))
            i += 1
        return out

    def _result(self, start: int, end: int) -> RecognizerResult:
        return RecognizerResult("PERSON", start, end, self.SCORE, recognition_metadata={
            RecognizerResult.RECOGNIZER_NAME_KEY: "LowerCaseNameRecognizer", TIER_KEY: 2,
        })


_LC = "a-zà-öø-ÿā-ž"
_RE_LOWER_INITIAL = re.compile(rf"(?<![\w@.'’\-])([{_LC}][{_LC}'’\-]+)"
                               rf"[ \t]+[a-z]\.?[ \t]+([{_LC}][{_LC}'’\-]+)(?![\w@\-])")
_RE_INTRODUCED = re.compile(
    rf"\b(?i:my[ \t]+name[ \t]+is|(?:people|everyone|everybody|they|friends)[ \t]+calls?[ \t]+me"
    rf"|call[ \t]+me|i[ \t]+am[ \t]+called|i'?m[ \t]+called)[ \t]+"
    rf"([{_LC}][{_LC}'’\-]+)(?:[ \t]+([{_LC}][{_LC}'’\-]+))?(?![\w@\-])")
_RE_LOWER_LIST = re.compile(
    rf"(?<![\w'’\-])[{_LC}][{_LC}'’\-]+(?:,[ \t]+[{_LC}][{_LC}'’\-]+)+,?[ \t]+(?:and|&)[ \t]+"
    rf"[{_LC}][{_LC}'’\-]+(?![\w\-])")
_RE_LIST_WORD = re.compile(rf"(?<![\w'’\-])(?!(?:and)\b)[{_LC}][{_LC}'’\-]+")
_RE_DETERMINER_BEFORE = re.compile(
    r"\b(?i:my|your|his|her|our|their|the|a|an|this|that|its)[ \t]+$")
_RE_LAST_WORD = re.compile(r"([^\W\d_][\w'’\-]*)[ \t,]*$")


def _after_name(before: str, given: frozenset[str], family: frozenset[str]) -> bool:
    """Whether the word before a cue ("... X and") is a name: capitalised, or listed."""
    m = _RE_LAST_WORD.search(before)
    if m is None:
        return False
    word = m.group(1)
    return word[0].isupper() or word in given or word in family


# verbs that follow a person's name in a note ("juhani said ...")
_NAME_VERBS = frozenset({"said", "says", "asked", "asks", "wants", "answered", "called",
                         "requested", "works", "lives", "moved", "prefers", "volunteers",
                         "refused", "agreed", "promised", "hung", "was", "is"})
_RE_FIRM_BEFORE = re.compile(r"\b(?:[Tt]he|at|from|for|joined)[ \t]+\Z")
_RE_FIRM_AFTER = re.compile(r"(?:[ \t]+[A-Z][a-z][\w'’\-]*){1,2}")


class NameListRecognizer(EntityRecognizer):
    """Each word of a list of three or more capitalised single words ("Eklund, Michael
    and Hodge") is a PERSON when at least two of them are listed names; the whole list
    is one ORGANIZATION after "the", "at", "from", "for", "joined", or before a
    capitalised word ("The Keller, Brandt and Ruiz Quartet")."""

    SCORE = 0.55
    FIRM_SCORE = 0.75

    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON", "ORGANIZATION"],
                         name="NameListRecognizer")

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities: list[str],
                nlp_artifacts: NlpArtifacts | None = None) -> list[RecognizerResult]:
        from vault.pii.names import given_names, surnames

        known = given_names() | surnames()
        out: list[RecognizerResult] = []
        for m in _LIST.finditer(text):
            items = [(mm.start(), mm.end()) for mm in
                     re.finditer(r"[A-Z][\w'’\-]+", m.group())]
            words = [m.group()[a:b] for a, b in items]
            if sum(w in known for w in words) < 2:
                continue
            after = _RE_FIRM_AFTER.match(text, m.end())
            if _RE_FIRM_BEFORE.search(text, 0, m.start()) or after:
                # "The Keller, Brandt and Ruiz Quartet", "a year at Keller, Brandt
                # and Ruiz": partners' names, one firm (above a given-name guess)
                end = after.end() if after else m.end()
                out.append(RecognizerResult("ORGANIZATION", m.start(), end, self.FIRM_SCORE,
                                            recognition_metadata={
                    RecognizerResult.RECOGNIZER_NAME_KEY: "NameListRecognizer", TIER_KEY: 2,
                }))
                continue
            for a, b in items:
                out.append(RecognizerResult("PERSON", m.start() + a, m.start() + b, self.SCORE,
                                            recognition_metadata={
                    RecognizerResult.RECOGNIZER_NAME_KEY: "NameListRecognizer", TIER_KEY: 2,
                }))
        return out


_LOWER_CACHE: dict[int, tuple[frozenset[str], frozenset[str]]] = {}

# lower-case words that are names somewhere but, in notes, nearly always words
_ORDINARY_TEXT = """
    a an and are as at be but by can do for from go had has have he her him his i if in is it
    me my no not of on or our out she so than that the them then they this to up us was we
    were what when who will with you your yes ok call text left door sign yard lit mail home
    work back come came said says asked wants want need needs new old moved lives live strong
    lean soft support oppose undecided hostile friendly nice busy later today tomorrow morning
    evening night noon week weekend vote voted voter voters ballot early absent family house
    apt unit street st ave road rd lane ln drive dr court ct way park lake hill main oak maple
    cedar elm pine washington spring river north south east west dog dogs cat kids kid son
    daughter wife husband mom dad grandma grandpa neighbor after before about again also all
    any both each few more most other some such only own same very just now here there where
    why how re w per info email phone cell best number mark will may june april august grant
    rich chase hope faith joy dawn rose lily daisy art bill bob sue pat ray gene jean jan don
    dean guy king long young white black brown green gray grey wood woods hall field fields
    little rice lee law love
"""
_ORDINARY = frozenset(_ORDINARY_TEXT.split())
# words after "my name is" / "call me" that are not the name ("call me back")
_NOT_A_NAME = _ORDINARY | frozenset(STOP_WORDS) | frozenset(
    {"back", "later", "asap", "soon", "tonight", "anytime", "please", "maybe", "anyway"})


def _lower_lists(given: frozenset[str], family: frozenset[str]) -> tuple[frozenset[str],
                                                                         frozenset[str]]:
    key = id(given) ^ id(family)
    got = _LOWER_CACHE.get(key)
    if got is None:
        got = (frozenset(n.lower() for n in given if len(n) >= 3) - _ORDINARY,
               frozenset(n.lower() for n in family if len(n) >= 2) - _ORDINARY)
        _LOWER_CACHE[key] = got
    return got


def note_recognizers() -> list[EntityRecognizer]:
    """Fresh instances of the recognizers described in the module docstring."""
    return [
        GroupPatternRecognizer("US_STREET_ADDRESS", "NoteStreetRecognizer",
                               [rf"(?P<x>{_STREET})", rf"(?P<x>{_UNIT})"], 0.6),
        GroupPatternRecognizer("PHONE_NUMBER", "NotePhoneRecognizer",
                               [rf"(?P<x>{_PHONE})"], 0.65),
        GroupPatternRecognizer("PHONE_NUMBER", "NotePhone7Recognizer",
                               [rf"(?P<x>{_PHONE7})"], 0.5),
        # above spaCy's 0.85 (Presidio keeps one of two same-span results, the higher) and a
        # capitalised word + number read as a European street ("Sat 10", "September 5")
        GroupPatternRecognizer("DATE_TIME", "NoteDateRecognizer", [rf"(?P<x>{_DATE})"], 0.9),
        GroupPatternRecognizer("AGE", "NoteAgeRecognizer", _AGE_CUES, 0.6),
        GroupPatternRecognizer("US_ZIP_CODE", "NoteZipRecognizer", _ZIP, 0.45),
        # honorific in any case, with the name ("mrs Cristea", "dr okafor")
        GroupPatternRecognizer("PERSON", "NoteHonorificRecognizer", [_HONORIFIC], 0.7),
        # a capitalised word after a cue that introduces a person ("ask for Helan")
        GroupPatternRecognizer("PERSON", "NoteCuedNameRecognizer", [_CUED_NAME], 0.65),
        # a town between a street line and its ZIP ("12 elm st lake vincent 79975")
        GroupPatternRecognizer("LOCATION", "NoteTownRecognizer", [_TOWN], 0.6),
        # a ship or unit address of the US military post, any case, over two lines
        GroupPatternRecognizer("US_STREET_ADDRESS", "MilitaryAddressRecognizer",
                               [_MILITARY], 0.65),
        # people listed together: "founders: Lindgren, Michael and Whitaker"
        NameListRecognizer(),
        LowerCaseNameRecognizer(),
    ]
