"""Cues for names of people, places and organisations that the small spaCy model misses.

spaCy's ``en_core_web_sm`` often finds a name but calls it an organisation or a
place ("Ildiko Varhegyi" -> ORG), or misses names it has not seen. These
recognizers add what English text itself says, without any list built from
test data:

* **honorific + name** ("Mr. Okafor", "Dr. Ana Li"): PERSON, the honorific
  included (it is part of how the person is named);
* **introduced names** ("my name is X", "Name: X", "called X", "last name? X");
* **given names**: a capitalised word in Faker's given-name lists (all
  locales, shipped with the package) followed by a capitalised surname from
  Faker's surname lists is a PERSON; a given name alone, or with an unknown
  surname, is a *weak* PERSON that only fills gaps left by the NER, except that
  a lone given name spaCy called an organisation is relabelled. Given names that
  are also common English words or places ("Will", "May", "Virginia") or
  English stop words ("My", "Do") are dropped (:data:`_NOT_NAMES`);
* **place frames** ("flew to X", "grew up in X", "originally from X", "based in
  X", "12 Some Street, X", "Where: X"): LOCATION;
* **organisation suffixes** ("X Inc", "X Ltd.", "X Technologies", "X Bank") and
  frames ("work for X", "employed by X", "the X website", "CEO of X", "spent a year
  at X", "at X as the assistant", "X is a German multinational"): ORGANIZATION.

Weak results carry ``tier`` 1 in their metadata (the NER's tier, see
:mod:`vault.pii.freetext`); the others the pattern tier, 2.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import re

import faker.providers.person as _faker_person
from faker.providers.address.en_US import Provider as _FakerAddress
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from spacy.lang.en.stop_words import STOP_WORDS

from vault.pii.checks import STREET_SUFFIX_RE as _STREET_SUFFIX
from vault.pii.group_pattern import TIER_KEY, GroupPatternRecognizer

__all__ = ["NOT_NAMES", "given_names", "name_recognizers", "person_shaped", "repeated_names",
           "surnames"]

# Upper-case letters of Latin-1, Latin Extended-A/B, Greek and Cyrillic.
_UP = "A-Z" + "".join(
    ch for lo, hi in ((0xC0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF))
    for ch in map(chr, range(lo, hi + 1)) if ch.isupper()
)
_WORD = rf"[{_UP}](?:[^\W\d_]|['’\-](?=[^\W\d_]))+"  # a capitalised word
_INITIAL = rf"[{_UP}]\.?"
_PARTICLE = r"(?:de|del|della|da|das|do|dos|di|du|la|le|van|von|der|den|ten|ter|af|al|el|bin|ibn)"
# a name: words, single-letter initials and particles ("Ana Li", "Jon Q. Varga")
_NAME = rf"{_WORD}(?:[ \t]+(?:{_INITIAL}[ \t]+|{_PARTICLE}[ \t]+)?{_WORD}){{0,3}}"
# a place: words joined by spaces, particles or hyphens ("San Lorenzo del Monte")
_PLACE = rf"{_WORD}(?:[ \t]+(?:{_PARTICLE}[ \t]+)?{_WORD}){{0,3}}"
# unit and street words that never end a name ("Mrs. Jane Roe Apt. 12")
_NOT_IN_NAME = r"(?!(?:Apt|Apartment|Suite|Ste|Unit|Box|Lot|Room|Floor|Street|Road)\b)"

_ORG_SUFFIX = (
    r"Inc|Incorporated|LLC|L\.L\.C|Ltd|Limited|Corp|Corporation|Co|Company|GmbH|AG|S\.A|SA|"
    r"SpA|BV|NV|PLC|plc|Group|Holdings|Partners|Associates|Technologies|Systems|Solutions|"
    r"Software|Labs|Bank|University|College|Institute|Foundation|Markets|Insurance|"
    r"Industries|Services|Consulting|Capital|Ventures|Networks|Analytics|Enterprises|"
    r"International|Investments|Research|Elementary|Hospital|Hardware|Pharmacy|Clinic|"
    r"Church|Academy|Diner|Cafe|Bakery|Motors|Dental|(?:and|&)[ \t]+Sons|Sons|Brothers|Bros"
)
# a word that makes a run of capitalised words a company or a street, not a person
_RE_NOT_PERSON_WORD = re.compile(rf"(?:{_ORG_SUFFIX}|(?i:{_STREET_SUFFIX}|union|fort|mall|"
                                 r"gateway|pass|bypass|route|radial|coves?|courts?|parks?|"
                                 r"crescent|gardens?|heights|mews|square|turnpike))\.?")

_HONORIFIC = (
    r"(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Rev|Fr|Sr|Sra|Srta|Mme|Mlle|Herr|Frau|Sir|Dame|Lady|Lord)"
)

# Given names (in Faker's lists) that are everyday English words, months, places or
# name prefixes: as a lone capitalised word they say nothing about a person.
_NOT_NAMES_TEXT = """
    A An And Are Art Aurora August Austin Autumn Bill Bishop Blue Brook Brooks Can Carolina
    Chance Chase Christian China Cliff Dakota Dale Dawn Day Dean Don Dusty Early Easter
    Eden Ever Faith Fall Florence Frank Friday Georgia Glen Gold Golden Grace Grant Guy
    Happy Harmony Heaven Hill Holly Honey Hope Hunter Independence India Iris Ivy Jack
    Jade Jordan Joy June King Lake Land Lane Lincoln Love Lucky Madison Major March
    Mark Marshall Mason May Memory Merry Miles Millie Mint Monday Moon New North Ocean
    Page Paris Park Pat Patience Pearl Penny Per Piper Prince Queen Rain Rich River Robin
    Rock Rose Ruby Rush Sage Saint Santa Savannah Sky Spring Star Stone Storm Summer
    Sunday Sunny Taylor The Tuesday Van Victoria Virginia Wade Will Win Winter Young
    Princess Duke Duchess Earl Baron Baroness Count Countess Royal Noble
    Brown Green Black White Gray Grey Cook Baker Carter Cooper Sterling Price Sun
