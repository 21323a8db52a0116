"""Scoring free-text detection against gold spans (presidio-research's synthetic set).

A gold span counts as **redacted** when predicted spans cover at least half of
its characters, whatever their label: that is what protects the text. It counts
as **typed** when the covering span's entity is one that the gold label maps to
(:data:`LABEL_MAP`). Both recalls are reported per gold label and overall.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vault.pii.freetext import Span

__all__ = ["LABEL_MAP", "EntityRecall", "score_spans"]

#: gold label of presidio-research's synth_dataset_v2 -> our / Presidio's entities
LABEL_MAP: Mapping[str, frozenset[str]] = {
    "PERSON": frozenset({"PERSON"}),
    "STREET_ADDRESS": frozenset({"US_STREET_ADDRESS", "LOCATION"}),
    "GPE": frozenset({"LOCATION", "US_STREET_ADDRESS"}),
    "ORGANIZATION": frozenset({"ORGANIZATION"}),
    "CREDIT_CARD": frozenset({"CREDIT_CARD"}),
    "DATE_TIME": frozenset({"DATE_TIME", "BIRTH_DATE"}),
    "TITLE": frozenset({"PERSON"}),
    "PHONE_NUMBER": frozenset({"PHONE_NUMBER"}),
    "AGE": frozenset({"AGE"}),
    "NRP": frozenset({"NRP"}),
    "EMAIL_ADDRESS": frozenset({"EMAIL_ADDRESS"}),
    "ZIP_CODE": frozenset({"US_ZIP_CODE", "US_STREET_ADDRESS", "LOCATION"}),
    "DOMAIN_NAME": frozenset({"URL"}),
    "IBAN_CODE": frozenset({"IBAN_CODE"}),
    "US_SSN": frozenset({"US_SSN"}),
    "IP_ADDRESS": frozenset({"IP_ADDRESS"}),
    "US_DRIVER_LICENSE": frozenset({"US_DRIVER_LICENSE"}),
}


@dataclass
class EntityRecall:
    total: int = 0
    redacted: int = 0
    typed: int = 0
    by_label: dict[str, list[int]] = field(default_factory=dict)  # label -> [total, red, typed]
    predicted: int = 0
    predicted_on_gold: int = 0  # predicted spans overlapping some gold span

    @property
    def span_precision(self) -> float:
        """Share of predicted spans that touch a gold span (a lenient precision)."""
        return self.predicted_on_gold / self.predicted if self.predicted else 0.0

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
