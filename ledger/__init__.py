"""The verifiable audit ledger: append-only, hash-chained, RFC 9162 Merkle tree.

Knows nothing of the vault; usable on its own.

- ``canonical``  RFC 8785 encoding of everything hashed or signed
- ``entry``      EntryDraft (what callers give) and Entry (what the log holds)
- ``merkle``     RFC 9162 hashing, proofs and proof verification (pure)
- ``signer``, ``note``, ``checkpoint``   Ed25519 keys, C2SP signed notes, tlog checkpoints
- ``store``      the SQL tables: append in the caller's transaction, group commit, proofs
- ``verify``     pure verification: bytes in, verdict out, ``LedgerTampered(seq=...)``
- ``db_verify``  reads the stored log (on two processes when large) for ``verify``
- ``errors``     the one error tree of civicvault

Its public names are offered here (``from ledger import EntryDraft, verify_log``) and
load their module on first use, so ``import ledger`` (and ``ledger.errors``) imports
no database driver or SQL toolkit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.lazy import lazy_names

if TYPE_CHECKING:  # the real names for type checkers; at run time they load lazily
    from ledger.canonical import canonical_bytes
    from ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
    from ledger.checkpoint_store import CheckpointStore
    from ledger.db_verify import verify_stored
    from ledger.entry import MAX_ENTRY_BYTES, MAX_STATE_ENTRY_BYTES, Entry, EntryDraft
    from ledger.errors import (
        AccessDenied,
        BadInput,
        CivicVaultError,
        EntryTooLarge,
        LedgerTampered,
        MalformedNote,
        UnknownAction,
        VerificationFailed,
    )
    from ledger.merkle import leaf_hash, node_hash, verify_consistency, verify_inclusion
    from ledger.receipt import ReceiptVerdict, verify_receipt
    from ledger.signer import Signer, Verifier, parse_vkey
    from ledger.store import GroupCommitter
    from ledger.verify import (
        LogVerdict,
        verify_against_checkpoint,
        verify_checkpoint_consistency,
        verify_log,
    )

__all__ = [
    "MAX_ENTRY_BYTES",
    "MAX_STATE_ENTRY_BYTES",
    "AccessDenied",
    "BadInput",
    "Checkpoint",
    "CheckpointStore",
    "CivicVaultError",
    "Entry",
    "EntryDraft",
    "EntryTooLarge",
    "GroupCommitter",
    "LedgerTampered",
    "LogVerdict",
    "MalformedNote",
    "ReceiptVerdict",
    "Signer",
    "UnknownAction",
    "VerificationFailed",
    "Verifier",
    "canonical_bytes",
    "leaf_hash",
    "node_hash",
    "open_checkpoint",
    "parse_vkey",
    "sign_checkpoint",
    "verify_against_checkpoint",
    "verify_checkpoint_consistency",
    "verify_consistency",
    "verify_inclusion",
    "verify_log",
    "verify_receipt",
    "verify_stored",
]

_WHERE: dict[str, str] = {
    "AccessDenied": "ledger.errors",
    "BadInput": "ledger.errors",
    "Checkpoint": "ledger.checkpoint",
    "CheckpointStore": "ledger.checkpoint_store",
    "CivicVaultError": "ledger.errors",
    "Entry": "ledger.entry",
    "EntryDraft": "ledger.entry",
    "EntryTooLarge": "ledger.errors",
    "GroupCommitter": "ledger.store",
    "LedgerTampered": "ledger.errors",
    "LogVerdict": "ledger.verify",
    "MAX_ENTRY_BYTES": "ledger.entry",
    "MAX_STATE_ENTRY_BYTES": "ledger.entry",
    "MalformedNote": "ledger.errors",
    "ReceiptVerdict": "ledger.receipt",
    "Signer": "ledger.signer",
    "UnknownAction": "ledger.errors",
    "VerificationFailed": "ledger.errors",
    "Verifier": "ledger.signer",
    "canonical_bytes": "ledger.canonical",
    "leaf_hash": "ledger.merkle",
    "node_hash": "ledger.merkle",
    "open_checkpoint": "ledger.checkpoint",
    "parse_vkey": "ledger.signer",
    "sign_checkpoint": "ledger.checkpoint",
    "verify_against_checkpoint": "ledger.verify",
    "verify_checkpoint_consistency": "ledger.verify",
    "verify_consistency": "ledger.merkle",
    "verify_inclusion": "ledger.merkle",
    "verify_log": "ledger.verify",
    "verify_receipt": "ledger.receipt",
    "verify_stored": "ledger.db_verify",
}

__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