"""
_NOT_NAMES = frozenset(_NOT_NAMES_TEXT.split())
NOT_NAMES = _NOT_NAMES  # names that are also words: listed, but no evidence alone


@functools.cache
def _faker_names() -> tuple[frozenset[str], frozenset[str]]:
    given: set[str] = set()
    family: set[str] = set()
    for info in pkgutil.iter_modules(_faker_person.__path__):
        provider = importlib.import_module(f"{_faker_person.__name__}.{info.name}").Provider
        for attr, into in (
            ("first_names", given), ("first_names_male", given), ("first_names_female", given),
            ("first_romanized_names", given), ("last_names", family),
            ("last_romanized_names", family),
        ):
            names = vars(provider).get(attr)
            if isinstance(names, (list, tuple, dict, set, frozenset)):
                into.update(n for n in names if _plain_name(n))
    return frozenset(given - _NOT_NAMES), frozenset(family - _NOT_NAMES)


def _plain_name(name: object) -> bool:
    return (isinstance(name, str) and len(name) >= 2 and name[0].isupper()
            and name.replace("-", "").replace("'", "").isalpha()
            and name.lower() not in STOP_WORDS)  # "My", "Do", "An" are names somewhere


def given_names() -> frozenset[str]:
    """Given names of every Faker locale, less :data:`_NOT_NAMES`."""
    return _faker_names()[0]


def surnames() -> frozenset[str]:
    """Surnames of every Faker locale, less :data:`_NOT_NAMES`."""
    return _faker_names()[1]


_RE_NAME_RUN = re.compile(rf"(?<![\w@.])(?:{_NOT_IN_NAME}{_WORD}[ \t]+(?:{_INITIAL}[ \t]+)?)*"
                          rf"{_NOT_IN_NAME}{_WORD}")
_RE_SPLIT = re.compile(r"[ \t]+")


_NER_ORG = frozenset({"ORG", "ORGANIZATION"})
_NER_PLACE = frozenset({"GPE", "LOC", "FAC", "LOCATION"})


class GivenNameRecognizer(EntityRecognizer):
    """PERSON from runs of capitalised words that start with a known given name."""

    STRONG = 0.7
    WEAK = 0.5

    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON"], name="GivenNameRecognizer")

    def load(self) -> None:
        given_names()

    def analyze(self, text: str, entities: list[str],
                nlp_artifacts: NlpArtifacts | None = None) -> list[RecognizerResult]:
        given, family = _faker_names()
        # NER entities by start offset: (end, label); labels are spaCy's or Presidio's
        ner = {
            e.start_char: (e.end_char, e.label_)
            for e in (nlp_artifacts.entities if nlp_artifacts else [])
        }
        out: list[RecognizerResult] = []
        for m in _RE_NAME_RUN.finditer(text):
            run, start, end = m.group(), m.start(), m.end()
            # a sentence's first word or an article is not part of the name ("The Ana Li
            # version", "When Ana Li ...")
            while (lead := _RE_LEAD_STOP_WORD.match(run)) is not None:
                run, start = run[lead.end():], start + lead.end()
            words = _RE_SPLIT.split(run)
            if words[0] not in given or any(
                _RE_NOT_PERSON_WORD.fullmatch(w) for w in words[1:]
            ):
                continue
            # the name ends at its last known surname, if any ("Ana Li's" -> "Ana Li")
            known = [i for i, w in enumerate(words) if i > 0 and _possessor(w) in family]
            end_ner, label = ner.get(start, (-1, ""))
            same_span = end_ner in (end, end + 2)  # "Ana Li's"
            if known:
                stop = start + _end_of(run, known[-1])
                if _possessor(words[known[-1]]) != words[known[-1]]:
                    stop -= 2
                out.append(self._result(start, stop, self.STRONG, 2))
            # (a lone given name the NER took for a place is a person, unless a
            # preposition of place stands before it: "moved to Talbridge")
            elif same_span and (label in _NER_ORG or (label in _NER_PLACE and (
                    len(words) > 1 or (_RE_PLACE_BEFORE.search(text, 0, start) is None
                                       and run not in _COUNTRIES)))):
                # the NER found this very name but called it an organisation (or, for a
                # given name + surname, a place): its type is what we correct
                out.append(self._result(start, end, self.STRONG, 2))
            else:
                out.append(self._result(start, end, self.WEAK, 1))
        return out

    def _result(self, start: int, end: int, score: float, tier: int) -> RecognizerResult:
        return RecognizerResult("PERSON", start, end, score, recognition_metadata={
            RecognizerResult.RECOGNIZER_NAME_KEY: "GivenNameRecognizer", TIER_KEY: tier,
        })


_RE_LEAD_STOP_WORD = re.compile(
    r"(?:" + "|".join(sorted((w.capitalize() for w in STOP_WORDS if w.isalpha()), key=len,
                             reverse=True)) + r")[ \t]+(?=\S)")


_RE_INITIAL_NAME = re.compile(rf"{_WORD}[ \t]+[{_UP}]\.?[ \t]+{_WORD}")
_RE_PAIR = re.compile(rf"({_WORD})[ \t]+(?:and|&)[ \t]+({_WORD})")


def person_shaped(value: str) -> bool:
    """Whether words the NER took for an organisation are a person's name: a given
    name, an initial and a surname ("Irina P. Brandt"), one to three words that are
    all listed given names or surnames ("Maria Keller", "Keller"), or two such
    words joined by "and" ("Keller and Brandt"). Not a firm's shapes: hyphenated
    partners ("Keller-Brandt"), lists with commas, or any company or street word."""
    value = _possessor(value.strip())
    words = _RE_SPLIT.split(value)
    if any(_RE_NOT_PERSON_WORD.fullmatch(w) for w in words):
        return False
    if _RE_INITIAL_NAME.fullmatch(value):
        return True
    given, family = _faker_names()
    pair = _RE_PAIR.fullmatch(value)
    if pair is not None:
        words = [pair.group(1), pair.group(2)]
    elif "and" in words or "&" in words:
        return False
    return (1 <= len(words) <= 3 and all(_RE_WORD.fullmatch(w) for w in words)
            and all(w in given or w in family for w in words))


_RE_WORD = re.compile(_WORD)


# country names that are also given names somewhere ("France", "Chad", "Jordan")
_COUNTRIES = frozenset(_FakerAddress.countries)
_RE_PLACE_BEFORE = re.compile(
    r"\b(?i:in|at|to|from|of|near|into|via|through|across|around|outside|visit(?:ed|ing)?|"
    r"towards?)[ \t]+\Z")


def _possessor(word: str) -> str:
    """``word`` without a possessive ending ("Li's" -> "Li")."""
    return word[:-2] if word.endswith(("'s", "’s")) else word


def _end_of(run: str, word_index: int) -> int:
    """Offset in ``run`` just after its word number ``word_index`` (0-based)."""
    pos = 0
    for i, m in enumerate(re.finditer(r"\S+", run)):
        pos = m.end()
        if i == word_index:
            break
    return pos


def repeated_names(text: str, names: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Other occurrences in ``text`` of the words of full names found at ``names``.

    Once a text has named "Ildiko Varhegyi", a later "Varhegyi" is the same person.
    Only names of two or more words are used (a lone word is too weak a cue) and only
    their capitalised words of three letters or more that are not stop words.
    """
    words: set[str] = set()
    for start, end in names:
        parts = _RE_SPLIT.split(text[start:end].strip())
        if len(parts) >= 2:
            words.update(w.rstrip(".,") for w in parts)
    words = {w for w in words if len(w) >= 3 and w[0].isupper() and w.lower() not in STOP_WORDS}
    if not words:
        return []
    alternatives = "|".join(map(re.escape, sorted(words)))
    regex = re.compile(rf"(?<![\w'’\-])(?:{alternatives})(?![\w\-])")
    taken = sorted(names)
    return [
        (m.start(), m.end()) for m in regex.finditer(text)
        if not any(s <= m.start() and m.end() <= e for s, e in taken)
    ]


