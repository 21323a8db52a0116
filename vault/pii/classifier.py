"""Column classification: name hints and a sample of values, once per schema.

For each column we look at

1. its **name** (normalised: ``RegStName`` -> ``reg_st_name``) against an ordered
   table of hints (first match wins), and
2. a **sample** of at most ``sample_rows`` non-blank values, taken evenly from a
   bounded window of the frame (so the cost does not grow with the row count),
   scored as the *share of sampled non-blank values* that a value check accepts.

Value evidence can only raise protection, never lower it below what the name says,
with one exception: a column named like a direct identifier whose values are all
yes/no flags (NC's ``drivers_lic`` is ``Y``/``N``) is a quasi-identifying flag.
Columns with no hint are matched on values only; what still has no class is
``unknown`` and handled as sensitive (fail closed). Free text is recognised from
the values: long, varied, multi-word strings.

Results are cached per schema (column names + dtypes, plus the options) *and*
sample, so the batches of one file classify once, while two files that share a
header but not their contents (``col1..colN``) are classified each on its values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from vault.pii import checks as rz
from vault.pii import values as pv
from vault.pii.handling import (
    DEFAULT_LOOKUP_ENTITIES,
    Category,
    Handling,
    handling_for,
)

__all__ = [
    "ColumnClass",
    "apply_policy",
    "classify_frame",
    "clear_cache",
    "normalise_name",
    "schema_key",
]

WINDOW_ROWS = 10_000  # rows looked at, at most, whatever the frame's height
FREE_TEXT = "FREE_TEXT"


@dataclass(frozen=True, slots=True)
class ColumnClass:
    """How one column is understood and handled. Holds names and scores, never values."""

    name: str
    entity: str
    category: Category
    confidence: float
    handling: Handling
    lookup_key: bool
    evidence: str = "name"  # name | values | name+values | values>name | presidio | none
    #: one line saying why: the name hint, what the sampled values are (shares, never
    #: values), and which won when they disagree
    reason: str = ""

    def as_json(self) -> dict[str, str | float | bool]:
        return {
            "name": self.name,
            "entity": self.entity,
            "category": self.category,
            "confidence": self.confidence,
            "handling": self.handling,
            "lookup_key": self.lookup_key,
            "evidence": self.evidence,
            "reason": self.reason,
        }


# --- name hints ---------------------------------------------------------------------


def _t(*words: str) -> str:
    """Regex: any of ``words`` as a whole token of the normalised name."""
    return r"(?:^|_)(?:" + "|".join(words) + r")(?:_|$)"


_DISTRICT_WORDS = (
    r"dist\d*", "district", "districts", "precinct", "pct", "ward", "township", "twp", "vtd",
    "cong", "congressional", "senate", "house", "legislative", "leg", "judic", "judicial",
    "court", "super", "commiss", "commission", "commissioner", "school", "fire", "water",
    "sewer", "sanit", "rescue", "munic", "library", "career", "edu", "village", "split",
    "appeals", "board", "hospital", "park", "transit", "utility", "assembly", "council",
    "representative", "rep_dist", "portion", "part", "ballot_style", "polling",
)

# (regex on the normalised name, entity, category); first match wins.
_HINTS: tuple[tuple[str, str, Category], ...] = (
    (r"(?:^|_)(?:notes?|comments?|remarks?|narrative|memo|memo_text|free_text|transcript"
     r"|feedback|message|verbatim)(?:$|_(?!(?:code|cd|ind|flag|type|tp)(?:_|$)))",
     FREE_TEXT, "free_text"),
    (_t("e_?mail", "email_address", "emailaddress"), rz.EMAIL, "direct"),
    (r"(?:^|_)area_code(?:_|$)", "PHONE_AREA_CODE", "quasi"),
    (_t("phone", "phone_number", "telephone", "tel", "mobile", "cell", "fax", "phonenumber",
        r"full_phone_number"), rz.PHONE, "direct"),
    (_t("ssn", "ssn4", "social", "social_security"), rz.SSN, "direct"),
    # per-person keys of voter files, voter-file vendors, CRMs and donor files
    (r"(?:^|_)(?:ncid|voter_?id|voterid|sos_voterid|voter_reg(?:istration)?_?(?:num|number|no)?"
     r"|reg_?num|registration_?(?:num|number|no|id)|vuid|voter_?(?:num|number|no)|regnum"
     r"|voter_?key|lalvoterid|state_?voter_?id|id_?(?:num|number|no)|vanid|van_?id"
     r"|voter_?file_?van_?id|registrant_?(?:id|num|number|no)|voterbase_?id|dwid"
     r"|person_?id|contact_?id|member_?id|donor_?id|contributor_?id|constituent_?id"
     r"|supporter_?id|individual_?id|voter_?guid|sboeid|county_?voter_?(?:id|num|number))"
     r"(?:_|$)", rz.VOTER_ID, "direct"),
    # ids of one record (a transaction, an image of a filing): they re-identify through
    # the public record, but are no per-person key
    (r"(?:^|_)(?:tran_?id|transaction_?id|sub_?id|image_?(?:num|number|no)|file_?(?:num|number)"
     r"|record_?id|row_?id|receipt_?id|filing_?id|link_?id|back_?ref\w*)(?:_|$)",
     "RECORD_ID", "direct"),
    (r"(?:^|_)(?:cmte_?id|committee_?id|cand_?id|candidate_?id|other_?id|fec_?id)(?:_|$)",
     "ORGANISATION_ID", "harmless"),
    (r"(?:^|_)(?:drivers?_?lic\w*|dl|dl_?(?:num|number|no)|driver_?licen[cs]e\w*|licen[cs]e\w*)"
     r"(?:_|$)", rz.DRIVER_LICENSE, "direct"),
    (r"(?:^|_)(?:birth_?(?:year|yr)|yob|birthyear)(?:_|$)", rz.BIRTH_YEAR, "quasi"),
    (r"(?:^|_)birth_?age(?:_|$)", rz.AGE, "quasi"),
    (r"(?:^|_)birth_?(?:place|state|country|city|loc\w*)(?:_|$)", "BIRTH_PLACE", "quasi"),
    (r"(?:^|_)(?:birth\w*|dob|date_of_birth|bday|birthdate)(?:_|$)", rz.BIRTH_DATE, "quasi"),
    (_t("age", "age_years", "age_band", "age_range"), rz.AGE, "quasi"),
    (_t("race", "race_code", "race_cd", "racial", "race_desc"), rz.RACE, "special"),
    (_t("ethnic", "ethnicity", "ethnic_code", "ethnic_cd", "hispanic", "latino"),
     rz.ETHNICITY, "special"),
    (_t("gender", "sex", "gender_code", "gender_cd"), rz.GENDER, "special"),
    (_t("religion", "religious", "church", "faith", "denomination"), "RELIGION", "special"),
    (_t("union", "union_member", "union_membership", "labor_union", "union_hh",
        "union_household"), "UNION_MEMBERSHIP", "special"),
    (_t("survey", "survey_response", "response", "support", "supporter", "opinion",
        "ideology", r"sq\d*", r"sq\d+_response", "support_score", "candidate_support"),
     "POLITICAL_OPINION", "special"),
    (_t("health", "disability", "disabled", "medical", "diagnosis"), "HEALTH", "special"),
    (_t("party", "party_cd", "party_code", "party_affiliation", "party_affil", "affiliation",
        "pty", "political_party", "partyaffiliation"), rz.PARTY, "special"),
    (r"(?:^|_)(?:zip_?plus_?4|plus_?4|zip_?4|zip4)(?:_|$)", "US_ZIP4", "quasi"),
    (_t("zip", "zipcode", "zip5", "zip4", "zip_code", "postal", "postalcode", "postcode",
        "postal_code"), rz.ZIP, "quasi"),
    (_t("confidential", "confidential_ind", "exempt", "exemption", "protected", "sealed"),
     "CONFIDENTIALITY_FLAG", "quasi"),
    # parts of a split street address that say little on their own
    (r"(?:^|_)(?:st|street|unit|apt)_?(?:type|typ|suffix|sfx)(?:_|$)"
     r"|(?:^|_)(?:pre|post)_?(?:direction|dir)(?:_|$)|(?:^|_)(?:direction|dir|frac|fraction)$",
     "STREET_ADDRESS_PART", "quasi"),
    (r"(?:^|_)(?:address\w*|addr\d*|street\w*|st_(?:num|no|number|name)|stnum|stname"
     r"|house_?(?:num|number|no)|housenum|unit|unit_?(?:num|number|no)|apt\w*|apartment\w*"
     r"|suite|po_?box|mail_?\d|mail_?line\w*|mailing_?\d|res_?\d)(?:_|$)",
     rz.STREET_ADDRESS, "direct"),
    (_t("employer", "employer_name", "occupation", "job_title", "profession", "job",
        "occupation_desc", "employer_occupation"), "EMPLOYMENT", "quasi"),
    (_t("amount", "amt", "contribution_amount", "aggregate", "ytd", "receipt_amount",
        "donation", "pledge"), "AMOUNT", "quasi"),
    (_t(*_DISTRICT_WORDS), "DISTRICT", "quasi"),
    (_t("city", "town", "municipality", "cty", "city_desc", "locality", "place"),
     "LOCATION", "quasi"),
    (_t("county", "county_id", "county_code", "county_desc", "county_name", "countycode",
        "county_number", "cnty"), "COUNTY", "harmless"),
    (_t("state", "state_cd", "state_code", "st"), "STATE", "harmless"),
    (_t("country", "country_code"), "COUNTRY", "harmless"),
    (r"(?:^|_)(?:registr\w*|reg_?date|regdate|reg_dt|registration_?date)(?:_|$)",
     "REGISTRATION_DATE", "quasi"),
    (r"(?:^|_)(?:last_?voted|voted|vote_?history|general|election|special|runoff|history"
     r"|lastvote\w*)(?:_|$)", "VOTE_HISTORY", "quasi"),
    (r"(?:^|_)(?:date\w*|dt|effective)(?:_|$)", "DATE", "quasi"),
    (r"(?:^|_)(?:committee|cmte|recipient|payee_org|org|organi[sz]ation)_?(?:name|nm)(?:_|$)",
     "ORGANISATION", "harmless"),
    (r"(?:^|_)(?:names?|last|first|middle|midl|lname|fname|mname|surname|given|firstname"
     r"|lastname|middlename|fullname|full_name|suffix|sufx|prefx|prefix|salutation|nickname"
     r"|maiden|initial|title)(?:_|$)", rz.PERSON, "direct"),
    (_t("primary", "primaries"), rz.PARTY, "special"),  # vote-history primary = party ballot
    (_t("status", "status_cd", "status_code", "status_desc", "voter_status", "statuscode",
        "reason", "reason_cd", "reason_code", "absent", "absent_ind", "absentee", "inactive",
        "record_type", "source", "county_status", "active"), "STATUS", "harmless"),
    # codes that describe a record, not a person; values still decide
    (_t("type", "tp", "type_desc", "type_code", "ind", "indicator", "result", "contact_type",
        "memo_code", "memo_cd", "report_type", "rpt_tp", "receipt_type", "entity_tp",
        "pgi", "transaction_pgi", "line_number", "report_year", "cycle", "period",
        "language", "method", "vote_method", "custom_data"), "CODE", "harmless"),
    # any other "..._id": an identifier when one per row (values decide), else a code
    (r"(?:^|_)(?:id|uid|guid|key|num|number|no)$", "ID_CODE", "quasi"),
)
_HINTS_RE = tuple((re.compile(pattern), entity, cat) for pattern, entity, cat in _HINTS)

# Entities whose hint we check against values (others: the name is the evidence).
_VALUE_CHECKED = {
    rz.EMAIL, rz.PHONE, rz.SSN, rz.VOTER_ID, rz.DRIVER_LICENSE, rz.BIRTH_YEAR, rz.AGE,
    rz.BIRTH_DATE, rz.RACE, rz.ETHNICITY, rz.GENDER, rz.PARTY, rz.ZIP, rz.STREET_ADDRESS,
    rz.PERSON,
}
# Quasi-identifiers found from values alone (after the classes of ``vault.pii.values``).
_VALUE_QUASI: tuple[tuple[str, str], ...] = (
    (rz.BIRTH_DATE, "DATE"),
    (rz.ZIP, rz.ZIP),
)
VALUE_ONLY_SHARE = 0.8
FLAG_SHARE = 0.95
# person-name values override a harmless code name (county, status) only when this share
# of the sampled values is distinct: a code list repeats, names of people mostly do not
PERSON_OVER_CODE_DISTINCT = 0.5
# How much a class discloses, to decide which wins when name and values disagree.
_RANK: dict[str, int] = {
    "harmless": 0, "unknown": 1, "quasi": 2, "free_text": 3, "special": 4, "direct": 5,
}
# Names of places and districts: their values are often surnames ("Jackson", "Clinton"),
# so person-name values do not override them (other value classes still do).
_PLACE_ENTITIES = frozenset({"LOCATION", "DISTRICT", "BIRTH_PLACE", "STREET_ADDRESS_PART",
                             "ORGANISATION", "EMPLOYMENT"})
_DIRECT_PRESIDIO = {
    "PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN", "CREDIT_CARD", "IBAN_CODE",
    "IP_ADDRESS", "US_PASSPORT", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "US_ITIN",
    "MEDICAL_LICENSE", "CRYPTO", rz.STREET_ADDRESS, rz.VOTER_ID,
}
_PRESIDIO_ENTITIES = sorted(_DIRECT_PRESIDIO | {"LOCATION", "NRP"})


def normalise_name(name: str) -> str:
    """``"RegStName"`` -> ``"reg_st_name"``; ``"Residence Zipcode"`` -> ``"residence_zipcode"``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name.strip())
    return re.sub(r"[^0-9a-z]+", "_", spaced.lower()).strip("_")


