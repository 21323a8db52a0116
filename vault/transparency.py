"""The vault's public transparency material: checkpoints, witnesses, receipts, log keys.

- ``checkpoint_store(home)``: the one store of saved checkpoints (``ledger.checkpoint_store``)
  with the log's current and retired verifier keys;
- ``publish_checkpoint``: sign the current tree (only if it extends the newest saved
  checkpoint), collect witness cosignatures (``<home>/witnesses.json``), save it;
  a tree already checkpointed with its quorum is not signed again;
- ``receipt_for``: a C2SP tlog-proof of one entry against a published checkpoint;
- ``record_export``: the ledger entry that binds an exported file's exact bytes;
- ``rotate_log_key``: a new log key; the transition checkpoint is signed by both keys
  and the old verifier key stays known, so older checkpoints keep verifying.

Reading public material (checkpoint, verifier keys) is not an access: no principal,
no ledger entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from ledger import store as ledger_store
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.checkpoint_store import CheckpointStore, SavedCheckpoint
from ledger.cosignature import CosignatureVerifier, parse_cosigner_vkey, witnesses_of
from ledger.entry import EntryDraft
from ledger.errors import BadInput, VerificationFailed
from ledger.receipt import format_receipt
from ledger.signer import Signer, Verifier, parse_vkey
from ledger.witness_http import WitnessEndpoint, collect_cosignatures
from vault import vocab
from vault.home import HOME_ENV, VaultHome

__all__ = ["EXPORT_ACTION", "KEY_ROTATED_ACTION", "Published", "WitnessPolicy",
           "add_witness", "checkpoint_store", "log_vkeys", "publish_checkpoint",
           "receipt_for", "receipts_for", "record_export", "rotate_log_key", "save_witness_policy",
           "witness_policy"]

EXPORT_ACTION = vocab.RELEASE_EXPORT  # kept names: the vocabulary is vault.vocab
KEY_ROTATED_ACTION = vocab.LEDGER_KEY_ROTATED
WITNESSES_FILE = "witnesses.json"
RETIRED_KEYS_FILE = "ledger-retired.vkeys"


# -- log keys ----------------------------------------------------------------------------


def _retired_path(home: VaultHome) -> Path:
    return home.root / RETIRED_KEYS_FILE


def log_vkeys(home: VaultHome, *, include_retired: bool = True) -> list[str]:
    """The current log verifier key first, then retired ones (oldest first)."""
    keys = [Signer.load(home.signing_key_path).vkey()]
    path = _retired_path(home)
    if include_retired and path.exists():
        keys += [line.strip() for line in path.read_text("ascii").splitlines() if line.strip()]
    return keys


def log_verifiers(home: VaultHome) -> list[Verifier]:
    return [parse_vkey(v) for v in log_vkeys(home)]


def checkpoint_store(home: VaultHome) -> CheckpointStore:
    return CheckpointStore(home.checkpoints_dir, home.identity(), log_verifiers(home))


# -- witnesses ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WitnessPolicy:
    witnesses: tuple[WitnessEndpoint, ...] = ()
    quorum: int = 0

    def keys(self) -> list[CosignatureVerifier]:
        return [k for w in self.witnesses for k in w.keys]

    def to_json(self) -> dict[str, Any]:
        return {"quorum": self.quorum,
                "witnesses": [{"name": w.name, "url": w.url, "vkeys": [k.vkey() for k in w.keys]}
                              for w in self.witnesses]}


def witness_policy(home: VaultHome) -> WitnessPolicy:
    """``<home>/witnesses.json`` (no file: no witnesses, quorum 0)."""
    path = home.root / WITNESSES_FILE
    if not path.exists():
        return WitnessPolicy()
    try:
        doc = json.loads(path.read_text("utf-8"))
        witnesses = tuple(
            WitnessEndpoint(name=str(w["name"]), url=str(w["url"]),
                            keys=tuple(parse_cosigner_vkey(v) for v in w["vkeys"]))
            for w in doc["witnesses"])
        quorum = int(doc["quorum"])
    except (OSError, ValueError, KeyError, TypeError):
        raise BadInput(f"the witness configuration ({HOME_ENV}/{WITNESSES_FILE}) is "
                       "malformed") from None
    return WitnessPolicy(witnesses, quorum)


def save_witness_policy(home: VaultHome, policy: WitnessPolicy) -> None:
    if not 0 <= policy.quorum <= len(policy.witnesses):
        raise BadInput(f"quorum must be between 0 and the {len(policy.witnesses)} witnesses")
    path = home.root / WITNESSES_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(policy.to_json(), indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def add_witness(home: VaultHome, url: str, vkeys: list[str]) -> WitnessPolicy:
    """Add a witness (or more keys of one, during its key rotation) by URL and vkeys."""
    keys = tuple(parse_cosigner_vkey(v) for v in vkeys)
    names = {k.name for k in keys}
    if len(names) != 1:
        raise BadInput("give the vkeys of one witness (one name)")
    name = names.pop()
    policy = witness_policy(home)
    others = [w for w in policy.witnesses if w.name != name]
    mine = [w for w in policy.witnesses if w.name == name]
    known = {k.key_id: k for w in mine for k in w.keys}
    known.update({k.key_id: k for k in keys})
    updated = WitnessPolicy((*others, WitnessEndpoint(name, url, tuple(known.values()))),
                            policy.quorum)
    save_witness_policy(home, updated)
    return updated


# -- publishing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    saved: SavedCheckpoint
    quorum: int
    witnesses: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def note(self) -> str:
        return self.saved.note

    @property
    def quorum_met(self) -> bool:
        return len(self.witnesses) >= self.quorum

    def require_quorum(self) -> None:
        if not self.quorum_met:
            why = "; ".join(f"{n}: {f}" for n, f in sorted(self.failures.items()))
            raise VerificationFailed(f"checkpoint of size {self.saved.size} cosigned by "
                                     f"{len(self.witnesses)} of the required {self.quorum} "
                                     f"witnesses" + (f" ({why})" if why else ""))

    def to_json(self) -> dict[str, Any]:
        cp = self.saved.checkpoint
        return {"origin": cp.origin, "size": cp.size, "root_hash": cp.root.hex(),
                "file": self.saved.path.name, "witnesses": sorted(self.witnesses),
                "quorum": self.quorum, "quorum_met": self.quorum_met,
                "witness_failures": dict(sorted(self.failures.items()))}


def publish_checkpoint(engine: Engine, home: VaultHome, *,
                       extra_signers: tuple[Signer, ...] = ()) -> Published:
    """The newest checkpoint of the current tree, signed, cosigned and saved (see module doc)."""
    store = checkpoint_store(home)
    policy = witness_policy(home)
    signers = [Signer.load(home.signing_key_path), *extra_signers]
    origin = home.identity()
    with store.locked():
        latest = store.latest()
        with engine.connect().execution_options(readonly=True) as conn, conn.begin():
            size = ledger_store.size(conn)
            root = ledger_store.root(conn, size)
            if (latest is not None and not extra_signers and latest.size == size
                    and latest.checkpoint.root == root):
                have = witnesses_of(latest.note, policy.keys())
                if len(have) >= policy.quorum:
                    return Published(latest, policy.quorum, have)

            def proof_for(old: int) -> list[bytes]:
                if old <= 0 or old >= size:
                    return []
                return ledger_store.consistency_proof(conn, old, size)

            # Refuse before signing: never sign a tree that does not extend the last saved.
            extends = proof_for(latest.size) if latest is not None else []
            store.check_extends(Checkpoint(origin, size, root), extends, latest)
            note = sign_checkpoint(signers, origin, size, root)
            old_sizes: dict[str, int] = {}
            if latest is not None:
                cosigned = witnesses_of(latest.note, policy.keys())
                old_sizes = {name: latest.size for name in cosigned}
            result = collect_cosignatures(note, size, policy.witnesses, old_sizes=old_sizes,
                                          proof_for=proof_for)
            saved = store.save(result.note, extends, latest)
    return Published(saved, policy.quorum, result.witnesses, result.failures)


def receipt_for(engine: Engine, home: VaultHome, seq: int) -> tuple[str, Published]:
    """A tlog-proof receipt for ledger entry ``seq`` against a freshly published checkpoint."""
    texts, published = receipts_for(engine, home, [seq])
    return texts[0], published


def receipts_for(engine: Engine, home: VaultHome,
                 seqs: list[int]) -> tuple[list[str], Published]:
    """Receipts for several entries, against one published checkpoint."""
    published = publish_checkpoint(engine, home)
    size = published.saved.size
    texts = []
    with engine.connect().execution_options(readonly=True) as conn, conn.begin():
        for seq in seqs:
            if not 0 <= seq < size:
                raise BadInput(f"ledger entry {seq} is not in the checkpointed tree of {size}")
            entry = next(ledger_store.iter_entries(conn, seq, seq + 1))
            proof = ledger_store.inclusion_proof(conn, seq, size)
            texts.append(format_receipt(entry, seq, proof, published.note))
    return texts, published


def record_export(engine: Engine, actor: str, dataset: str, release_seq: int | None,
                  path: Path) -> int:
    """Ledger the exact bytes of an exported result file (and of its .meta.json sidecar)."""
    details: dict[str, Any] = {"format": path.suffix.lower().lstrip(".")}
    if release_seq is not None:
        details["release_seq"] = release_seq
    meta = path.with_name(path.name + ".meta.json")
    if meta.exists():
        details["meta_sha256"] = hashlib.sha256(meta.read_bytes()).hexdigest()
    draft = EntryDraft(actor=actor, action=EXPORT_ACTION, resource=vocab.dataset(dataset),
                       data_hash=hashlib.sha256(path.read_bytes()).hexdigest(), details=details)
    with engine.begin() as conn:
        [entry] = ledger_store.append(conn, [draft])
    return int(entry.seq)


# -- log key rotation ---------------------------------------------------------------------------


def rotate_log_key(engine: Engine, home: VaultHome) -> tuple[str, str, Published]:
    """New log key; returns (old vkey, new vkey, the transition checkpoint signed by both)."""
    old = Signer.load(home.signing_key_path)
    new = Signer.generate(home.identity())
    staged = home.signing_key_path.with_name(f".{home.signing_key_path.name}.new")
    staged.unlink(missing_ok=True)
    new.save(staged)
    try:
        transition = publish_checkpoint(engine, home, extra_signers=(new,))
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    retired = _retired_path(home)
    with retired.open("a", encoding="ascii") as out:
        out.write(old.vkey() + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(staged, home.signing_key_path)
    return old.vkey(), new.vkey(), transition
