"""An optional second NER model that votes on the first one's entities (opt-in).

Off by default. With ``CIVICVAULT_SPACY_MODEL_2`` naming a second installed spaCy
model (or a model directory), :func:`vault.pii.engine.get_analyzer` appends the
``civicvault_ner_vote`` component to the first model's pipeline, after its ``ner``.
The component runs the second model's ``ner`` on the same text and rewrites
``doc.ents`` (what Presidio's spaCy recognizer reads) by three rules, chosen on the
development sets only (docs/PII.md, "Free-text recall on held-out text"):

* a first-model entity keeps its span; when exactly one second-model entity overlaps
  it with another type (person, organisation, place, group, date), it takes the
  second model's label (the models disagree on "Okafor Ltd" or "Hakuba": the label of
  the model with word vectors is more often right);
* a first-model organisation that the second model does not see at all is dropped
  (the small model calls capitalised common nouns and genres organisations);
* a second-model person or place that overlaps no first-model entity is added.

The second model is loaded with its ``ner`` alone enabled; nothing is downloaded: a
missing model is ``BadInput`` (checked by the engine before the pipeline is built).
Both models must tokenise alike (any two English spaCy v3 pipelines do); entities
are carried across by character offsets, and a span that does not fall on the first
model's token boundaries is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import spacy
from spacy.language import Language
from spacy.tokens import Doc, Span

__all__ = ["COMPONENT", "NerVote", "vote"]

COMPONENT = "civicvault_ner_vote"

_TYPE = {"PERSON": "P", "PER": "P", "ORG": "O", "GPE": "L", "LOC": "L", "FAC": "L",
         "NORP": "N", "DATE": "D", "TIME": "D"}
_ADDED = frozenset({"PERSON", "PER", "GPE", "LOC", "FAC"})


def _overlaps(a: Span, b: Span) -> bool:
    return min(a.end_char, b.end_char) > max(a.start_char, b.start_char)


def vote(doc: Doc, second: Iterable[Span]) -> list[Span]:
    """The entities of ``doc`` after the second model's vote (``second``: its entities
    on the same text, possibly from another ``Doc``)."""
    other = list(second)
    first = list(doc.ents)
    out: list[Span] = []
    for ent in first:
        kind = _TYPE.get(ent.label_)
        seen = [x for x in other if _overlaps(ent, x)]
        if ent.label_ == "ORG" and not seen:
            continue
        if kind is not None and len(seen) == 1:
            theirs = _TYPE.get(seen[0].label_)
            if theirs is not None and theirs != kind:
                relabelled = doc.char_span(ent.start_char, ent.end_char, label=seen[0].label_)
                if relabelled is not None:
                    out.append(relabelled)
                    continue
        out.append(ent)
    for x in other:
        if x.label_ in _ADDED and not any(_overlaps(x, ent) for ent in first):
            added = doc.char_span(x.start_char, x.end_char, label=x.label_)
            if added is not None:
                out.append(added)
    out.sort(key=lambda s: s.start_char)
    return out


class NerVote:
    """The pipeline component: ``doc.ents`` rewritten by :func:`vote`."""

    def __init__(self, second: Language) -> None:
        self.second = second

    def __call__(self, doc: Doc) -> Doc:
        doc.ents = vote(doc, self.second(doc.text).ents)
        return doc

    def pipe(self, docs: Iterable[Doc], batch_size: int = 128) -> Iterator[Doc]:
        batch: list[Doc] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= batch_size:
                yield from self._batch(batch)
                batch = []
        yield from self._batch(batch)

    def _batch(self, docs: list[Doc]) -> Iterator[Doc]:
        for doc, theirs in zip(docs, self.second.pipe(d.text for d in docs), strict=True):
            doc.ents = vote(doc, theirs.ents)
            yield doc


def load_second(name: str) -> Language:
    """The second model with its ``ner`` alone enabled (``name``: a package or a path)."""
    nlp = spacy.load(name)
    nlp.select_pipes(enable=[p for p in nlp.pipe_names if p == "ner"])
    return nlp


@Language.factory(COMPONENT, default_config={"model": ""})
def _make(nlp: Language, name: str, model: str) -> Any:
    return NerVote(load_second(model))
