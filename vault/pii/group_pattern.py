"""The recognizer shape shared by our Presidio recognizers (``recognizers``, ``names``,
``notes``): a regex whose named group ``x`` is the entity, and the tier of a result.

It sits below those modules so that ``recognizers`` (which lists every recognizer) can
import ``names`` and ``notes`` without their importing it back.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

__all__ = ["TIER_KEY", "GroupPatternRecognizer"]

#: recognition-metadata key overriding the recognizer's tier for one result
TIER_KEY = "civicvault_tier"


class GroupPatternRecognizer(EntityRecognizer):
    """Regexes whose named group ``x`` is the entity and the rest its cue (a
    variable-length look-behind, which Python's ``re`` cannot do)."""

    def __init__(self, entity: str, name: str, patterns: list[str], score: float,
                 tier: int = 2, check: Callable[[str], bool] | None = None) -> None:
        self._regexes = [re.compile(p, re.MULTILINE) for p in patterns]
        self._check = check
        self._score = score
        self._tier = tier
        self._label = name
        super().__init__(supported_entities=[entity], name=name)

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities: list[str],
                nlp_artifacts: NlpArtifacts | None = None) -> list[RecognizerResult]:
        entity = self.supported_entities[0]
        out: list[RecognizerResult] = []
        for regex in self._regexes:
            for m in regex.finditer(text):
                if self._check is not None and not self._check(m.group("x")):
                    continue
                out.append(RecognizerResult(
                    entity, m.start("x"), m.end("x"), self._score,
                    recognition_metadata={
                        RecognizerResult.RECOGNIZER_NAME_KEY: self._label,
                        TIER_KEY: self._tier,
                    },
                ))
        return out
