"""How a batch is stored (the dataset's column plan) and what storing it gave."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from vault.blind_index import Normalizer

__all__ = ["BatchResult", "ColumnLayout", "StoredColumn"]


@dataclass(frozen=True)
class StoredColumn:
    """How one column of a prepared batch is stored."""

    name: str
    role: Literal["direct", "attribute"]
    lookup: Normalizer | None = None  # blind-indexed with this normaliser


@dataclass(frozen=True)
class ColumnLayout:
    columns: tuple[StoredColumn, ...]
    identity: str | None = None  # the lookup column that says two rows are the same subject

    @property
    def direct(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "direct"]

    @property
    def attributes(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "attribute"]

    @property
    def lookups(self) -> list[StoredColumn]:
        return [c for c in self.columns if c.lookup is not None]

    def to_json(self, **extra: Any) -> str:
        """The dataset's stored column plan (names and roles only, never values)."""
        return json.dumps({
            "stored": [{"name": c.name, "role": c.role, "lookup": c.lookup} for c in self.columns],
            "identity": self.identity, **extra}, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> ColumnLayout:
        doc = json.loads(raw)
        return cls(columns=tuple(StoredColumn(c["name"], c["role"], c.get("lookup"))
                                 for c in doc["stored"]), identity=doc.get("identity"))


@dataclass(frozen=True)
class BatchResult:
    batch_id: int | None
    rows_in: int
    added: int
    updated: int
    skipped: int
    data_hash: str | None
    ledger_seq: int | None
    already_stored: bool = False
    suppressed: int = 0  # rows of erased subjects, not added back
