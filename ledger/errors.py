"""The one error tree of civicvault, in one module.

Every error civicvault raises on purpose is defined here, in the bottom layer, so
that every layer raises into the same tree without importing upwards (``ledger/``
stays usable on its own: the vault's leaves are plain classes that need nothing of
the vault). ``policies.errors`` and ``vault.errors`` re-export their leaves under
their old import paths. The CLI maps the tree to exit codes in one place
(``flows.cli``) by ``exit_code``; the HTTP API maps it to status codes
(``flows.api.problems``: RFC 9457 problem details)::

    CivicVaultError                      exit 1 unless a subclass says otherwise
    ├── BadInput                         exit 2: malformed files, bad arguments, unknown names
    │   ├── PolicyFileError              a policy file that fails validation, with line
    │   ├── MalformedNote                a "signed note"/checkpoint that is not one (also a
    │   │                                VerificationFailed; a well-formed note whose signature
    │   │                                does not verify stays VerificationFailed, exit 1)
    │   ├── EntryTooLarge                a ledger entry over its size cap (nothing written)
    │   └── NotInitialised               no vault home / schema yet
    ├── VerificationFailed               exit 1: a proof, signature or log that does not verify
    │   ├── LedgerTampered(seq=...)      the first entry at which the log fails
    │   ├── UnknownAction(action=...)    an entry vouching under an action nobody defined
    │   ├── VaultMismatch(batch=...)     stored ciphertext differs from its ledger data_hash
    │   ├── StateMismatch(table, row)    a vault table row differs from what the ledger says
    │   └── CiphertextRejected           a ciphertext does not open in its context
    ├── AccessDenied                     exit 1
    │   ├── Unauthenticated              unknown, revoked or forged token
    │   ├── PolicyDenied                 the policy says no
    │   ├── BudgetExhausted              the privacy budget does not cover the request
    │   └── RepeatedDenial(retry_after)  the same request, denied moments ago, repeated (HTTP
    │                                    429: counted, not ledgered one by one)
    ├── ReleaseFailed                    exit 1: a charged release failed (charge kept)
    ├── LinkOutOfDate                    exit 1: a dataset link is older than its data
    ├── FlowStepFailed                   exit 1: a Prefect flow step failed (ids and type only)
    │   └── TransientStoreError          the database was busy or unreachable: retried
    ├── PrefectServerUnavailable         exit 1: the temporary Prefect server did not start
    ├── KeyUnavailable                   exit 2: a key provider cannot give the key asked for
    └── StorageFault                     exit 2: disk full, read-only, locked: line + hint
        ├── StorageFull, StorageReadOnly, StorageLocked
        └── TempFolderFull, TempFolderUnwritable  the temp folder (TMPDIR) mid-ingest

Messages carry identifiers and counts, never data values: they end up in logs, in
Prefect's result storage and on terminals. Nor do they echo a path the caller typed
(a file name can name a person): they name the option or argument instead, and say
why a file could not be read with :func:`unreadable` (never ``str()`` of an
``OSError``, which carries the file name). :meth:`CivicVaultError.diagnostics` is
the message on its first line (what the CLI prints), then the class's advice: what
a person can do about it.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccessDenied",
    "BadInput",
    "BudgetExhausted",
    "CiphertextRejected",
    "CivicVaultError",
    "EntryTooLarge",
    "FlowStepFailed",
    "KeyUnavailable",
    "LedgerTampered",
    "LinkOutOfDate",
    "MalformedNote",
    "NotInitialised",
    "PolicyDenied",
    "PolicyFileError",
    "PrefectServerUnavailable",
    "ReleaseFailed",
    "RepeatedDenial",
    "StateMismatch",
    "StorageFault",
    "StorageFull",
    "StorageLocked",
    "StorageReadOnly",
    "TempFolderFull",
    "TempFolderUnwritable",
    "TransientStoreError",
    "Unauthenticated",
    "UnknownAction",
    "VaultMismatch",
    "VerificationFailed",
    "unreadable",
]


class CivicVaultError(Exception):
    """Root of every error civicvault raises on purpose."""

    exit_code: int = 1
    #: What a person can do about it (no ids: those are in the message).
    advice: ClassVar[str] = ""

    def diagnostics(self) -> str:
        """The message (ids and counts only) on the first line, then the advice, if any."""
        text = str(self) or type(self).__name__
        return f"{text}\n{self.advice}" if self.advice else text


def unreadable(exc: OSError | UnicodeDecodeError) -> str:
    """Why a file could not be read, without its name: ``"permission denied"``, ``"no such
    file or directory"``, ``"is a directory"``, ``"not UTF-8 text"`` (``str(exc)`` of an
    ``OSError`` ends with the file name, which may name a person)."""
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return (exc.strerror or type(exc).__name__).lower()


# -- bad input (exit 2) -------------------------------------------------------------------------


class BadInput(CivicVaultError):
    """The caller's input cannot be used (exit 2)."""

    exit_code = 2
    advice = "Fix the input named above (see the command's --help); nothing was written."