# Nationalities, religious and political groups (NRP), a general English lexicon: the
# NER knows most capitalised ones, not lower-case or plural ones ("proud peruvians").
_NRP_TEXT = """
    afghan albanian algerian american andorran angolan argentine argentinian armenian
    australian austrian azerbaijani bahamian bahraini bangladeshi barbadian belarusian
    belgian belizean beninese bhutanese bolivian bosnian botswanan brazilian british
    bruneian bulgarian burkinabe burmese burundian cambodian cameroonian canadian
    chadian chilean chinese colombian congolese costa rican croatian cuban cypriot czech
    danish djiboutian dominican dutch ecuadorian egyptian emirati english eritrean
    estonian ethiopian fijian filipino finnish french gabonese gambian georgian german
    ghanaian greek greenlandic grenadian guatemalan guinean guyanese haitian honduran
    hungarian icelandic indian indonesian iranian iraqi irish israeli italian ivorian
    jamaican japanese jordanian kazakh kenyan korean kosovar kuwaiti kyrgyz lao laotian
    latvian lebanese liberian libyan lithuanian luxembourgish macedonian malagasy
    malawian malaysian maldivian malian maltese mauritanian mauritian mexican moldovan
    monegasque mongolian montenegrin moroccan mozambican namibian nepalese nepali
    nicaraguan nigerian nigerien norwegian omani pakistani palestinian panamanian
    paraguayan persian peruvian polish portuguese qatari romanian russian rwandan saudi
    scottish senegalese serbian sierra leonean singaporean slovak slovakian slovenian
    somali south african spanish sri lankan sudanese surinamese swazi swedish swiss
    syrian taiwanese tajik tanzanian thai togolese tongan trinidadian tunisian turkish
    turkmen ugandan ukrainian uruguayan uzbek venezuelan vietnamese welsh yemeni zambian
    zimbabwean latino latina latinx hispanic arab asian african european caucasian
    kurdish basque catalan tamil punjabi bengali gujarati sikh hindu muslim christian
    catholic protestant jewish jew buddhist mormon baptist methodist lutheran evangelical
    orthodox shia shiite sunni atheist agnostic quaker amish democrat republican
    libertarian socialist communist
"""
_NRP = frozenset(_NRP_TEXT.split())
_RE_NRP_WORD = re.compile(r"(?<![\w'’\-])[A-Za-z]+(?![\w'’\-])")


