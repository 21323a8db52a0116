"""PII detection for everything that enters the vault.

Tabular files are read (``readers``), their columns classified once per schema
from name hints and a sample of values (``classifier``), and handled column-wise
(``handling``, ``generalize``). Only free-text columns are scanned cell by cell,
in batches (``freetext``). Presidio is configured fully offline (``engine``)
and extended with recognizers for voter-file data (``recognizers``).

What ingest calls::

    from vault.pii import iter_batches, read_table, classify_frame, apply_policy, redact_texts
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vault.pii.classifier import ColumnClass, apply_policy, classify_frame
from vault.pii.readers import iter_batches, read_table

if TYPE_CHECKING:
    from vault.pii.freetext import redact_texts


def __getattr__(name: str) -> Any:
    # Presidio and spaCy load only when free text is redacted: classifying a file
    # (``civicvault classify``) never imports them.
    if name == "redact_texts":
        from vault.pii.freetext import redact_texts

        return redact_texts
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "ColumnClass",
    "apply_policy",
    "classify_frame",
    "iter_batches",
    "read_table",
    "redact_texts",
]