class PolicyFileError(BadInput):
    """A policy file that does not validate; the message names the file and line."""

    advice = ("Edit the policy file at the line named (policies/default.toml documents every "
              "key), then 'civicvault policy apply FILE'; the installed policy is unchanged.")

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")


class NotInitialised(BadInput):
    """No vault home or schema: run ``civicvault init`` first."""

    advice = ("Run 'civicvault init', or point CIVICVAULT_HOME / CIVICVAULT_DB_URL at an "
              "existing vault.")


class EntryTooLarge(BadInput):
    """A ledger entry over its size cap: refused at the append point, nothing written (exit 2).

    The message names the action and the sizes, never the entry's content."""

    advice = ("Ledger entries hold identifiers, counts and hashes only: record a long list "
              "as its count and hash, or split the request.")

    def __init__(self, action: str, size: int, cap: int) -> None:
        self.action, self.size, self.cap = action, size, cap
        super().__init__(f"ledger entry for action '{action}' would be {size} bytes, over its "
                         f"cap of {cap} bytes: nothing was written")


# -- verification (exit 1) ----------------------------------------------------------------------


class VerificationFailed(CivicVaultError):
    """Something that must verify does not (exit 1)."""

    exit_code = 1
    advice = ("Keep the database and files as they are (they are evidence) and check them "
              "against a saved checkpoint and an export: 'civicvault ledger verify "
              "--export FILE --checkpoint FILE --vkey FILE'.")


class LedgerTampered(VerificationFailed):
    """The ledger fails verification; ``seq`` is the first failing entry (or None)."""

    advice = ("Entries from the one named on do not verify: do not append or repair; compare "
              "'civicvault ledger export' with a copy or a witness's checkpoint to find what "
              "changed.")

    def __init__(self, message: str, *, seq: int | None = None) -> None:
        self.seq = seq
        where = f"entry {seq}: " if seq is not None else ""
        super().__init__(f"ledger verification failed at {where}{message}")


class UnknownAction(VerificationFailed):
    """A ledger entry vouches for something under an action the vocabulary does not define.

    Readers (cross-check, state verification, audit) refuse it rather than skip it:
    an action they were not told about may vouch for data they would then miss."""

    advice = ("Every action the vault writes is defined in policies/vocab.py "
              "(LEDGER_ACTIONS): add the new one there, with what its data_hash vouches for.")

    def __init__(self, action: str) -> None:
        self.action = action
        shown = action if len(action) <= 64 and action.isascii() and action.isprintable() else "?"
        super().__init__(f"ledger entry with unknown action '{shown}' carries details or a "
                         "data_hash: add it to policies/vocab.py (LEDGER_ACTIONS) or fix the entry")


class VaultMismatch(VerificationFailed):
    """A batch's stored ciphertext no longer hashes to the ``data_hash`` on the ledger."""

    advice = ("The stored data of the batch named was edited, replaced or removed outside "
              "civicvault: restore it from a backup that verifies.")

    def __init__(self, message: str, *, batch: str | None = None) -> None:
        self.batch = batch
        super().__init__(message)


class StateMismatch(VerificationFailed):
    """A vault table row differs from what the ledger vouches for (``vault.state_verify``).

    ``table`` and ``row`` name the first differing row (ids only, never values);
    ``seq`` is the ledger entry that vouched for it last, when there is one.
    """

    advice = ("A table row was changed outside civicvault (a grant, budget, key or erasure "
              "the ledger does not vouch for): restore it, or find who wrote it.")

    def __init__(self, table: str, row: str, message: str, *, seq: int | None = None) -> None:
        self.table = table
        self.row = row
        self.detail = message
        self.seq = seq
        vouched = f" (last vouched for by ledger entry {seq})" if seq is not None else ""
        super().__init__(f"vault state differs from the ledger at {table} {row}: "
                         f"{message}{vouched}")


class CiphertextRejected(VerificationFailed):
    """A stored ciphertext does not open in its context (moved, swapped or tampered)."""


class MalformedNote(BadInput, VerificationFailed):
    """A signed note or checkpoint whose structure is wrong: bad input (exit 2).

    Also a :class:`VerificationFailed`, so callers that treat any unusable note as
    "does not verify" keep working; a well-formed note with a bad signature is a plain
    :class:`VerificationFailed` (exit 1)."""

    exit_code = 2
    advice = ("Give a C2SP signed note: origin, tree size and base64 root hash lines, a blank "
              "line, then signature lines ('civicvault ledger checkpoint' writes one).")


# -- access (exit 1) ----------------------------------------------------------------------------


class AccessDenied(CivicVaultError):
    """The acting principal may not do this (exit 1)."""

    exit_code = 1
    advice = ("The denial is on the ledger. Ask an admin for a role that may do this "
              "('civicvault policy show' lists who may do what).")


class Unauthenticated(AccessDenied):
    """Unknown, revoked or malformed token.

    ``revoked`` names the principal (id, role) when the token was a revoked principal's:
    that refusal is on the ledger (``auth.denied``), an unknown token's is not."""

    advice = ("Give a valid token with --token or CIVICVAULT_TOKEN (an admin creates one with "
              "'civicvault principals add NAME --role ROLE').")

    def __init__(self, message: str = "", *, revoked: tuple[str, str] | None = None) -> None:
        self.revoked = revoked
        super().__init__(message)


