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

from vault.pii.classifier import ColumnClass, apply_policy, classify_frame
from vault.pii.freetext import redact_texts
from vault.pii.readers import iter_batches, read_table

__all__ = [
    "ColumnClass",
    "apply_policy",
    "classify_frame",
    "iter_batches",
    "read_table",
    "redact_texts",
]
