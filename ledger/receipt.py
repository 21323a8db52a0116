"""Receipts: C2SP tlog-proof (https://c2sp.org/tlog-proof) for one ledger entry. Pure.

::

    c2sp.org/tlog-proof@v1
    extra <base64 of the entry's canonical bytes (the Merkle leaf)>
    index <entry seq>
    <base64 inclusion proof hash, leaf side first>...
    <empty line>
    <the checkpoint note, with the log signature and witness cosignatures>

The ``extra`` line carries the entry itself; it is trusted only once it hashes to a
leaf that the inclusion proof binds to the signed checkpoint's root. ``verify_receipt``
also checks that the entry's ``seq`` is the index, that the checkpoint is signed by
a log key (for the expected origin), that a quorum of known witnesses cosigned it,
and that the text is exactly the canonical serialisation of what it parsed to (so
no byte can change unnoticed: base64 with stray padding bits, a renamed unknown
signer, extra whitespace are all refused).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ledger import merkle
from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.cosignature import CosignatureVerifier, require_quorum, signature_lines, split_note
from ledger.errors import VerificationFailed
from ledger.signer import Verifier

__all__ = ["HEADER", "Receipt", "ReceiptVerdict", "file_sha256", "format_receipt",
           "parse_receipt", "verify_receipt"]

HEADER = "c2sp.org/tlog-proof@v1"
SUFFIX = ".tlog-proof"
MAX_RECEIPT = 1 << 20


@dataclass(frozen=True)
class Receipt:
    entry: bytes
    index: int
    proof: tuple[bytes, ...]
    note: str


@dataclass(frozen=True)
class ReceiptVerdict:
    entry: dict[str, Any]
    index: int
    checkpoint: Checkpoint
    witnesses: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"verified": True, "index": self.index, "action": self.entry.get("action"),
                "data_hash": self.entry.get("data_hash"),
                "checkpoint": {"origin": self.checkpoint.origin, "size": self.checkpoint.size,
                               "root_hash": self.checkpoint.root.hex()},
                "witnesses": sorted(self.witnesses)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def format_receipt(entry: bytes, index: int, proof: Sequence[bytes], note: str) -> str:
    lines = [HEADER, f"extra {_b64(entry)}", f"index {index}", *(_b64(p) for p in proof)]
    return "\n".join(lines) + "\n\n" + note


def _strict_b64(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationFailed(f"receipt: {what} is not base64") from None
    if _b64(data) != text:
        raise VerificationFailed(f"receipt: {what} is not canonical base64")
    return data


def parse_receipt(text: str) -> Receipt:
    """Parse a receipt strictly; raises ``VerificationFailed`` on any deviation."""
    if len(text) > MAX_RECEIPT:
        raise VerificationFailed("receipt is too large")
    head, sep, note = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or len(lines) < 3 or lines[0] != HEADER:
        raise VerificationFailed(f"not a receipt (want a '{HEADER}' proof)")
    if not lines[1].startswith("extra "):
        raise VerificationFailed("receipt: no 'extra' line with the ledger entry")
    entry = _strict_b64(lines[1][len("extra "):], "the entry")
    number = lines[2].removeprefix("index ")
    if (not lines[2].startswith("index ") or not number.isdigit() or not number.isascii()
            or (len(number) > 1 and number[0] == "0")):
        raise VerificationFailed("receipt: malformed index line")
    proof = tuple(_strict_b64(line, "an inclusion proof line") for line in lines[3:])
    receipt = Receipt(entry=entry, index=int(number), proof=proof, note=note)
    _, sig_lines = split_note(note)
    canonical_sigs = "".join(f"\u2014 {name} {_b64(blob)}\n"
                             for name, blob in signature_lines("\n".join(sig_lines)))
    if format_receipt(entry, receipt.index, proof, split_note(note)[0] + "\n"
                      + canonical_sigs) != text:
        raise VerificationFailed("receipt is not in canonical form (bytes were changed)")
    return receipt


def verify_receipt(
    text: str, log_keys: Iterable[str | Verifier], *,
    witness_keys: Sequence[CosignatureVerifier] = (), quorum: int = 0,
    origin: str | None = None,
) -> ReceiptVerdict:
    """Verify a receipt offline: entry in the signed (and cosigned) checkpoint's tree."""
    receipt = parse_receipt(text)
    checkpoint = open_checkpoint(receipt.note, log_keys, origin=origin)
    witnesses = require_quorum(receipt.note, witness_keys, quorum)
    if receipt.index >= checkpoint.size:
        raise VerificationFailed("receipt: entry index is outside the checkpoint's tree")
    merkle.verify_inclusion(receipt.index, checkpoint.size, merkle.leaf_hash(receipt.entry),
                            receipt.proof, checkpoint.root)
    try:
        entry = orjson.loads(receipt.entry)
    except orjson.JSONDecodeError:
        raise VerificationFailed("receipt: the entry is not JSON") from None
    if not isinstance(entry, dict) or entry.get("seq") != receipt.index:
        raise VerificationFailed("receipt: the entry's seq is not the proven index")
    return ReceiptVerdict(entry=entry, index=receipt.index, checkpoint=checkpoint,
                          witnesses=witnesses)


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- what the receipt vouches for ---------------------------------------------------------------

NOT_RELEASED = frozenset({"data_hash", "budget", "ledger_seq", "receipt", "resources"})


def check_file(verdict: ReceiptVerdict, data: bytes, meta: bytes | None = None) -> None:
    """The exact bytes of a result file (and its .meta.json sidecar) match the entry."""
    expected = verdict.entry.get("data_hash")
    if not isinstance(expected, str):
        raise VerificationFailed("receipt: the entry vouches for no file (no data_hash)")
    if file_sha256(data) != expected:
        raise VerificationFailed("the file's bytes differ from what the ledger entry vouches "
                                 "for (data_hash)")
    details = verdict.entry.get("details")
    want_meta = details.get("meta_sha256") if isinstance(details, dict) else None
    if meta is not None and want_meta is not None and file_sha256(meta) != want_meta:
        raise VerificationFailed("the .meta.json sidecar differs from what the ledger entry "
                                 "vouches for")


def check_document(verdict: ReceiptVerdict, doc: dict[str, Any]) -> None:
    """A JSON result with the receipt embedded: its released part hashes to ``data_hash``
    (releases, segments) and its ``ledger_seq``, if any, is the proven entry."""
    from ledger.canonical import canonical_bytes

    if "ledger_seq" in doc and doc["ledger_seq"] != verdict.index:
        raise VerificationFailed("the result's ledger_seq is not the proven entry")
    expected = verdict.entry.get("data_hash")
    if expected is None:
        return
    released = {k: v for k, v in doc.items() if k not in NOT_RELEASED}
    if file_sha256(canonical_bytes(released)) != expected:
        raise VerificationFailed("the released result differs from what the ledger entry "
                                 "vouches for (data_hash)")