class PolicyDenied(AccessDenied):
    """The policy denies this principal this action on this resource."""


class BudgetExhausted(AccessDenied):
    """The privacy budget left does not cover the request."""

    advice = ("See what is left with 'civicvault budget show'; ask with a smaller --epsilon, "
              "or ask a steward for more budget ('budget set').")


class RepeatedDenial(AccessDenied):
    """The same request from the same principal was denied less than a window ago.

    Raised by the HTTP API's denial limiter (``flows.api.limits``) instead of asking the
    policy again: the first denial is on the ledger, its repeats in the window are
    counted and ledgered as one ``policy.denied.repeated`` entry when the window closes.
    ``retry_after`` is whole seconds until then."""

    advice = ("The first denial of this request is on the ledger; repeating it changes "
              "nothing. Wait for the time given, or ask an admin for access.")

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"the same request was denied moments ago: retry after "
                         f"{retry_after} s")


# -- other failures -----------------------------------------------------------------------------


class ReleaseFailed(CivicVaultError):
    """A release failed after its budget was charged: the charge is kept, nothing released.

    The message names the ledger entry of the charge, never the cause's text (it
    could carry data).
    """

    exit_code = 1
    advice = ("The budget charge stays spent (the ledger entry named records it); retry the "
              "release, and report the failure if it repeats.")


class LinkOutOfDate(CivicVaultError):
    """A side of a dataset link took new data since the link was last built (exit 1)."""

    exit_code = 1
    advice = ("Rebuild the link with 'civicvault link build NAME' (a steward or admin), then "
              "run the linked release again; nothing was charged.")


class FlowStepFailed(CivicVaultError):
    """A flow step failed for a reason outside civicvault's error tree (ids and type only)."""

    exit_code = 1
    advice = ("The flow run's logs name the step; rerun the flow (its tasks are idempotent), "
              "with CIVICVAULT_DEBUG=1 in a safe environment for the cause.")


class TransientStoreError(FlowStepFailed):
    """The database was busy or unreachable; the step is safe to retry."""

    advice = "The database was busy or unreachable: the step is retried; rerun if it gave up."


class PrefectServerUnavailable(CivicVaultError):
    """The temporary Prefect server did not answer within the startup timeout."""

    exit_code = 1
    advice = ("Give it longer with PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or point "
              "PREFECT_API_URL at a running Prefect server.")


class KeyUnavailable(CivicVaultError):
    """A key provider cannot produce the key asked for (missing, unsafe mode, unknown version)."""

    exit_code = 2
    advice = ("Check the key provider: the KEK file in the vault home (mode 0600) or the "
              "key's environment variable; a rotated vault needs every KEK version it used.")


class StorageFault(CivicVaultError):
    """The database or the vault home cannot take a write right now (exit 2, one line + hint).

    Raised in place of the driver's error (see ``vault.errors.storage_fault``): by the
    engine's ``handle_error`` hook for database errors, by the CLI for file-system errors.
    The transaction that hit it was rolled back, so nothing was written partially. The
    hint is part of the message (one line), so there is no separate advice."""

    exit_code = 2
    cause = "storage fault"
    hint = ""

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        text = f"{self.cause}: {detail}" if detail else self.cause
        super().__init__(f"{text} (hint: {self.hint})" if self.hint else text)


class StorageFull(StorageFault):
    """No space left for the database or the vault home (disk full, quota, size limit)."""

    cause = "storage full"
    hint = ("free space on that disk, or move the vault (CIVICVAULT_HOME / "
            "CIVICVAULT_DB_URL); nothing was committed, rerun the command afterwards")


class StorageReadOnly(StorageFault):
    """The database or the vault home is read-only (read-only mount, permissions, hot standby)."""

    cause = "storage read-only"
    hint = ("remount the vault home read-write or give this user write access to it "
            "(and its database); nothing was changed")


class TempFolderFull(StorageFull):
    """No space left in the temp folder (``TMPDIR``) for what an ingest keeps there."""

    cause = "temp folder full"
    hint = ("point TMPDIR at a disk with room, or raise CIVICVAULT_IDENTITY_CACHE_MB; the "
            "batches stored so far are kept and rerunning the ingest resumes after them")


class TempFolderUnwritable(StorageReadOnly):
    """The temp folder (``TMPDIR``) cannot be written (permissions, read-only mount)."""

    cause = "temp folder not writable"
    hint = ("point TMPDIR at a folder this user can write; the batches stored so far are "
            "kept and rerunning the ingest resumes after them")


class StorageLocked(StorageFault):
    """Another writer holds the database's write lock longer than we wait for it."""

    cause = "storage locked"
    hint = ("another civicvault writer (ingest, erasure, key rotation) or another program "
            "holds the database; rerun when it has finished, or wait longer with "
            "CIVICVAULT_LOCK_TIMEOUT=SECONDS")
