"""``--purpose``: why an operation is done, as a short label recorded in the ledger entry's
``purpose`` field (compliance officers read it there).

A purpose is a label, not a sentence about someone: 1-80 characters of letters, digits,
space and ``_ - . , : /`` (e.g. ``gotv-planning``, ``quarterly report Q3``). Anything
else is refused without echoing it, since free text typed by a caller may hold PII.
"""

from __future__ import annotations

import re
from typing import Annotated

import typer

from vault.errors import BadInput

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _\-.,:/]{0,79}")

PurposeOpt = Annotated[str | None, typer.Option(
    "--purpose", help="Why (a short label, e.g. 'gotv-planning'), recorded in the ledger.")]


def checked_purpose(text: str | None) -> str | None:
    """``text`` stripped if it is a valid label; None if not given; else BadInput."""
    if text is None:
        return None
    label = text.strip()
    if not _LABEL.fullmatch(label):
        raise BadInput(f"--purpose must be a short label: 1-80 letters, digits, spaces or "
                       f"_-.,:/ (got {len(text)} characters)")
    return label
