"""Ledger entries: what callers hand in (``EntryDraft``) and what the log holds (``Entry``).

An entry's canonical RFC 8785 bytes are its Merkle leaf; ``prev`` is the RFC 9162
leaf hash of the entry before it (64 zeros for entry 0), so the hash chain and
the tree are one structure. Entries hold identifiers, counts and hashes, never
personal data: ``details`` is for ids and counts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ledger.canonical import canonical_bytes, encode_plain, is_plain
from ledger.errors import BadInput
from ledger.merkle import leaf_hash

__all__ = ["GENESIS_PREV", "Entry", "EntryDraft", "rfc3339_utc"]

GENESIS_PREV = "0" * 64
_ACTION = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*")
_HEX256 = re.compile(r"[0-9a-f]{64}")
_MAX_TEXT = 1024


def rfc3339_utc(moment: datetime | None = None) -> str:
    """``2026-01-02T03:04:05.123456Z``: RFC 3339, UTC, microseconds."""
    moment = datetime.now(UTC) if moment is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_text(name: str, value: object, *, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or (required and not value) or len(value) > _MAX_TEXT:
        raise BadInput(f"ledger entry field '{name}' must be a non-empty string of at most "
                       f"{_MAX_TEXT} characters")


@dataclass(frozen=True)
class EntryDraft:
    """An entry before the log gives it a position, a time and its link to the previous one."""

    actor: str
    action: str
    resource: str
    purpose: str | None = None
    data_hash: str | None = None
    details: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_text("actor", self.actor, required=True)
        _check_text("resource", self.resource, required=True)
        _check_text("purpose", self.purpose, required=False)
        if not isinstance(self.action, str) or not _ACTION.fullmatch(self.action):
            raise BadInput("ledger entry action must be a dotted lowercase name, "
                           "e.g. 'vault.ingest.batch'")
        if self.data_hash is not None and (
            not isinstance(self.data_hash, str) or not _HEX256.fullmatch(self.data_hash)
        ):
            raise BadInput("ledger entry data_hash must be 64 lowercase hex digits (SHA-256)")
        if self.details is not None and not isinstance(self.details, Mapping):
            raise BadInput("ledger entry details must be a JSON object")

    def document(self, *, seq: int, prev: str, time: str) -> dict[str, Any]:
        """The JSON object of this draft placed at ``seq`` after ``prev``."""
        doc: dict[str, Any] = {
            "seq": seq, "prev": prev, "time": time,
            "actor": self.actor, "action": self.action, "resource": self.resource,
        }
        if self.purpose is not None:
            doc["purpose"] = self.purpose
        if self.data_hash is not None:
            doc["data_hash"] = self.data_hash
        if self.details is not None:
            doc["details"] = dict(self.details)
        return doc


@dataclass(frozen=True)
class Entry:
    """One entry of the log: its fields, its canonical bytes and its leaf hash."""

    seq: int
    prev: str
    time: str
    actor: str
    action: str
    resource: str
    purpose: str | None
    data_hash: str | None
    details: Mapping[str, Any] | None
    raw: bytes = field(repr=False)
    leaf_hash: bytes = field(repr=False)

    @classmethod
    def place(cls, draft: EntryDraft, *, seq: int, prev: str, time: str) -> Entry:
        """Give ``draft`` its position, link and time; encode it canonically."""
        doc = draft.document(seq=seq, prev=prev, time=time)
        # The draft's own fields are validated strings and seq a small int, so only
        # ``details`` decides whether the fast JCS path applies.
        plain = draft.details is None or is_plain(doc["details"])
        raw = encode_plain(doc) if plain else canonical_bytes(doc)
        return cls(seq=seq, prev=prev, time=time, actor=draft.actor, action=draft.action,
                   resource=draft.resource, purpose=draft.purpose, data_hash=draft.data_hash,
                   details=draft.details, raw=raw, leaf_hash=leaf_hash(raw))

    @classmethod
    def parse(cls, raw: bytes) -> Entry:
        """Read an entry back from its canonical bytes (no chain check: see ``ledger.verify``)."""
        try:
            doc = orjson.loads(raw)
            return cls(seq=int(doc["seq"]), prev=str(doc["prev"]), time=str(doc["time"]),
                       actor=str(doc["actor"]), action=str(doc["action"]),
                       resource=str(doc["resource"]), purpose=doc.get("purpose"),
                       data_hash=doc.get("data_hash"), details=doc.get("details"),
                       raw=bytes(raw), leaf_hash=leaf_hash(raw))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise BadInput("not a ledger entry (malformed JSON or missing fields)") from None

    def to_json(self) -> dict[str, Any]:
        """The entry as a JSON value (exactly what its bytes encode)."""
        value: dict[str, Any] = orjson.loads(self.raw)
        return value
