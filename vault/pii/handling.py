"""Default handling per PII category and entity; a policy may override it.

=============  ==========  ============================================================
category       default     meaning
=============  ==========  ============================================================
direct         encrypt     sealed under the subject's own key (crypto-shredding);
                           blind-indexed too when the entity is a lookup key
special        encrypt     sealed column-wise, available to DP releases
quasi          encrypt     same; ``generalize`` for birth dates and ZIP codes
                           (the generalised value is what is stored, sealed);
                           ``drop`` for a separate ZIP+4 suffix column
free_text      redact      a redacted copy is stored; the original is sealed
harmless       keep        stored as is
unknown        encrypt     fail closed: whatever we could not classify is sensitive
=============  ==========  ============================================================

Overrides are a mapping from an entity name (``"BIRTH_DATE"``) or a category
(``"quasi"``) to a handling; the entity wins over the category. An override can
never make an ``unknown`` column ``keep``: fail closed stays closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from policies.vocab import CLASSIFIER_LOOKUPS
from vault.errors import BadInput

__all__ = [
    "CATEGORIES",
    "DEFAULT_LOOKUP_ENTITIES",
    "HANDLINGS",
    "Category",
    "Handling",
    "default_handling",
    "handling_for",
]

Category = Literal["direct", "special", "quasi", "free_text", "harmless", "unknown"]
Handling = Literal["encrypt", "tokenize", "generalize", "redact", "drop", "keep"]

CATEGORIES: Final[tuple[Category, ...]] = (
    "direct", "special", "quasi", "free_text", "harmless", "unknown",
)
HANDLINGS: Final[tuple[Handling, ...]] = (
    "encrypt", "tokenize", "generalize", "redact", "drop", "keep",
)

_BY_CATEGORY: Final[Mapping[Category, Handling]] = {
    "direct": "encrypt",
    "special": "encrypt",
    "quasi": "encrypt",
    "free_text": "redact",
    "harmless": "keep",
    "unknown": "encrypt",
}
_BY_ENTITY: Final[Mapping[str, Handling]] = {
    "BIRTH_DATE": "generalize",  # -> birth year / age band
    "US_ZIP_CODE": "generalize",  # ZIP+4 -> ZIP5
    "US_ZIP4": "drop",  # a separate +4 column: generalising to ZIP5 removes it
}

#: Entities whose columns get a keyed blind index for exact-match lookup (dedup, erasure)
#: when the classifier runs without a policy (``policies.vocab.CLASSIFIER_LOOKUPS``); a
#: policy's ``[pii] lookup_entities`` always replaces it.
DEFAULT_LOOKUP_ENTITIES: Final[frozenset[str]] = CLASSIFIER_LOOKUPS


def default_handling(category: Category, entity: str) -> Handling:
    """The built-in handling for a column of ``category`` holding ``entity``."""
    if category in ("quasi", "special") and entity in _BY_ENTITY:
        return _BY_ENTITY[entity]
    return _BY_CATEGORY[category]


def handling_for(
    category: Category, entity: str, overrides: Mapping[str, str] | None = None
) -> Handling:
    """Handling after policy ``overrides`` (entity first, then category, then the default)."""
    chosen: str = default_handling(category, entity)
    if overrides:
        if entity in overrides:
            chosen = overrides[entity]
        elif category in overrides:
            chosen = overrides[category]
    if chosen not in HANDLINGS:
        raise BadInput(f"unknown PII handling {chosen!r} for category {category}")
    if category == "unknown" and chosen == "keep":
        raise BadInput("policy may not keep unclassified columns in the clear (fail closed)")
    return chosen  # narrowed by the HANDLINGS check above