class GroupWordRecognizer(EntityRecognizer):
    """NRP for a nationality, a religious or a political group in lower case or in the
    plural ("peruvians", "Maltese", "sikhs"); a capitalised singular is left to the
    NER ("English" the language, "American" of a company's name). Tier 1: it fills gaps
    the NER left."""

    SCORE = 0.5

    def __init__(self) -> None:
        super().__init__(supported_entities=["NRP"], name="GroupWordRecognizer")

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities: list[str],
                nlp_artifacts: NlpArtifacts | None = None) -> list[RecognizerResult]:
        out: list[RecognizerResult] = []
        for m in _RE_NRP_WORD.finditer(text):
            word = m.group().lower()
            if m.group()[0].isupper() and not word.endswith("s"):
                continue  # "English", "American Freight Lines": the NER's call
            if not (word in _NRP or (word.endswith("s") and (
                    word[:-1] in _NRP or (word.endswith("es") and word[:-2] in _NRP)
                    or (word.endswith("is") and word[:-2] in _NRP)))):
                continue
            out.append(RecognizerResult("NRP", m.start(), m.end(), self.SCORE,
                                        recognition_metadata={
                RecognizerResult.RECOGNIZER_NAME_KEY: "GroupWordRecognizer", TIER_KEY: 1,
            }))
        return out


