"""Ledger entries: what callers hand in (``EntryDraft``) and what the log holds (``Entry``).

An entry's canonical RFC 8785 bytes are its Merkle leaf; ``prev`` is the RFC 9162
leaf hash of the entry before it (64 zeros for entry 0), so the hash chain and
the tree are one structure. Entries hold identifiers, counts and hashes, never
personal data: ``details`` is for ids and counts.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import orjson

from ledger.canonical import canonical_bytes, is_plain
from ledger.errors import BadInput, EntryTooLarge
from ledger.merkle import leaf_hash

__all__ = ["GENESIS_PREV", "MAX_ENTRY_BYTES", "MAX_STATE_ENTRY_BYTES", "Entry", "EntryDraft",
           "check_size", "place_chain", "rfc3339_utc"]

GENESIS_PREV = "0" * 64
# Stands in for ``prev`` while a draft is encoded before its predecessor's hash is
# known: 64 characters like a real value, but not hex, so it is never one.
_PREV_STANDIN = "p" * 64
_PREV_MARK = b'"prev":"' + _PREV_STANDIN.encode()
_ACTION = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*")
_HEX256 = re.compile(r"[0-9a-f]{64}")
_MAX_TEXT = 1024
#: Every entry's cap (its canonical bytes), enforced where entries are placed
#: (:func:`place_chain`, the one path of every append): what a caller can shape
#: (denials, annotations, requests) can never make the immutable log grow by more.
MAX_ENTRY_BYTES = 4096
#: The largest cap a draft may ask for: entries whose details are digest lists the
#: vault computes itself (state manifests of a whole ingest batch, erasure, rotation).
MAX_STATE_ENTRY_BYTES = 1 << 20


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
    max_bytes: int = field(default=MAX_ENTRY_BYTES, compare=False)  # not part of the entry

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
        if not (isinstance(self.max_bytes, int)
                and MAX_ENTRY_BYTES <= self.max_bytes <= MAX_STATE_ENTRY_BYTES):
            raise BadInput(f"ledger entry max_bytes must be between {MAX_ENTRY_BYTES} and "
                           f"{MAX_STATE_ENTRY_BYTES}")

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


@dataclass(frozen=True, slots=True)
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
        [entry] = place_chain([draft], start=seq, prev=bytes.fromhex(prev), time=time)
        return entry

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


# The slots' own setters, in field order: ``place_chain`` fills thousands of
# entries per call without the frozen ``__init__``'s eleven ``object.__setattr__``.
_SLOT_SETTERS = tuple(getattr(Entry, f.name).__set__ for f in fields(Entry))

# A batch of plain documents is encoded by one ``orjson.dumps`` call with NUL bytes
# spliced in as fragments: around each ``prev`` value and between documents.
# orjson escapes every control character inside strings (RFC 8259), so a raw NUL
# in its output is always one of ours, and splitting on it is exact.
_CUT = b"\x00"
_PREV_CUT = orjson.Fragment(b'"' + _CUT + b'"')
_DOC_CUT = orjson.Fragment(_CUT)


def _split_at_prev(raw: bytes) -> tuple[bytes, bytes]:
    """``raw`` (encoded with the stand-in ``prev``) around the stand-in's 64 characters.

    ``prev`` is a top-level key, so RFC 8785 puts it at the same place whatever its
    value; after it come only ``purpose``, ``resource``, ``seq`` and ``time``, whose
    encodings cannot contain an unescaped ``"prev":"``, so the last match is it.
    """
    cut = raw.rfind(_PREV_MARK) + 8
    return raw[:cut], raw[cut + 64:]


def _encode_around_prev(
    drafts: Sequence[EntryDraft], start: int, time: str
) -> tuple[list[bytes], list[bytes]]:
    """Each draft's canonical bytes at ``start + i``, as the parts before and after ``prev``.

    Plain documents (see ``ledger.canonical``) go through one orjson call for the
    batch; any other document through the reference encoder, one at a time.
    """
    heads, tails = [b""] * len(drafts), [b""] * len(drafts)
    batch: list[Any] = []
    batched: list[int] = []
    for i, draft in enumerate(drafts):
        doc = draft.document(seq=start + i, prev=_PREV_STANDIN, time=time)
        # The draft's own fields are validated strings and seq an int, so only
        # ``details`` decides whether the fast JCS path applies.
        if draft.details is None or is_plain(doc["details"]):
            doc["prev"] = _PREV_CUT
            batch += (doc, _DOC_CUT)
            batched.append(i)
        else:
            heads[i], tails[i] = _split_at_prev(canonical_bytes(doc))
    if not batched:
        return heads, tails
    batch.pop()  # cuts go between documents only
    try:
        pieces = orjson.dumps(batch, option=orjson.OPT_SORT_KEYS).split(_CUT)
    except orjson.JSONEncodeError:  # e.g. a lone surrogate: let the reference decide
        for i in batched:
            doc = drafts[i].document(seq=start + i, prev=_PREV_STANDIN, time=time)
            heads[i], tails[i] = _split_at_prev(canonical_bytes(doc))
        return heads, tails
    if len(pieces) != 2 * len(batched):
        raise RuntimeError("orjson output holds a raw NUL byte it should have escaped")
    # pieces: "[" head0 | tail0 "," | "," head1 | tail1 "," | ... | "," headN | tailN "]"
    if len(batched) == len(drafts):
        return [p[1:] for p in pieces[0::2]], [p[:-1] for p in pieces[1::2]]
    for i, head, tail in zip(batched, pieces[0::2], pieces[1::2], strict=True):
        heads[i], tails[i] = head[1:], tail[:-1]
    return heads, tails


def check_size(draft: EntryDraft) -> None:
    """Raise :class:`EntryTooLarge` if ``draft`` would be over its cap at any position."""
    place_chain([draft], start=2**63 - 1, prev=bytes(32), time=rfc3339_utc())


def place_chain(
    drafts: Sequence[EntryDraft], *, start: int, prev: bytes, time: str
) -> list[Entry]:
    """Entries ``start, start+1, ...`` for ``drafts``, the first linked to leaf hash ``prev``.

    Each entry's bytes are encoded before the chain is walked; the walk only
    splices each predecessor's hash into place and hashes the result.
    """
    heads, tails = _encode_around_prev(drafts, start, time)
    for draft, head, tail in zip(drafts, heads, tails, strict=True):
        size = len(head) + 64 + len(tail)
        if size > draft.max_bytes:  # before anything of this chunk is written
            raise EntryTooLarge(draft.action, size, draft.max_bytes)
    sha, new = hashlib.sha256, Entry.__new__
    (set_seq, set_prev, set_time, set_actor, set_action, set_resource, set_purpose,
     set_data_hash, set_details, set_raw, set_leaf_hash) = _SLOT_SETTERS
    out: list[Entry] = []
    for seq, draft, head, tail in zip(itertools.count(start), drafts, heads, tails):
        link = prev.hex()
        raw = b"".join((head, link.encode(), tail))
        prev = sha(b"\x00" + raw).digest()
        entry = new(Entry)
        set_seq(entry, seq)
        set_prev(entry, link)
        set_time(entry, time)
        set_actor(entry, draft.actor)
        set_action(entry, draft.action)
        set_resource(entry, draft.resource)
        set_purpose(entry, draft.purpose)
        set_data_hash(entry, draft.data_hash)
        set_details(entry, draft.details)
        set_raw(entry, raw)
        set_leaf_hash(entry, prev)
        out.append(entry)
    return out
