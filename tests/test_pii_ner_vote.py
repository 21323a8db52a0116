"""The opt-in second NER (``vault.pii.ner_vote``): its vote, and its wiring into the engine.

The second models here are real spaCy pipelines made in the test: a blank English
pipeline whose ``ner`` is an entity ruler with made-up names (no model is downloaded).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc, Span

from vault.errors import BadInput
from vault.pii import engine
from vault.pii.freetext import find_spans
from vault.pii.ner_vote import vote

_NLP = spacy.blank("en")


def _doc(text: str, ents: list[tuple[str, str]]) -> Doc:
    """``text`` with each (phrase, label) of ``ents`` marked as an entity."""
    doc = _NLP(text)
    spans = []
    for phrase, label in ents:
        start = text.index(phrase)
        span = doc.char_span(start, start + len(phrase), label=label)
        assert span is not None
        spans.append(span)
    doc.ents = spans
    return doc


def _labels(spans: list[Span]) -> list[tuple[str, str]]:
    return [(s.text, s.label_) for s in spans]


def test_a_label_the_second_model_disputes_takes_its_label() -> None:
    text = "Ask Zorvek Quell about the fence."
    first = _doc(text, [("Zorvek Quell", "ORG")])
    second = _doc(text, [("Zorvek Quell", "PERSON")])
    assert _labels(vote(first, second.ents)) == [("Zorvek Quell", "PERSON")]


def test_an_organisation_the_second_model_does_not_see_is_dropped() -> None:
    text = "Songs about Gloomwhistle and Brannock Mills."
    first = _doc(text, [("Gloomwhistle", "ORG"), ("Brannock Mills", "ORG")])
    second = _doc(text, [("Brannock Mills", "ORG")])
    assert _labels(vote(first, second.ents)) == [("Brannock Mills", "ORG")]


def test_other_first_model_entities_stay_when_unseen() -> None:
    text = "Zorvek moved to Quellport in 2019 with 3 dogs."
    first = _doc(text, [("Zorvek", "PERSON"), ("Quellport", "GPE"), ("2019", "DATE"),
                        ("3", "CARDINAL")])
    assert _labels(vote(first, [])) == _labels(list(first.ents))


def test_a_person_or_place_only_the_second_model_sees_is_added() -> None:
    text = "then zorvek drove to quellport with Brannock Mills staff"
    first = _doc(text, [("Brannock Mills", "ORG")])
    second = _doc(text, [("zorvek", "PERSON"), ("quellport", "GPE"),
                         ("Brannock Mills", "ORG"), ("staff", "NORP")])
    assert _labels(vote(first, second.ents)) == [
        ("zorvek", "PERSON"), ("quellport", "GPE"), ("Brannock Mills", "ORG")]


def test_spans_are_the_first_models_and_never_overlap() -> None:
    # the second model's person overlaps the first model's organisation: the span stays
    # the first model's, with the second model's label, and nothing overlapping is added
    text = "Zorvek Quell of Brannock"
    first = _doc(text, [("Quell of Brannock", "ORG")])
    second = _doc(text, [("Zorvek Quell", "PERSON")])
    assert _labels(vote(first, second.ents)) == [("Quell of Brannock", "PERSON")]


def _ruler_model(path: Path, names: list[str]) -> Path:
    nlp: Language = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler", name="ner")
    ruler.add_patterns([{"label": "PERSON", "pattern": n} for n in names])  # type: ignore[attr-defined]
    nlp.to_disk(path)
    return path


@pytest.fixture
def fresh_engine() -> Iterator[None]:
    engine.clear_cache()
    yield
    engine.clear_cache()


def test_second_model_from_the_environment_votes_in_the_engine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_engine: None) -> None:
    text = "the report mentions qzxvor twice"
    start = text.index("qzxvor")
    assert not any(s.start == start for s in find_spans([text])[0])
    model = _ruler_model(tmp_path / "second", ["qzxvor"])
    monkeypatch.setenv(engine.MODEL_2_ENV, str(model))
    assert engine.second_model_name() == str(model)
    spans = find_spans([text])[0]
    assert [(s.start, s.end, s.entity) for s in spans] == [(start, start + 6, "PERSON")]


def test_missing_second_model_is_bad_input_not_a_download(
        monkeypatch: pytest.MonkeyPatch, fresh_engine: None) -> None:
    monkeypatch.setenv(engine.MODEL_2_ENV, "xx_no_such_second_model")
    with pytest.raises(BadInput, match="CIVICVAULT_SPACY_MODEL_2"):
        engine.get_analyzer()


def test_second_model_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(engine.MODEL_2_ENV, raising=False)
    assert engine.second_model_name() is None
