"""C2SP signed notes (https://c2sp.org/signed-note): sign with several keys, verify with some.

A note is its text (UTF-8, ending in a newline), a blank line, then one line per
signature: ``— <key name> <base64(4-byte key ID || Ed25519 signature)>``. The
signature covers the text including its final newline. Verification ignores
signatures by unknown keys (key rotation, witnesses) but needs at least one
valid signature by a known key, and rejects an invalid one by a known key.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ledger.errors import BadInput, MalformedNote, VerificationFailed
from ledger.signer import Signer, Verifier, parse_vkey

__all__ = ["SignedNote", "sign_note", "verify_note"]

_DASH = "\u2014 "
_MAX_SIGNATURES = 100


@dataclass(frozen=True)
class SignedNote:
    """A verified note: its text and the names of the known keys that signed it."""

    text: str
    signed_by: tuple[str, ...]


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """The signed note for ``text`` (which must end in a newline) by every one of ``signers``."""
    if not text.endswith("\n") or "\n\n" in text or not signers:
        raise BadInput("note text must be non-empty lines ending in a newline, with a signer")
    message = text.encode("utf-8")
    lines = []
    for signer in signers:
        blob = base64.b64encode(signer.key_id + signer.sign(message)).decode("ascii")
        lines.append(f"{_DASH}{signer.name} {blob}\n")
    return text + "\n" + "".join(lines)


def _verifiers(keys: Iterable[str | Verifier]) -> dict[tuple[str, bytes], Verifier]:
    out: dict[tuple[str, bytes], Verifier] = {}
    for key in keys:
        v = parse_vkey(key) if isinstance(key, str) else key
        out[(v.name, v.key_id)] = v
    return out


def verify_note(note: str, keys: Iterable[str | Verifier]) -> SignedNote:
    """Open a signed note with the verifier keys ``keys``; raise unless a known key signed it."""
    known = _verifiers(keys)
    if not note.endswith("\n"):
        raise MalformedNote("malformed signed note: no final newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNote("malformed signed note: no signature block")
    text, block = note[: split + 1], note[split + 2 :]
    sig_lines = block[:-1].split("\n")
    if len(sig_lines) > _MAX_SIGNATURES:
        raise MalformedNote("signed note has too many signatures")
    signed_by: list[str] = []
    message = text.encode("utf-8")
    for line in sig_lines:
        if not line.startswith(_DASH):
            raise MalformedNote("malformed signed note: bad signature line")
        name, _, b64 = line[len(_DASH):].partition(" ")
        try:
            blob = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedNote("malformed signed note: signature is not base64") from None
        if not name or len(blob) < 5:
            raise MalformedNote("malformed signed note: bad signature line")
        verifier = known.get((name, blob[:4]))
        if verifier is None:
            continue  # an unknown key: ignored, as the spec says
        if not verifier.verify(message, blob[4:]):
            raise VerificationFailed(f"invalid signature by key '{name}'")
        signed_by.append(name)
    if not signed_by:
        raise VerificationFailed("no valid signature by a known key")
    return SignedNote(text=text, signed_by=tuple(signed_by))