def _hint(name: str) -> tuple[str, Category] | None:
    norm = normalise_name(name)
    for pattern, entity, category in _HINTS_RE:
        if pattern.search(norm):
            return entity, category
    return None


# --- sampling -------------------------------------------------------------------------


def _sample(df: pl.DataFrame, sample_rows: int) -> dict[str, list[str]]:
    """Up to ``sample_rows`` stripped, non-blank values per column from a bounded window."""
    height = df.height
    window = df if height <= WINDOW_ROWS else df.gather_every(height // WINDOW_ROWS)
    out: dict[str, list[str]] = {}
    for name in df.columns:
        col = window.get_column(name)
        if col.dtype.is_nested() or col.dtype == pl.Object:
            out[name] = []  # no value checks on nested data: name hint or fail closed
            continue
        if col.dtype != pl.String:
            col = col.cast(pl.String, strict=False)
        col = col.str.strip_chars().drop_nulls()
        col = col.filter(col.str.len_chars() > 0)
        if col.len() > sample_rows:
            col = col.gather_every(col.len() // sample_rows).head(sample_rows)
        out[name] = col.to_list()
    return out


def _is_free_text(values: Sequence[str]) -> bool:
    if len(values) < 3:
        return False
    mean_len = sum(len(v) for v in values) / len(values)
    multi_word = sum(len(v.split()) >= 5 for v in values) / len(values)
    distinct = len(set(values)) / len(values)
    return mean_len >= 30 and multi_word >= 0.6 and distinct >= 0.5


# --- classification --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Verdict:
    entity: str
    category: Category
    confidence: float
    evidence: str
    reason: str = ""


def _pct(share: float) -> str:
    return f"{round(100 * share)}%"


def _value_verdicts(values: Sequence[str], free_text: bool) -> list[pv.ValueVerdict]:
    """Every class the values support: ``vault.pii.values``, then free text, then the
    quasi-identifying formats (dates, ZIP codes)."""
    found = pv.profile(values, rz.VALUE_CHECKS)
    n = len(values)
    if free_text:
        found.append(pv.ValueVerdict(FREE_TEXT, "free_text", 0.8,
                                     f"the {n} sampled values are long, varied, multi-word text"))
    for check, entity in _VALUE_QUASI:
        share = rz.value_share(check, values)
        if share >= VALUE_ONLY_SHARE:
            what = "dates" if entity == "DATE" else "ZIP codes"
            found.append(pv.ValueVerdict(entity, "quasi", round(share, 3),
                                         f"{_pct(share)} of {n} sampled values are {what}"))
    return found


def _most_sensitive(found: Sequence[pv.ValueVerdict]) -> pv.ValueVerdict | None:
    best: pv.ValueVerdict | None = None
    for v in found:  # ties: the order of ``found`` (most specific first)
        if best is None or _RANK[v.category] > _RANK[best.category]:
            best = v
    return best


def _classify_values(name: str, values: Sequence[str]) -> _Verdict:
    hint = _hint(name)
    free_text = _is_free_text(values)
    n = len(values)
    found = _value_verdicts(values, free_text) if values else []
    if hint is None:
        if not values:
            return _Verdict("UNKNOWN", "unknown", 0.0, "none",
                            "no name hint and no values sampled -> unknown (encrypted)")
        best = _most_sensitive(found)
        if best is not None:
            return _Verdict(best.entity, best.category, best.share, "values",
                            f"no name hint; {best.reason} -> {best.entity} ({best.category})")
        return _Verdict("UNKNOWN", "unknown", 0.0, "none",
                        f"no name hint; none of {n} sampled values fits a class "
                        "-> unknown (encrypted, fail closed)")
    entity, category = hint
    said = f"name reads as {entity} ({category})"
    if entity == FREE_TEXT:
        agree = "; the values are long, varied text" if free_text else ""
        return _Verdict(FREE_TEXT, "free_text", 0.9 if free_text else 0.6, "name", said + agree)
    if not values:
        return _Verdict(entity, category, 0.5, "name", f"{said}; no values sampled")
    flags = rz.value_share("FLAG", values)
    if category == "direct" and flags >= FLAG_SHARE and len(set(values)) <= 3:
        return _Verdict(f"{entity}_FLAG", "quasi", round(0.5 + 0.5 * flags, 3), "name+values",
                        f"{said}, but {_pct(flags)} of {n} sampled values are yes/no flags "
                        f"-> {entity}_FLAG (quasi)")
    own = rz.value_share(entity, values) if entity in _VALUE_CHECKED else None
    if own is None or own < 0.5:  # the values do not look like what the name says
        for v in sorted(found, key=lambda v: -_RANK[v.category]):
            if v.entity in (rz.PERSON, rz.VOTER_ID) and entity in _PLACE_ENTITIES:
                continue  # place and district names are often surnames; codes often unique
            if (v.entity == rz.PERSON and category == "harmless"
                    and len(set(values)) / n < PERSON_OVER_CODE_DISTINCT):
                continue  # a county or status code list repeats: 100 NC counties, many surnames
            upgrade = _RANK[v.category] > _RANK[category]
            switch = (own is not None and v.category == category == "direct"
                      and v.entity != entity and v.entity in DEFAULT_LOOKUP_ENTITIES)
            if upgrade or switch:
                return _Verdict(v.entity, v.category, v.share, "values>name",
                                f"values over name: {said}, but {v.reason} "
                                f"-> {v.entity} ({v.category})")
    if category == "harmless" and n >= 50 and len(set(values)) / n >= 0.9:
        # nearly one value per row that no class claims: not the code such a name means
        return _Verdict("UNKNOWN", "unknown", 0.0, "values>name",
                        f"values over name: {said}, but {_pct(len(set(values)) / n)} of {n} "
                        "sampled values are distinct and no class fits -> unknown (encrypted)")
    if own is not None:
        return _Verdict(entity, category, round(0.6 + 0.4 * own, 3), "name+values",
                        f"{said}; {_pct(own)} of {n} sampled values fit")
    return _Verdict(entity, category, 0.8 if category == "harmless" else 0.7, "name",
                    f"{said}; the {n} sampled values show nothing more sensitive")


def _presidio_verdict(values: Sequence[str], model: str | None) -> _Verdict | None:
    """Last resort for unresolved columns: Presidio on a small sample of whole values."""
    from vault.pii.engine import LANGUAGE, get_analyzer  # heavy: load only when needed

    analyzer = get_analyzer(model)
    sample = list(values[:50])
    counts: dict[str, int] = {}
    for text, artifacts in analyzer.nlp_engine.process_batch(sample, LANGUAGE, batch_size=50):
        best: dict[str, int] = {}
        for res in analyzer.analyze(text, LANGUAGE, entities=_PRESIDIO_ENTITIES,
                                    nlp_artifacts=artifacts, score_threshold=0.5):
            best[res.entity_type] = max(best.get(res.entity_type, 0), res.end - res.start)
        for entity, covered in best.items():
            if covered >= 0.5 * len(text.strip()):
                counts[entity] = counts.get(entity, 0) + 1
    if not counts:
        return None
    entity, hits = max(counts.items(), key=lambda kv: kv[1])
    share = hits / len(sample)
    if share < 0.5:
        return None
    category: Category = "direct" if entity in _DIRECT_PRESIDIO else (
        "special" if entity == "NRP" else "quasi")
    return _Verdict(entity, category, round(share, 3), "presidio",
                    f"no name hint; Presidio finds {entity} covering {_pct(share)} of "
                    f"{len(sample)} sampled values -> {entity} ({category})")


_CACHE: dict[str, list[ColumnClass]] = {}
_CACHE_MAX = 256
_CACHE_LOCK = threading.Lock()


def schema_key(df: pl.DataFrame, *parts: object) -> str:
    """SHA-256 over column names and dtypes (and any options): the classification cache key."""
    h = hashlib.sha256(b"civicvault.pii.schema.v1\x00")
    for name, dtype in df.schema.items():
        h.update(name.encode() + b"\x1f" + str(dtype).encode() + b"\x1e")
    for part in parts:
        h.update(repr(part).encode() + b"\x1d")
    return h.hexdigest()


def _sample_digest(samples: Mapping[str, Sequence[str]]) -> str:
    h = hashlib.sha256()
    for name, values in samples.items():
        h.update(name.encode() + b"\x1f")
        for v in values:
            h.update(v.encode() + b"\x1e")
        h.update(b"\x1d")
    return h.hexdigest()


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


def classify_frame(
    df: pl.DataFrame,
    *,
    sample_rows: int = 300,
    overrides: Mapping[str, str] | None = None,
    lookup_entities: frozenset[str] | None = None,
    use_presidio: bool = True,
    model: str | None = None,
) -> list[ColumnClass]:
    """Classify every column of ``df`` (in order). Constant cost in the row count.

    ``overrides``: policy handling per entity or category (see ``vault.pii.handling``);
    ``lookup_entities``: entities that get blind indexes (default
    ``DEFAULT_LOOKUP_ENTITIES``); ``use_presidio``: try Presidio on columns that name
    hints and our value checks leave unresolved (loads the spaCy model once).
    """
    lookups = DEFAULT_LOOKUP_ENTITIES if lookup_entities is None else lookup_entities
    samples = _sample(df, sample_rows)
    # the sample is part of the key: values decide, so two files with the same header
    # (``col1..colN``) but different contents must not share a classification; the
    # batches of one file (same frame, same deterministic sample) still classify once
    key = schema_key(df, sample_rows, sorted((overrides or {}).items()), sorted(lookups),
                     use_presidio, model, _sample_digest(samples))
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return list(cached)
    result: list[ColumnClass] = []
    for name in df.columns:
        values = samples[name]
        verdict = _classify_values(name, values)
        if verdict.category == "unknown" and use_presidio and values:
            verdict = _presidio_verdict(values, model) or verdict
        result.append(
            ColumnClass(
                name=name,
                entity=verdict.entity,
                category=verdict.category,
                confidence=verdict.confidence,
                handling=handling_for(verdict.category, verdict.entity, overrides),
                lookup_key=verdict.category == "direct" and verdict.entity in lookups,
                evidence=verdict.evidence,
                reason=verdict.reason,
            )
        )
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = result
    return list(result)


def apply_policy(
    classes: Sequence[ColumnClass],
    decide: Callable[[str, str], str],
    lookup_entities: frozenset[str] | None = None,
) -> list[ColumnClass]:
    """Re-decide handling with a policy callable, e.g. ``policy.pii_handling``.

    ``decide(category, entity)`` returns a handling; it is validated like an
    override (one of six, and ``unknown`` can never become ``keep``).
    ``lookup_entities`` (e.g. ``policy.lookup_entities``) re-decides blind indexes.
    """
    out = []
    for c in classes:
        handling = handling_for(c.category, c.entity, {c.entity: decide(c.category, c.entity)})
        lookup = c.lookup_key if lookup_entities is None else (
            c.category == "direct" and c.entity in lookup_entities)
        out.append(dataclasses.replace(c, handling=handling, lookup_key=lookup))
    return out
