"""The one error tree of civicvault.

The root lives here, in the bottom layer, so that every layer can raise into the
same tree without importing upwards. Layers above add their own leaves
(``policies.errors``, ``vault.errors``); the CLI maps the tree to exit codes in
one place (``flows.cli``) by ``exit_code``::

    CivicVaultError                      exit 1 unless a subclass says otherwise
    ├── BadInput                         exit 2: malformed files, bad arguments, unknown names
    │   ├── PolicyFileError              (policies) a policy file that fails validation, with line
    │   ├── MalformedNote                a "signed note"/checkpoint that is not one (also a
    │   │                                VerificationFailed; a well-formed note whose signature
    │   │                                does not verify stays VerificationFailed, exit 1)
    │   └── NotInitialised               (vault) no vault home / schema yet
    ├── VerificationFailed               exit 1: a proof, signature or log that does not verify
    │   ├── LedgerTampered(seq=...)      the first entry at which the log fails
    │   └── VaultMismatch(batch=...)     (vault) stored ciphertext differs from its ledger data_hash
    ├── AccessDenied                     exit 1
    │   ├── Unauthenticated              (policies) unknown, revoked or forged token
    │   ├── PolicyDenied                 (policies) the policy says no
    │   └── BudgetExhausted              (policies) the privacy budget does not cover the request
    ├── KeyUnavailable                   exit 2 (vault) a key provider cannot give the key asked for
    └── StorageFault                     exit 2 (vault) disk full, read-only, locked: line + hint
        └── StorageFull, StorageReadOnly, StorageLocked

Messages carry identifiers and counts, never data values: they end up in logs,
in Prefect's result storage and on terminals.
"""

from __future__ import annotations


class CivicVaultError(Exception):
    """Root of every error civicvault raises on purpose."""

    exit_code: int = 1

    def diagnostics(self) -> str:
        """One line for a human: what failed, with ids and counts only."""
        return str(self)


class BadInput(CivicVaultError):
    """The caller's input cannot be used (exit 2)."""

    exit_code = 2


class VerificationFailed(CivicVaultError):
    """Something that must verify does not (exit 1)."""

    exit_code = 1


class LedgerTampered(VerificationFailed):
    """The ledger fails verification; ``seq`` is the first failing entry (or None)."""

    def __init__(self, message: str, *, seq: int | None = None) -> None:
        self.seq = seq
        where = f"entry {seq}: " if seq is not None else ""
        super().__init__(f"ledger verification failed at {where}{message}")


class UnknownAction(VerificationFailed):
    """A ledger entry vouches for something under an action the vocabulary does not define.

    Readers (cross-check, state verification, audit) refuse it rather than skip it:
    an action they were not told about may vouch for data they would then miss."""

    def __init__(self, action: str) -> None:
        self.action = action
        shown = action if len(action) <= 64 and action.isascii() and action.isprintable() else "?"
        super().__init__(f"ledger entry with unknown action '{shown}' carries details or a "
                         "data_hash: add it to policies/vocab.py (LEDGER_ACTIONS) or fix the entry")


class AccessDenied(CivicVaultError):
    """The acting principal may not do this (exit 1)."""

    exit_code = 1


class MalformedNote(BadInput, VerificationFailed):
    """A signed note or checkpoint whose structure is wrong: bad input (exit 2).

    Also a :class:`VerificationFailed`, so callers that treat any unusable note as
    "does not verify" keep working; a well-formed note with a bad signature is a plain
    :class:`VerificationFailed` (exit 1)."""

    exit_code = 2
