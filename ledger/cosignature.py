"""C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature), the Ed25519 type 0x04.

A cosignature is a signed-note signature line on a checkpoint, by a *witness*:

    — <witness name> base64(key ID || u64 big-endian timestamp || Ed25519 signature)

with key ID ``SHA-256(name || 0x0A || 0x04 || pubkey)[:4]``. The signed message is
``cosignature/v1\\ntime <timestamp>\\n`` followed by the whole checkpoint note text
(with its final newline, without any signature line). Witness verifier keys are
C2SP vkeys of type 0x04: ``<name>+<hex key id>+base64(0x04 || pubkey)``.

``CosignatureVerifier`` has the same ``name``/``key_id``/``verify(text, signature)``
shape as ``ledger.signer.Verifier``, so ``ledger.note.verify_note`` accepts either.
``witnesses_of`` counts the distinct witnesses that validly cosigned a note, for a
quorum (several keys of one witness, as during its key rotation, count once).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PublicKey,
)

from ledger.errors import BadInput, VerificationFailed
from ledger.signer import ALG_ED25519, PrivateKey, Verifier, parse_key_parts, parse_vkey

__all__ = [
    "ALG_COSIGNATURE_V1",
    "CosignatureVerifier",
    "Cosigner",
    "cosigned_message",
    "parse_any_vkey",
    "parse_cosigner_vkey",
    "signature_lines",
    "split_note",
    "witnesses_of",
]

ALG_COSIGNATURE_V1 = 0x04
_HEADER = b"cosignature/v1\n"
_DASH = "\u2014 "
MAX_TIMESTAMP = (1 << 63) - 1


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_COSIGNATURE_V1])
                          + public_key).digest()[:4]


def cosigned_message(text: bytes, timestamp: int) -> bytes:
    """What a v1 cosignature signs: header, time line, then the checkpoint note text."""
    return _HEADER + b"time %d\n" % timestamp + text


@dataclass(frozen=True)
class CosignatureVerifier:
    """A witness's Ed25519 cosigning public key (vkey type 0x04)."""

    name: str
    key_id: bytes
    public_key: bytes

    def verify(self, message: bytes, signature: bytes) -> bool:
        """``message`` is the note text; ``signature`` the blob after the key ID."""
        return self.timestamp(message, signature) is not None

    def timestamp(self, message: bytes, signature: bytes) -> int | None:
        """The cosignature's timestamp if it verifies, else None (a zero time never does)."""
        if len(signature) != 8 + 64:
            return None
        ts = int.from_bytes(signature[:8], "big")
        if not 0 < ts <= MAX_TIMESTAMP:
            return None
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                signature[8:], cosigned_message(message, ts))
        except InvalidSignature:
            return None
        return ts

    def vkey(self) -> str:
        blob = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{blob}"


def parse_cosigner_vkey(vkey: str) -> CosignatureVerifier:
    """Parse a type-0x04 vkey; checks the key ID."""
    return CosignatureVerifier(*parse_key_parts(vkey, ALG_COSIGNATURE_V1, cosigner_key_id,
                                                "witness key"))


def parse_any_vkey(vkey: str) -> Verifier | CosignatureVerifier:
    """A log key (type 0x01) or a witness key (type 0x04), by its type byte."""
    b64 = vkey.strip().split("+", 2)[-1]
    try:
        kind = base64.b64decode(b64, validate=True)[:1]
    except ValueError:
        raise BadInput("malformed verifier key (bad base64)") from None
    if kind == bytes([ALG_COSIGNATURE_V1]):
        return parse_cosigner_vkey(vkey)
    if kind == bytes([ALG_ED25519]):
        return parse_vkey(vkey)
    raise BadInput("verifier key type is neither Ed25519 (0x01) nor a cosignature (0x04)")


class Cosigner(PrivateKey):
    """A witness's named Ed25519 private key that makes v1 cosignatures."""

    ALG = ALG_COSIGNATURE_V1
    WHAT = "witness key"
    INIT_HINT = "civicvault witness init"
    WHERE = "the witness home's keys/ folder (--home)"

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.name, self.key_id, self.public_key)

    def vkey(self) -> str:
        return self.verifier().vkey()

    def cosign(self, text: str, timestamp: int | None = None) -> str:
        """The signature line (with its newline) cosigning the checkpoint note ``text``."""
        ts = int(time.time()) if timestamp is None else timestamp
        if not 0 < ts <= MAX_TIMESTAMP:
            raise BadInput("a cosignature needs a timestamp > 0")
        sig = self._key.sign(cosigned_message(text.encode("utf-8"), ts))
        blob = base64.b64encode(self.key_id + ts.to_bytes(8, "big") + sig).decode("ascii")
        return f"{_DASH}{self.name} {blob}\n"


# -- reading notes ------------------------------------------------------------------------


def split_note(note: str) -> tuple[str, list[str]]:
    """(text with its final newline, signature lines without their newlines)."""
    if not note.endswith("\n"):
        raise VerificationFailed("malformed signed note: no final newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise VerificationFailed("malformed signed note: no signature block")
    lines = note[split + 2:-1].split("\n")
    if any(not line.startswith(_DASH) for line in lines):
        raise VerificationFailed("malformed signed note: bad signature line")
    return note[:split + 1], lines


def signature_lines(block: str) -> list[tuple[str, bytes]]:
    """Parse signature lines (as a witness returns them) into (name, blob)."""
    out: list[tuple[str, bytes]] = []
    for line in block.split("\n"):
        if not line:
            continue
        if not line.startswith(_DASH):
            raise VerificationFailed("malformed signature line")
        name, _, b64 = line[len(_DASH):].partition(" ")
        try:
            blob = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise VerificationFailed("malformed signature line: not base64") from None
        if not name or len(blob) < 5:
            raise VerificationFailed("malformed signature line")
        out.append((name, blob))
    return out


def witnesses_of(note: str, keys: Iterable[CosignatureVerifier]) -> dict[str, int]:
    """The witnesses (by name) whose cosignature on ``note`` verifies, with its timestamp.

    Signatures by unknown keys are ignored (C2SP); a signature by a known key that
    does not verify makes the whole note invalid (``VerificationFailed``).
    """
    known = {(k.name, k.key_id): k for k in keys}
    text, lines = split_note(note)
    message = text.encode("utf-8")
    seen: dict[str, int] = {}
    for name, blob in signature_lines("\n".join(lines)):
        key = known.get((name, blob[:4]))
        if key is None:
            continue
        ts = key.timestamp(message, blob[4:])
        if ts is None:
            raise VerificationFailed(f"invalid cosignature by witness key '{name}'")
        seen[name] = max(ts, seen.get(name, 0))
    return seen


def require_quorum(note: str, keys: Sequence[CosignatureVerifier], quorum: int) -> dict[str, int]:
    """``witnesses_of``, raising unless at least ``quorum`` distinct witnesses cosigned."""
    seen = witnesses_of(note, keys) if keys else {}
    if len(seen) < quorum:
        raise VerificationFailed(f"checkpoint cosigned by {len(seen)} of the required {quorum} "
                                 "witnesses")
    return seen
