"""Ed25519 signing keys for checkpoints, in the C2SP signed-note key formats.

A key has a *name* (the vault identity, which is also the checkpoint origin)
and a key ID: the first 4 bytes of ``SHA-256(name || 0x0A || 0x01 || pubkey)``.
The verifier key ("vkey") is ``<name>+<hex key id>+<base64(0x01 || pubkey)>``.
The private key file uses the matching Go ``golang.org/x/mod/sumdb/note`` form,
``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>``, written with mode
0600; loading refuses a file that group or others can read.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.errors import BadInput

__all__ = ["ALG_ED25519", "Signer", "Verifier", "key_id", "parse_vkey"]

ALG_ED25519 = 0x01
_SKEY_PREFIX = "PRIVATE+KEY+"


def _check_name(name: str) -> None:
    if not name or not name.isprintable() or any(c.isspace() or c == "+" for c in name):
        raise BadInput("a key name must be non-empty, printable, without spaces or '+'")


def key_id(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note key ID for an Ed25519 key: 4 bytes."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    """A named Ed25519 public key, as parsed from a vkey."""

    name: str
    key_id: bytes
    public_key: bytes

    def verify(self, message: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def parse_vkey(vkey: str) -> Verifier:
    """Parse ``<name>+<hex key id>+<base64(0x01 || pubkey)>``; checks the key ID."""
    parts = vkey.strip().split("+", 2)  # base64 key data may itself hold "+"
    if len(parts) != 3:
        raise BadInput("malformed verifier key (want name+keyid+key)")
    name, hex_id, b64 = parts
    _check_name(name)
    try:
        kid = bytes.fromhex(hex_id)
        blob = base64.b64decode(b64, validate=True)
    except ValueError:
        raise BadInput("malformed verifier key (bad hex or base64)") from None
    if len(kid) != 4 or len(blob) != 33 or blob[0] != ALG_ED25519:
        raise BadInput("verifier key is not an Ed25519 C2SP vkey")
    if key_id(name, blob[1:]) != kid:
        raise BadInput("verifier key ID does not match its name and key")
    return Verifier(name=name, key_id=kid, public_key=blob[1:])


class Signer:
    """A named Ed25519 private key that signs notes."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(name, self.public_key)

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key_id={self.key_id.hex()})"

    @classmethod
    def generate(cls, name: str) -> Signer:
        return cls(name, Ed25519PrivateKey.generate())

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def vkey(self) -> str:
        blob = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    def verifier(self) -> Verifier:
        return Verifier(name=self.name, key_id=self.key_id, public_key=self.public_key)

    def _skey(self) -> str:
        seed = self._key.private_bytes_raw()
        blob = base64.b64encode(bytes([ALG_ED25519]) + seed).decode("ascii")
        return f"{_SKEY_PREFIX}{self.name}+{self.key_id.hex()}+{blob}"

    def save(self, path: Path | str) -> None:
        """Write the key to a new file with mode 0600 (never overwrites)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise BadInput(f"refusing to overwrite the signing key at {path}") from None
        try:
            os.write(fd, (self._skey() + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)

    @classmethod
    def load(cls, path: Path | str) -> Signer:
        """Read a key file; refuses one readable by group or others."""
        path = Path(path)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise BadInput(f"no signing key at {path} (run 'civicvault init')") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise BadInput(f"signing key {path} is accessible to group or others "
                           f"(mode {oct(mode & 0o777)}); chmod 600 it")
        text = path.read_text(encoding="ascii").strip()
        parts = text.removeprefix(_SKEY_PREFIX).split("+", 2)
        if not text.startswith(_SKEY_PREFIX) or len(parts) != 3:
            raise BadInput(f"signing key file {path} is malformed")
        name, hex_id, b64 = parts
        try:
            blob = base64.b64decode(b64, validate=True)
        except ValueError:
            raise BadInput(f"signing key file {path} is malformed") from None
        if len(blob) != 33 or blob[0] != ALG_ED25519:
            raise BadInput(f"signing key file {path} is not an Ed25519 key")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(blob[1:]))
        if signer.key_id.hex() != hex_id:
            raise BadInput(f"signing key file {path} has a wrong key ID")
        return signer
