"""A C2SP tlog-witness (https://c2sp.org/tlog-witness): the add-checkpoint decision and state.

``Witness.add_checkpoint(body)`` implements the spec's checks in order and answers
``(status, content type, body)``: 400 malformed request or old size above the
checkpoint's, 404 unknown origin, 403 no valid signature by a trusted log key (or
an invalid one), 409 old size differs from the size last cosigned (the body is that
size, ``text/x.tlog.size``), 422 bad consistency proof, a size-0 checkpoint without
the empty root, or the same size with another root. On success the new state is
persisted *before* the cosignature lines are returned, and the check and the write
are one atomic step (a thread lock and an ``flock`` on the state folder), so two
racing requests can never roll the witness back.

``WitnessState`` is the one loader and writer of the witness's trusted state: one
JSON file per log origin, named by the SHA-256 of the origin, written atomically
(temporary file, fsync, rename), and it refuses to move backwards.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from ledger import merkle
from ledger.checkpoint import Checkpoint, parse_body
from ledger.cosignature import Cosigner
from ledger.errors import BadInput, LedgerTampered, VerificationFailed
from ledger.filelock import folder_lock
from ledger.note import verify_note
from ledger.signer import Verifier

__all__ = ["MAX_BODY", "MAX_PROOF_LINES", "Answer", "Recorded", "Witness", "WitnessState",
           "origin_hash"]

MAX_PROOF_LINES = 63
MAX_BODY = 64 * 1024
SIZE_TYPE = "text/x.tlog.size"
TEXT_TYPE = "text/plain; charset=utf-8"


def origin_hash(origin: str) -> str:
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


def _fail(status: int, message: str) -> Answer:
    return Answer(status, TEXT_TYPE, (message + "\n").encode("utf-8"))


@dataclass(frozen=True)
class Recorded:
    """The latest checkpoint a witness cosigned for one log."""

    origin: str
    size: int
    root: bytes
    note: str  # the checkpoint with the log's signatures and this witness's cosignatures


class WitnessState:
    """One loader and one writer for the witness's per-log state; never moves backwards."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, origin: str) -> Path:
        return self.folder / f"{origin_hash(origin)}.json"

    def load(self, origin: str) -> Recorded | None:
        return self.load_hashed(origin_hash(origin))

    def load_hashed(self, digest: str) -> Recorded | None:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            return None
        path = self.folder / f"{digest}.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return Recorded(origin=doc["origin"], size=int(doc["size"]),
                            root=base64.b64decode(doc["root"], validate=True), note=doc["note"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            raise BadInput(f"witness state file {path.name} in the witness home's state/ "
                           "folder is unreadable") from None

    def locked(self) -> AbstractContextManager[None]:
        """Exclusive across processes sharing the folder (the check-then-write step)."""
        return folder_lock(self.folder)

    def save(self, new: Recorded) -> None:
        """Persist ``new`` (call under ``locked``); refuses a smaller size or a changed root."""
        old = self.load(new.origin)
        if old is not None and (new.size < old.size
                                or (new.size == old.size and new.root != old.root)):
            raise LedgerTampered(f"witness state for the log would move back from size "
                                 f"{old.size} to {new.size}")
        path = self._path(new.origin)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        doc = {"origin": new.origin, "size": new.size,
               "root": base64.b64encode(new.root).decode("ascii"), "note": new.note}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(doc, sort_keys=True).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@dataclass(frozen=True)
class _Request:
    old: int
    proof: list[bytes]
    note: str


def _parse_request(body: bytes) -> _Request | Answer:
    if len(body) > MAX_BODY:
        return _fail(413, "request body too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _fail(400, "request body is not UTF-8")
    head, sep, note = text.partition("\n\n")
    if not sep:
        return _fail(400, "request body has no empty line before the checkpoint")
    lines = head.split("\n")
    first = lines[0]
    number = first.removeprefix("old ")
    if (not first.startswith("old ") or not number.isdigit() or not number.isascii()
            or (len(number) > 1 and number[0] == "0") or len(number) > 20):
        return _fail(400, "malformed old size line")
    proof_lines = lines[1:]
    if len(proof_lines) > MAX_PROOF_LINES:
        return _fail(400, "too many consistency proof lines")
    proof: list[bytes] = []
    for line in proof_lines:
        try:
            digest = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            return _fail(400, "consistency proof line is not base64")
        if len(digest) != 32:
            return _fail(400, "consistency proof line is not a SHA-256 hash")
        proof.append(digest)
    return _Request(old=int(number), proof=proof, note=note)


class Witness:
    """A witness for the logs in ``logs`` (origin -> trusted log keys), cosigning with
    every key in ``cosigners`` (several during a key rotation)."""

    def __init__(self, cosigners: Sequence[Cosigner], logs: Mapping[str, Sequence[Verifier]],
                 state: WitnessState) -> None:
        if not cosigners:
            raise BadInput("a witness needs at least one cosigning key")
        self.cosigners = list(cosigners)
        self.logs = {origin: list(keys) for origin, keys in logs.items()}
        self.state = state
        self._lock = threading.Lock()

    def add_checkpoint(self, body: bytes, *, now: int | None = None) -> Answer:
        """The add-checkpoint endpoint: check, persist, cosign (or the spec's error status)."""
        request = _parse_request(body)
        if isinstance(request, Answer):
            return request
        note = request.note
        origin = note.split("\n", 1)[0]
        keys = self.logs.get(origin)
        if keys is None:
            return _fail(404, "unknown log origin")
        try:
            signed = verify_note(note, keys)
        except VerificationFailed:
            return _fail(403, "no valid signature by a trusted key of this log")
        try:
            checkpoint = parse_body(signed.text)
        except VerificationFailed:
            return _fail(400, "malformed checkpoint")
        if request.old > checkpoint.size:
            return _fail(400, "old size is above the checkpoint size")
        if checkpoint.size == 0 and checkpoint.root != merkle.EMPTY_ROOT:
            return _fail(422, "a size-0 checkpoint must have the empty tree's root")
        with self._lock, self.state.locked():
            recorded = self.state.load(origin)
            current = recorded.size if recorded is not None else 0
            if request.old != current:
                return Answer(409, SIZE_TYPE, f"{current}\n".encode("ascii"))
            problem = _inconsistent(recorded, request, checkpoint)
            if problem is not None:
                return _fail(422, problem)
            lines = "".join(c.cosign(signed.text, now) for c in self.cosigners)
            self.state.save(Recorded(origin=origin, size=checkpoint.size,
                                     root=checkpoint.root, note=_own_view(note, lines)))
        return Answer(200, TEXT_TYPE, lines.encode("utf-8"))

    def latest(self, digest: str) -> Answer:
        """GET <origin hash>/checkpoint: the latest cosigned checkpoint of that log."""
        recorded = self.state.load_hashed(digest)
        if recorded is None:
            return _fail(404, "no checkpoint cosigned for that log")
        return Answer(200, TEXT_TYPE, recorded.note.encode("utf-8"))


def _inconsistent(recorded: Recorded | None, request: _Request,
                  checkpoint: Checkpoint) -> str | None:
    if request.old == 0:
        return "a proof from size 0 must be empty" if request.proof else None
    assert recorded is not None  # old == recorded size > 0
    if request.old == checkpoint.size:
        if request.proof or recorded.root != checkpoint.root:
            return "same size as the last cosigned checkpoint but another root"
        return None
    try:
        merkle.verify_consistency(request.old, checkpoint.size, recorded.root, checkpoint.root,
                                  request.proof)
    except (VerificationFailed, BadInput):
        return "consistency proof does not verify"
    return None


def _own_view(note: str, cosignatures: str) -> str:
    """The submitted checkpoint plus our cosignature lines (what the monitoring GET serves)."""
    return note + cosignatures


# -- a witness's home folder: keys/, logs.json, state/ ------------------------------------------


def _keys_dir(folder: Path) -> Path:
    return folder / "keys"


def _logs_path(folder: Path) -> Path:
    return folder / "logs.json"


def init_witness_home(folder: Path, name: str) -> Cosigner:
    """Create a witness home with one cosigning key named ``name``."""
    if _keys_dir(folder).exists() and any(_keys_dir(folder).glob("*.key")):
        raise BadInput("the witness home (--home) already holds a witness")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    cosigner = Cosigner.generate(name)
    cosigner.save(_keys_dir(folder) / f"{cosigner.key_id.hex()}.key")
    if not _logs_path(folder).exists():
        _logs_path(folder).write_text("{}\n", encoding="utf-8")
    return cosigner


def witness_cosigners(folder: Path) -> list[Cosigner]:
    keys = sorted(_keys_dir(folder).glob("*.key")) if _keys_dir(folder).is_dir() else []
    if not keys:
        raise BadInput("no witness key in the witness home (--home): run "
                       "'civicvault witness init'")
    return [Cosigner.load(p) for p in keys]


def trusted_logs(folder: Path) -> dict[str, list[Verifier]]:
    from ledger.signer import parse_vkey

    try:
        doc = json.loads(_logs_path(folder).read_text(encoding="utf-8"))
        return {str(origin): [parse_vkey(v) for v in vkeys] for origin, vkeys in doc.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError, TypeError):
        raise BadInput("the witness log list (logs.json in the witness home) is malformed") \
            from None


def trust_log(folder: Path, vkeys: Sequence[str], origin: str | None = None) -> dict[str, int]:
    """Trust log key(s) for ``origin`` (default: the keys' name); returns origin -> key count."""
    from ledger.signer import parse_vkey

    parsed = [parse_vkey(v) for v in vkeys]
    if not parsed:
        raise BadInput("no log verifier key given")
    where = origin or parsed[0].name
    if "\n" in where or not where:
        raise BadInput("a log origin is one non-empty line")
    doc: dict[str, list[str]] = {o: [_vkey_of(k) for k in ks]
                                 for o, ks in trusted_logs(folder).items()}
    known = doc.setdefault(where, [])
    for key in parsed:
        text = _vkey_of(key)
        if text not in known:
            known.append(text)
    tmp = _logs_path(folder).with_name(f".logs.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(_logs_path(folder))
    return {o: len(ks) for o, ks in doc.items()}


def _vkey_of(key: Verifier) -> str:
    blob = base64.b64encode(bytes([0x01]) + key.public_key).decode("ascii")
    return f"{key.name}+{key.key_id.hex()}+{blob}"


def rotate_witness_key(folder: Path) -> Cosigner:
    """Add a new cosigning key under the same name; every active key cosigns until retired."""
    name = witness_cosigners(folder)[0].name
    cosigner = Cosigner.generate(name)
    cosigner.save(_keys_dir(folder) / f"{cosigner.key_id.hex()}.key")
    return cosigner


def retire_witness_key(folder: Path, key_id: str) -> str:
    """Stop cosigning with one key (its verifier key keeps verifying old cosignatures).
    Returns the key ID as retired (lower-case hex).

    ``key_id`` must be a key ID (8 hex digits): it names a file under the keys folder, so
    anything else (``../x``) would reach outside it."""
    if len(key_id) != 8 or any(c not in "0123456789abcdefABCDEF" for c in key_id):
        raise BadInput("KEY_ID must be a witness key ID: 8 hex digits (the vkey's middle part)")
    key_id = key_id.lower()
    path = _keys_dir(folder) / f"{key_id}.key"
    if not path.exists() or len(witness_cosigners(folder)) < 2:
        raise BadInput("no such active key, or it is the witness's last one")
    retired = folder / "retired"
    retired.mkdir(mode=0o700, exist_ok=True)
    os.replace(path, retired / path.name)
    return key_id


def load_witness(folder: Path) -> Witness:
    return Witness(witness_cosigners(folder), trusted_logs(folder), WitnessState(folder / "state"))
