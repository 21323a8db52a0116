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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.errors import BadInput

__all__ = ["ALG_ED25519", "PrivateKey", "Signer", "Verifier", "key_id", "parse_key_parts",
           "parse_vkey"]

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


def parse_key_parts(vkey: str, alg: int, kid_of: Callable[[str, bytes], bytes],
                    what: str) -> tuple[str, bytes, bytes]:
    """``(name, key ID, public key)`` of a C2SP vkey of type ``alg``; checks the key ID."""
    parts = vkey.strip().split("+", 2)  # base64 key data may itself hold "+"
    if len(parts) != 3:
        raise BadInput(f"malformed {what} (want name+keyid+key)")
    name, hex_id, b64 = parts
    _check_name(name)
    try:
        kid = bytes.fromhex(hex_id)
        blob = base64.b64decode(b64, validate=True)
    except ValueError:
        raise BadInput(f"malformed {what} (bad hex or base64)") from None
    if len(kid) != 4 or len(blob) != 33 or blob[0] != alg:
        raise BadInput(f"{what} is not an Ed25519 key of type 0x{alg:02x}")
    if kid_of(name, blob[1:]) != kid:
        raise BadInput(f"{what} ID does not match its name and key")
    return name, kid, blob[1:]


def parse_vkey(vkey: str) -> Verifier:
    """Parse ``<name>+<hex key id>+<base64(0x01 || pubkey)>``; checks the key ID."""
    return Verifier(*parse_key_parts(vkey, ALG_ED25519, key_id, "verifier key"))


class PrivateKey:
    """A named Ed25519 private key in the note private-key file form (base of the log's
    :class:`Signer` and a witness's ``ledger.cosignature.Cosigner``, which differ only in
    the key type byte, so in their key IDs, and in what they sign)."""

    ALG: ClassVar[int] = ALG_ED25519
    WHAT: ClassVar[str] = "signing key"
    INIT_HINT: ClassVar[str] = "civicvault init"
    #: Where the key files live, for messages: they name a key file by this and its own
    #: base name (which the code chose), never by a full path (a home may name a person).
    WHERE: ClassVar[str] = "the vault home (CIVICVAULT_HOME)"

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = self.key_id_of(name, self.public_key)

    @classmethod
    def key_id_of(cls, name: str, public_key: bytes) -> bytes:
        return hashlib.sha256(name.encode() + b"\n" + bytes([cls.ALG]) + public_key).digest()[:4]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, key_id={self.key_id.hex()})"

    @classmethod
    def generate(cls, name: str) -> Self:
        return cls(name, Ed25519PrivateKey.generate())

    def _skey(self) -> str:
        seed = self._key.private_bytes_raw()
        blob = base64.b64encode(bytes([self.ALG]) + seed).decode("ascii")
        return f"{_SKEY_PREFIX}{self.name}+{self.key_id.hex()}+{blob}"

    def save(self, path: Path | str) -> None:
        """Write the key to a new file with mode 0600 (never overwrites)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise BadInput(f"refusing to overwrite the {self.WHAT} file {path.name} in "
                           f"{self.WHERE}") from None
        try:
            os.write(fd, (self._skey() + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)

    @classmethod
    def load(cls, path: Path | str) -> Self:
        """Read a key file; refuses one readable by group or others."""
        path = Path(path)
        where = f"{cls.WHAT} file {path.name} in {cls.WHERE}"
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise BadInput(f"no {where}: run '{cls.INIT_HINT}'") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise BadInput(f"{where} is accessible to group or others "
                           f"(mode {oct(mode & 0o777)}); chmod 600 it")
        text = path.read_text(encoding="ascii").strip()
        parts = text.removeprefix(_SKEY_PREFIX).split("+", 2)
        if not text.startswith(_SKEY_PREFIX) or len(parts) != 3:
            raise BadInput(f"{where} is malformed")
        name, hex_id, b64 = parts
        try:
            blob = base64.b64decode(b64, validate=True)
        except ValueError:
            raise BadInput(f"{where} is malformed") from None
        if len(blob) != 33 or blob[0] != cls.ALG:
            raise BadInput(f"{where} is not an Ed25519 key of type 0x{cls.ALG:02x}")
        key = cls(name, Ed25519PrivateKey.from_private_bytes(blob[1:]))
        if key.key_id.hex() != hex_id:
            raise BadInput(f"{where} has a wrong key ID")
        return key


class Signer(PrivateKey):
    """The log's named Ed25519 private key that signs checkpoint notes."""

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def vkey(self) -> str:
        blob = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    def verifier(self) -> Verifier:
        return Verifier(name=self.name, key_id=self.key_id, public_key=self.public_key)
