"""Signing keys, C2SP signed notes and checkpoints, checked also with raw ``cryptography``."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.checkpoint import checkpoint_body, open_checkpoint, sign_checkpoint
from ledger.errors import BadInput, VerificationFailed
from ledger.note import sign_note, verify_note
from ledger.signer import Signer, parse_vkey

ORIGIN = "civicvault.example/log"
ROOT = hashlib.sha256(b"root").digest()


def _independent_open(note: str, vkey: str) -> str:
    """Verify a C2SP note from the spec, with cryptography only; return its text."""
    name, hex_id, b64 = vkey.split("+", 2)
    blob = base64.b64decode(b64)
    assert blob[0] == 0x01
    pub = blob[1:]
    assert hashlib.sha256(name.encode() + b"\n\x01" + pub).digest()[:4].hex() == hex_id
    text, _, sigs = note.rpartition("\n\n")
    text += "\n"
    for line in sigs.splitlines():
        dash, sig_name, sig_b64 = line.split(" ")
        sig = base64.b64decode(sig_b64)
        assert dash == "\u2014"
        if sig_name == name and sig[:4].hex() == hex_id:
            Ed25519PublicKey.from_public_bytes(pub).verify(sig[4:], text.encode())
            return text
    raise AssertionError("no signature by the key")


def test_checkpoint_verifies_with_raw_cryptography() -> None:
    signer = Signer.generate(ORIGIN)
    note = sign_checkpoint([signer], ORIGIN, 42, ROOT)
    text = _independent_open(note, signer.vkey())
    assert text == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n"
    assert open_checkpoint(note, [signer.vkey()], origin=ORIGIN).size == 42


def test_vkey_format() -> None:
    signer = Signer.generate(ORIGIN)
    name, hex_id, b64 = signer.vkey().split("+", 2)
    assert name == ORIGIN and len(hex_id) == 8
    assert base64.b64decode(b64) == b"\x01" + signer.public_key
    assert parse_vkey(signer.vkey()).public_key == signer.public_key


def test_key_file_round_trip_mode_0600(tmp_path: Path) -> None:
    signer = Signer.generate(ORIGIN)
    path = tmp_path / "k"
    signer.save(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert Signer.load(path).vkey() == signer.vkey()
    with pytest.raises(BadInput):
        signer.save(path)  # never overwritten


def test_group_readable_key_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    Signer.generate(ORIGIN).save(path)
    os.chmod(path, 0o640)
    with pytest.raises(BadInput, match="chmod 600"):
        Signer.load(path)


def test_several_signatures_and_unknown_ones_ignored() -> None:
    old, new, witness = (Signer.generate(ORIGIN), Signer.generate(ORIGIN),
                         Signer.generate("witness.example"))
    note = sign_note(checkpoint_body(ORIGIN, 3, ROOT), [old, new, witness])
    assert verify_note(note, [new.vkey()]).signed_by == (ORIGIN,)
    assert len(verify_note(note, [old.vkey(), new.vkey()]).signed_by) == 2
    _independent_open(note, witness.vkey())


def test_forged_checkpoint_signature_rejected() -> None:
    signer = Signer.generate(ORIGIN)
    note = sign_checkpoint([signer], ORIGIN, 10, ROOT)
    forged = note.replace("\n10\n", "\n11\n")
    with pytest.raises(VerificationFailed):
        open_checkpoint(forged, [signer.vkey()])
    lines = note.split("\n")
    sig = bytearray(base64.b64decode(lines[-2].split(" ")[2]))
    sig[10] ^= 1
    lines[-2] = f"\u2014 {ORIGIN} {base64.b64encode(bytes(sig)).decode()}"
    with pytest.raises(VerificationFailed):
        open_checkpoint("\n".join(lines), [signer.vkey()])


def test_checkpoint_signed_by_another_key_rejected() -> None:
    mine, theirs = Signer.generate(ORIGIN), Signer.generate(ORIGIN)
    note = sign_checkpoint([theirs], ORIGIN, 10, ROOT)
    with pytest.raises(VerificationFailed, match="no valid signature"):
        open_checkpoint(note, [mine.vkey()])


def test_checkpoint_from_other_origin_rejected() -> None:
    other = Signer.generate("other.example/log")
    note = sign_checkpoint([other], "other.example/log", 10, ROOT)
    with pytest.raises(VerificationFailed, match="origin"):
        open_checkpoint(note, [other.vkey()], origin=ORIGIN)


@pytest.mark.parametrize("mangle", [
    lambda n: n.rstrip("\n"),
    lambda n: n.replace("\n\n", "\n"),
    lambda n: n.replace("\u2014", "-"),
    lambda n: n.replace("\n42\n", "\n042\n"),
])
def test_malformed_notes_rejected(mangle: object) -> None:
    signer = Signer.generate(ORIGIN)
    note = sign_checkpoint([signer], ORIGIN, 42, ROOT)
    with pytest.raises(VerificationFailed):
        open_checkpoint(mangle(note), [signer.vkey()])  # type: ignore[operator]
