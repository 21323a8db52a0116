"""Scoring free-text detection against gold spans (presidio-research's synthetic set).

A gold span counts as **redacted** when predicted spans cover at least half of
its characters, whatever their label: that is what protects the text. It counts
as **typed** when the covering spans carry an entity of the *type* that the gold
label maps to. Both recalls are reported per gold label and overall.

The mapping is fixed and many-to-one, in two steps, so that it can be reviewed:

* :data:`ENTITY_TYPE` puts each entity name we (or Presidio) emit into exactly
  one type of our taxonomy. A type is what a privacy reviewer reads in a
  redacted copy: "a person", "a place", "an organisation", ... Our location
  type covers everything that places a person on a map (street address, ZIP
  or postcode, city, region, country): the three are often adjacent and one
  address written over several lines is one disclosure. Party affiliation is a
  political group, so NRP (nationality, religious or political group).
* :data:`GOLD_TYPE` maps each gold label of the dataset to one type. TITLE
  (honorifics such as "Dr.", job titles) describes a person and maps to PERSON:
  our name recognizer includes an honorific in the PERSON span it redacts.

:data:`LABEL_MAP` (gold label -> accepted entity names) is derived from the two.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vault.pii.freetext import Span

__all__ = [
    "ENTITY_TYPE",
    "GOLD_TYPE",
    "HELDOUT_SHARE",
    "LABEL_MAP",
    "EntityRecall",
    "score_spans",
    "split_of",
]

#: entity name we (or Presidio) emit -> type of our taxonomy
ENTITY_TYPE: Mapping[str, str] = {
    "PERSON": "PERSON",
    "TITLE": "PERSON",  # a job title under a name in a signature: describes the person
    "LOCATION": "LOCATION",
    "US_STREET_ADDRESS": "LOCATION",
    "US_ZIP_CODE": "LOCATION",
    "ORGANIZATION": "ORGANIZATION",
    "DATE_TIME": "DATE_TIME",
    "BIRTH_DATE": "DATE_TIME",
    "AGE": "AGE",
    "NRP": "NRP",
    "PARTY": "NRP",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "URL": "URL",
    "IP_ADDRESS": "IP_ADDRESS",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN_CODE",
    "US_SSN": "US_SSN",
    "US_DRIVER_LICENSE": "US_DRIVER_LICENSE",
    "VOTER_ID": "VOTER_ID",
}

#: gold label of presidio-research's synth_dataset_v2 -> type of our taxonomy
GOLD_TYPE: Mapping[str, str] = {
    "PERSON": "PERSON",
    "TITLE": "PERSON",
    "STREET_ADDRESS": "LOCATION",
    "GPE": "LOCATION",
    "ZIP_CODE": "LOCATION",
    "ORGANIZATION": "ORGANIZATION",
    "DATE_TIME": "DATE_TIME",
    "AGE": "AGE",
    "NRP": "NRP",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "DOMAIN_NAME": "URL",
    "IP_ADDRESS": "IP_ADDRESS",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN_CODE",
    "US_SSN": "US_SSN",
    "US_DRIVER_LICENSE": "US_DRIVER_LICENSE",
}

#: gold label -> the entity names counted as the right type for it
LABEL_MAP: Mapping[str, frozenset[str]] = {
    gold: frozenset(e for e, t in ENTITY_TYPE.items() if t == kind)
    for gold, kind in GOLD_TYPE.items()
}


@dataclass
class EntityRecall:
    total: int = 0
    redacted: int = 0
    typed: int = 0
    by_label: dict[str, list[int]] = field(default_factory=dict)  # label -> [total, red, typed]
    predicted: int = 0
    predicted_on_gold: int = 0  # predicted spans overlapping some gold span
    predicted_typed: int = 0  # ... overlapping a gold span of the predicted span's type

    @property
    def span_precision(self) -> float:
        """Share of predicted spans that touch a gold span (a lenient precision)."""
        return self.predicted_on_gold / self.predicted if self.predicted else 0.0

    @property
    def typed_precision(self) -> float:
        """Share of predicted spans that touch a gold span of the same type."""
        return self.predicted_typed / self.predicted if self.predicted else 0.0

    @property
    def redacted_recall(self) -> float:
        return self.redacted / self.total if self.total else 0.0

    @property
    def typed_recall(self) -> float:
        return self.typed / self.total if self.total else 0.0


def score_spans(
    gold: Iterable[Sequence[tuple[int, int, str]]], predicted: Iterable[Sequence[Span]]
) -> EntityRecall:
    """Recall of gold ``(start, end, label)`` spans per text against predicted spans."""
    out = EntityRecall()
    for gold_spans, pred in zip(gold, predicted, strict=True):
        out.predicted += len(pred)
        out.predicted_on_gold += sum(
            any(min(span.end, e) > max(span.start, s) for s, e, _ in gold_spans) for span in pred
        )
        out.predicted_typed += sum(
            any(min(span.end, e) > max(span.start, s)
                and span.entity in LABEL_MAP.get(g, frozenset()) for s, e, g in gold_spans)
            for span in pred
        )
        for start, end, label in gold_spans:
            counts = out.by_label.setdefault(label, [0, 0, 0])
            counts[0] += 1
            out.total += 1
            need = 0.5 * (end - start)
            covered = typed = 0
            for span in pred:
                overlap = max(0, min(end, span.end) - max(start, span.start))
                covered += overlap
                if span.entity in LABEL_MAP.get(label, frozenset()):
                    typed += overlap
            if covered >= need:
                counts[1] += 1
                out.redacted += 1
            if typed >= need:
                counts[2] += 1
                out.typed += 1
    return out


#: share of presidio-research's templates held out (by template id, see :func:`split_of`)
HELDOUT_SHARE = 0.3


def split_of(template_id: object) -> str:
    """``"heldout"`` or ``"dev"`` for a template id, fixed by a hash of the id alone.

    About :data:`HELDOUT_SHARE` of the templates are held out; every sentence of a
    template falls on the same side, so no held-out sentence shares its wording with a
    development one.
    """
    digest = hashlib.sha256(f"civicvault.pii.split.v1:{template_id}".encode()).digest()
    return "heldout" if int.from_bytes(digest[:4], "big") < HELDOUT_SHARE * 2**32 else "dev"