def name_recognizers() -> list[EntityRecognizer]:
    """Fresh instances of the recognizers described in the module docstring."""
    honorific = PatternRecognizer(
        supported_entity="PERSON",
        name="HonorificNameRecognizer",
        patterns=[Pattern(
            "honorific name",
            rf"\b{_HONORIFIC}\.?[ \t]+{_NOT_IN_NAME}{_WORD}"
            rf"(?:[ \t]+(?:{_INITIAL}[ \t]+)?{_NOT_IN_NAME}{_WORD}){{0,2}}",
            0.7,
        )],
        global_regex_flags=re.MULTILINE,
    )
    introduced = GroupPatternRecognizer(
        "PERSON", "IntroducedNameRecognizer",
        [
            rf"\b(?i:name)(?:[ \t]+is|[ \t]*:|\?)[ \t]*(?P<x>{_NAME})",
            rf"\b(?:[Cc]alled|[Nn]amed|[Cc]alls?[ \t]+me|[Dd]irected [Bb]y:?|[Ww]ritten [Bb]y)"
            rf"[ \t]+(?P<x>{_NAME})",
        ],
        0.6,
    )
    place = GroupPatternRecognizer(
        "LOCATION", "PlaceFrameRecognizer",
        [
            r"\b(?:flew|flown|flying|fly|drove|moved(?:[ \t]+here)?|relocated|travell?ed|"
            r"returned|arrived|grew[ \t]+up|born|lives?|living|resides?|based|located|"
            r"headquartered|originally|I[ \t]+am|I'm|we[ \t]+are|we're)[ \t]+"
            r"(?:to|from|in|at|into)[ \t]+"
            rf"(?P<x>{_PLACE})",
            rf"\b(?:home[ \t]+(?:city|town)|[Ww]here:|City:|Town:)[ \t]+(?P<x>{_PLACE})",
            # "12 Some Street, Town" / "Some Street 4, Town V": the town (and its postal
            # district or region letters) after a street
            rf"(?:\d[a-z]?|\b(?i:{_STREET_SUFFIX}))\.?,[ \t]+"
            rf"(?P<x>{_PLACE}(?:[ \t]+[{_UP}]{{1,3}})?)"
            r"(?=[ \t]*(?:[,.;?!\n]|$))",
        ],
        0.72,  # a frame says more than a name list: "returned to Marisol"
    )
    organisation = PatternRecognizer(
        supported_entity="ORGANIZATION",
        name="OrganisationSuffixRecognizer",
        patterns=[Pattern(
            "name + legal or sector suffix",
            rf"\b(?!The\b){_WORD}(?:[ \t]+(?:&[ \t]+|and[ \t]+)?{_WORD}){{0,3}}[ \t]+"
            rf"(?:{_ORG_SUFFIX})\b\.?",
            0.75,  # above a given-name guess ("Morgan Hale Bank")
        )],
        global_regex_flags=re.MULTILINE,
    )
    employer = GroupPatternRecognizer(
        "ORGANIZATION", "EmployerFrameRecognizer",
        [rf"\b(?:work(?:s|ed|ing)?[ \t]+(?:for|at)|employed[ \t]+(?:by|at)|hired[ \t]+by|"
         rf"joined|interned?[ \t]+at)[ \t]+(?P<x>{_NAME})"],
        0.5,
    )
    # what only an organisation has: a website, an office, a chief executive; a stint
    # "at X as the assistant"; "X is a German multinational"
    org_frame = GroupPatternRecognizer(
        "ORGANIZATION", "OrganisationFrameRecognizer",
        [rf"\b(?:[Tt]he|[Aa]t|[Ff]rom)[ \t]+(?P<x>{_NAME})[ \t]+(?:website|web[ \t]+site|"
         r"homepage|headquarters|HQ|offices?|boardroom|board[ \t]+of[ \t]+directors|"
         r"shareholders|stock|CEO|CFO|CTO)\b",
         rf"\b(?:CEO|CFO|CTO|[Cc]o-?founder|[Ff]ounder|[Cc]hairman|[Cc]hairwoman|"
         rf"[Ss]pokes(?:man|woman|person)|[Ee]mployees?)[ \t]+(?:of|at)[ \t]+(?P<x>{_NAME})",
         rf"\b(?:spent|worked)[ \t]+(?:a|one|two|three|several|\d+)[ \t]+"
         rf"(?:years?|months?)[ \t]+at[ \t]+(?P<x>{_NAME})",
         rf"\bat[ \t]+(?P<x>{_NAME})[ \t]+as[ \t]+(?:an?|the|its)[ \t]+[a-z]",
         rf"(?<![\w'’\-])(?P<x>{_NAME})[ \t]+(?:is|was)[ \t]+an?[ \t]+(?:[A-Za-z-]+[ \t]+)?"
         r"(?:company|start-?up|multinational|corporation|conglomerate|retailer|"
         r"manufacturer|non-?profit)\b"],
        0.5,
    )
    # a given name, a middle initial and a surname ("Tarik J Oduya"): only fills gaps
    initial = GroupPatternRecognizer(
        "PERSON", "MiddleInitialNameRecognizer",
        [rf"(?<![\w'’\-])(?P<x>{_WORD}[ \t]+(?:[B-HJ-Z]\.?|[AI]\.)[ \t]+{_WORD})(?![\w'’\-])"],
        0.5, tier=1,
        check=lambda v: v.split()[0].lower() not in STOP_WORDS
        and not any(_RE_NOT_PERSON_WORD.fullmatch(w) for w in v.split()),
    )
    # "Ondina lives on Via X": whoever lives somewhere is a person
    resident = GroupPatternRecognizer(
        "PERSON", "ResidentNameRecognizer",
        [rf"(?<![\w'’\-])(?P<x>{_WORD}(?:[ \t]+{_WORD})?)[ \t]+(?:lives|lived|resides|resided)"
         r"[ \t]+(?:at|on|in)\b"],
        0.6, check=lambda v: v.split()[0].lower() not in STOP_WORDS,
    )
    return [honorific, introduced, GivenNameRecognizer(), place, organisation, employer,
            org_frame, resident, initial, GroupWordRecognizer()]
