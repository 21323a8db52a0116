"""C2SP tlog checkpoints (https://c2sp.org/tlog-checkpoint) as signed notes.

Body: ``<origin>\\n<tree size>\\n<base64 root hash>\\n`` (extension lines, if any,
follow and are kept but not interpreted).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ledger.errors import BadInput, MalformedNote, VerificationFailed
from ledger.note import sign_note, verify_note
from ledger.signer import Signer, Verifier

__all__ = ["Checkpoint", "checkpoint_body", "open_checkpoint", "parse_body", "sign_checkpoint"]

_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    if not origin or "\n" in origin or size < 0 or len(root) != 32:
        raise BadInput("a checkpoint needs an origin line, a size >= 0 and a 32-byte root")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode('ascii')}\n"


def sign_checkpoint(signers: Sequence[Signer], origin: str, size: int, root: bytes) -> str:
    """The signed note text of the checkpoint (origin, size, root)."""
    return sign_note(checkpoint_body(origin, size, root), signers)


def parse_body(text: str) -> Checkpoint:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "" or not lines[0]:
        raise MalformedNote("malformed checkpoint body")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not _SIZE.fullmatch(size_text):
        raise MalformedNote("malformed checkpoint: bad tree size")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedNote("malformed checkpoint: root is not base64") from None
    if len(root) != 32:
        raise MalformedNote("malformed checkpoint: root is not a SHA-256 hash")
    return Checkpoint(origin=origin, size=int(size_text), root=root,
                      extensions=tuple(lines[3:-1]))


def open_checkpoint(
    note: str, keys: Iterable[str | Verifier], *, origin: str | None = None
) -> Checkpoint:
    """Verify the note's signature with ``keys`` and parse it; check ``origin`` if given."""
    checkpoint = parse_body(verify_note(note, keys).text)
    if origin is not None and checkpoint.origin != origin:
        raise VerificationFailed("checkpoint is for another log (origin differs)")
    return checkpoint
