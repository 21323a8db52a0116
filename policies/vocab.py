"""The vocabulary of civicvault: resource names, ledger actions, lookup entities.

Defined once, here, and imported by the vault (``vault.vocab`` re-exports it), the
policy evaluator, the cross-check, the audit and the report. It sits in
``policies/`` (like ``policies.validate``) because the policy layer needs it too
(which resources have an owner, which entities can be blind-indexed) and imports
point down only; ``ledger/`` stays independent of it.

Resources
---------
One separator, ``/``: ``<kind>/<id>[/<sub-kind>/<id>]``. One constructor per kind;
never build a resource with an f-string elsewhere. A constructor takes only
identifiers that were validated already (``policies.validate.parse_name``); what
is not a valid identifier is recorded by its fingerprint (length + SHA-256
prefix), never verbatim: resources go into the immutable ledger. A dataset name a
caller gave is a known identifier only once the vault holds that dataset: the
service and the release paths build its resource with
``vault.tables.dataset_resource`` (``known=False`` here: the fingerprint), so a
refused or not-found request never writes what was typed.

=====================  =====================================  ============================
constructor            resource                               used by
=====================  =====================================  ============================
``dataset(d)``         ``dataset/<d>``                        ingest, erase, reveal, release
``batch(d, b)``        ``dataset/<d>/batch/<b>``              ingest and reseal entries
``principal(p)``       ``principal/<p>``                      principals add/revoke, auth
``budget(a, d)``       ``budget/<a>[/<d>]``, ``budget/*``     budget set/show (owned by a)
``data_keys()``        ``vault/keys``                         key creation and rotation
``data_key(k)``        ``vault/keys/<k>``                     a retired data key
``file(name)``         ``file/<fingerprint>``                 classify (a dry run on a file)
constants              ``vault``, ``policy``, ``ledger``,     init, policy show/apply,
                       ``principals``, ``ledger/key``,        the ledger commands,
                       ``ledger/witnesses``                   principals list, witnesses
=====================  =====================================  ============================

Owned resources (:data:`OWNED_KINDS`) name their owner right after the kind; a
policy grant ``ROLE:own`` allows the action only on resources the acting principal
owns (:func:`resource_owner`). The older ``<kind>:<owner>[/...]`` spelling is still
read, so saved requests and older policies keep their meaning.

Ledger actions
--------------
Every action the vault writes is a :class:`LedgerAction` in :data:`LEDGER_ACTIONS`,
with what its ``data_hash`` vouches for. Readers (cross-check, state verification,
audit) look an action up with :func:`ledger_action`: an entry that carries details
or a ``data_hash`` under an action this module does not define is an error
(:class:`UnknownAction`), never skipped. Annotations (``ledger annotate``) carry no
details and no ``data_hash``, and may not take a name defined here
(:func:`annotation_action`).

To add a ledger action: add one constant and its :class:`LedgerAction` line below,
then write it where the change happens.

Lookup entities
---------------
:data:`LOOKUP_NORMALIZERS`: every entity that can be blind-indexed, with its
normaliser (``vault.blind_index.normalize``), in the order that decides which
one identifies a subject. Which of them *are* blind-indexed is the policy's
``[pii] lookup_entities`` (ingest and ``classify`` always pass the installed policy's;
:data:`CLASSIFIER_LOOKUPS` is the classifier's own default when it runs without one);
a policy naming an entity without a normaliser is refused when it is loaded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from ledger.errors import BadInput, UnknownAction
from policies.validate import NameKind, fingerprint, safe_name

__all__ = [
    "ANNOTATION",
    "AUTH_DENIED",
    "BUDGET_DENIED",
    "BUDGET_SET",
    "CLASSIFIER_LOOKUPS",
    "DATA_KEYS",
    "KEYS_CREATED",
    "KEYS_RETIRED",
    "KEYS_ROTATED",
    "KEYS_SUBJECTS_REWRAPPED",
    "LEDGER",
    "LEDGER_ACTIONS",
    "LEDGER_KEY",
    "LEDGER_KEY_ROTATED",
    "LINK_BUILD",
    "LINK_CUT",
    "LINK_REPORT",
    "LOOKUP_NORMALIZERS",
    "MAX_LISTED",
    "OPERATIONS",
    "OWNED_KINDS",
    "POLICY",
    "POLICY_ALLOWED",
    "POLICY_APPLIED",
    "POLICY_DENIED",
    "POLICY_DENIED_REPEATED",
    "PRINCIPALS",
    "PRINCIPAL_ADDED",
    "PRINCIPAL_REVOKED",
    "RELEASE_CHARGE",
    "RELEASE_DP",
    "RELEASE_EXPORT",
    "RELEASE_FAILED",
    "SEP",
    "VAULT",
    "VAULT_BATCH_RESEALED",
    "VAULT_ERASE",
    "VAULT_INGEST_BATCH",
    "VAULT_INIT",
    "VAULT_REVEAL",
    "VAULT_SOURCE_REGISTERED",
    "VOUCHING_ACTIONS",
    "WITNESSES",
    "LedgerAction",
    "Normalizer",
    "Section",
    "UnknownAction",
    "Vouches",
    "action_of_entry",
    "annotation_action",
    "batch",
    "budget",
    "data_key",
    "dataset",
    "file",
    "is_fingerprint",
    "ledger_action",
    "listed",
    "principal",
    "resource_owner",
    "shown",
]

# -- operations (what the policy decides) ----------------------------------------------------

#: Every operation the vault asks the policy about (the role matrix of ``[permissions]``).
OPERATIONS: Final[frozenset[str]] = frozenset({
    "ingest", "classify", "release", "segment", "budget.set", "budget.show", "erase",
    "reveal", "keys.rotate", "principals.add", "principals.revoke", "principals.list",
    "ledger.verify", "ledger.export", "ledger.prove", "ledger.consistency",
    "ledger.checkpoint", "ledger.pubkey", "ledger.annotate", "policy.show", "policy.apply",
    "audit.report", "link.build", "link.report",
})

# -- resources --------------------------------------------------------------------------------

SEP: Final = "/"
ALL: Final = "*"

VAULT: Final = "vault"
POLICY: Final = "policy"
LEDGER: Final = "ledger"
PRINCIPALS: Final = "principals"
LEDGER_KEY: Final = "ledger/key"
WITNESSES: Final = "ledger/witnesses"
DATA_KEYS: Final = "vault/keys"

#: Kinds whose second segment names the principal that owns the resource.
OWNED_KINDS: Final = frozenset({"budget"})


def _id(text: str, kind: NameKind) -> str:
    """``text`` if it is a valid ``kind`` identifier, else its fingerprint (never verbatim)."""
    return safe_name(text, kind)


def dataset(name: str, *, known: bool = True) -> str:
    """``dataset/<name>``; ``known=False`` (a caller-given name the vault does not hold:
    ``vault.tables.dataset_resource``) records the name by its fingerprint."""
    return f"dataset{SEP}{_id(name, 'dataset') if known else fingerprint(name)}"


def batch(dataset_name: str, batch_id: int) -> str:
    """``dataset/<name>/batch/<id>``: one stored ingest batch."""
    return f"{dataset(dataset_name)}{SEP}batch{SEP}{int(batch_id)}"


def principal(name: str) -> str:
    """``principal/<name>``."""
    return f"principal{SEP}{_id(name, 'principal')}"


def budget(analyst: str | None = None, dataset_name: str | None = None, *,
           known: bool = True) -> str:
    """``budget/<analyst>[/<dataset>]``, owned by ``analyst``; ``budget/*``: every analyst's.
    ``known=False``: the dataset is a caller-given name the vault does not hold (its
    fingerprint is recorded)."""
    if analyst is None:
        return f"budget{SEP}{ALL}"
    text = f"budget{SEP}{_id(analyst, 'principal')}"
    if dataset_name is None:
        return text
    return f"{text}{SEP}{_id(dataset_name, 'dataset') if known else fingerprint(dataset_name)}"


def data_key(key_id: int) -> str:
    """``vault/keys/<id>``: one data key."""
    return f"{DATA_KEYS}{SEP}{int(key_id)}"


def file(name: str) -> str:
    """``file/<fingerprint of the name>``: a file name is free text (it can name a person)."""
    return f"file{SEP}{fingerprint(name)}"


def resource_owner(resource: str) -> str | None:
    """The principal that owns ``resource``, if it is an owned resource.

    ``<kind>/<owner>[/...]`` for the kinds of :data:`OWNED_KINDS`; the older spelling
    ``<kind>:<owner>[/...]`` names an owner for any kind.
    """
    kind, sep, rest = resource.partition(":")
    if sep and kind and SEP not in kind:
        return rest.split(SEP, 1)[0] or None
    kind, sep, rest = resource.partition(SEP)
    if not sep or kind not in OWNED_KINDS:
        return None
    owner = rest.split(SEP, 1)[0]
    return owner if owner and owner != ALL else None


# -- caller input on the ledger -----------------------------------------------------------------

#: At most this many caller-given names are listed in an entry; a longer list is
#: recorded as one fingerprint (its length and a SHA-256 prefix of its JSON).
MAX_LISTED: Final = 32


_FINGERPRINT = re.compile(r"<[0-9]+ (?:chars|items), sha256 [0-9a-f]{16}>")


def is_fingerprint(text: object) -> bool:
    """True for what :func:`fingerprint` or :func:`listed` made (safe to show again)."""
    return isinstance(text, str) and _FINGERPRINT.fullmatch(text) is not None


def shown(name: object, known: Collection[str]) -> str:
    """``name`` if it is a ``known`` identifier (of the schema or policy), else its fingerprint.

    Use it for every caller-given name that goes into a message or a ledger entry."""
    if isinstance(name, str) and (name in known or is_fingerprint(name)):
        return name
    return fingerprint(name if isinstance(name, str) else repr(name))


def listed(names: Sequence[object], known: Collection[str]) -> list[str] | str:
    """Caller-given names for a ledger entry: each :func:`shown`; over :data:`MAX_LISTED`,
    one fingerprint of the whole list (``<N items, sha256 ...>``)."""
    if len(names) <= MAX_LISTED:
        return [shown(n, known) for n in names]
    blob = orjson.dumps(list(names), default=repr)
    return f"<{len(names)} items, sha256 {hashlib.sha256(blob).hexdigest()[:16]}>"


# -- ledger actions ---------------------------------------------------------------------------

#: What an action's ``data_hash`` is the SHA-256 of (``None``: it carries none).
Vouches = Literal["batch", "policy", "release", "export", "link", None]


#: Where the audit report lists an entry of the action (besides counting it).
Section = Literal["denials", "releases", "erasures", "key_events", None]


@dataclass(frozen=True)
class LedgerAction:
    """One action the vault writes to the ledger."""

    name: str
    vouches: Vouches = None  # "batch": the stored ciphertext of details.batch (cross-check)
    section: Section = None
    doc: str = ""

    @property
    def vouches_for_stored_data(self) -> bool:
        """True when ``data_hash`` covers bytes stored in the vault (re-hashed by audits)."""
        return self.vouches == "batch"


AUTH_DENIED: Final = "auth.denied"
POLICY_ALLOWED: Final = "policy.allowed"
POLICY_DENIED: Final = "policy.denied"
POLICY_DENIED_REPEATED: Final = "policy.denied.repeated"
BUDGET_DENIED: Final = "budget.denied"
POLICY_APPLIED: Final = "policy.applied"
VAULT_INIT: Final = "vault.init"
VAULT_SOURCE_REGISTERED: Final = "vault.source.registered"
VAULT_INGEST_BATCH: Final = "vault.ingest.batch"
VAULT_BATCH_RESEALED: Final = "vault.batch.resealed"
VAULT_ERASE: Final = "vault.erase"
VAULT_REVEAL: Final = "vault.reveal"
PRINCIPAL_ADDED: Final = "principal.added"
PRINCIPAL_REVOKED: Final = "principal.revoked"
KEYS_CREATED: Final = "keys.created"
KEYS_ROTATED: Final = "keys.rotated"
KEYS_RETIRED: Final = "keys.retired"
KEYS_SUBJECTS_REWRAPPED: Final = "keys.subjects.rewrapped"
BUDGET_SET: Final = "budget.set"
RELEASE_CHARGE: Final = "release.charge"
RELEASE_DP: Final = "release.dp"
RELEASE_FAILED: Final = "release.failed"
RELEASE_EXPORT: Final = "release.export"
LEDGER_KEY_ROTATED: Final = "ledger.key.rotated"
LINK_BUILD: Final = "link.build"
LINK_CUT: Final = "link.cut"
LINK_REPORT: Final = "link.report"

_A = LedgerAction
LEDGER_ACTIONS: Final[Mapping[str, LedgerAction]] = {a.name: a for a in (
    # name                     data_hash of   report section  what it records
    _A(AUTH_DENIED, None, "denials", "a revoked principal's token was used"),
    _A(POLICY_ALLOWED, None, None, "the policy allowed op (details.op) on the resource"),
    _A(POLICY_DENIED, None, "denials", "the policy, or the request's shape, refused op"),
    _A(BUDGET_DENIED, None, "denials", "the privacy budget does not cover a release"),
    _A(POLICY_DENIED_REPEATED, None, "denials",
       "repeats of one denied HTTP request in a window (details.count; not ledgered singly)"),
    _A(POLICY_APPLIED, "policy", None, "a policy file installed (data_hash: its bytes)"),
    _A(VAULT_INIT, None, None, "the vault home was created"),
    _A(VAULT_SOURCE_REGISTERED, None, None, "a source file registered for ingest"),
    _A(VAULT_INGEST_BATCH, "batch", None, "one ingest batch stored (its ciphertext)"),
    _A(VAULT_BATCH_RESEALED, "batch", None, "a batch sealed again (its new ciphertext)"),
    _A(VAULT_ERASE, None, "erasures", "subjects crypto-shredded"),
    _A(VAULT_REVEAL, None, None, "a break-glass reveal of one subject"),
    _A(PRINCIPAL_ADDED, None, None, "a principal and its token hash"),
    _A(PRINCIPAL_REVOKED, None, None, "a principal revoked"),
    _A(KEYS_CREATED, None, "key_events", "data keys created"),
    _A(KEYS_ROTATED, None, "key_events", "data keys rewrapped under a new KEK version"),
    _A(KEYS_RETIRED, None, "key_events", "a data key retired"),
    _A(KEYS_SUBJECTS_REWRAPPED, None, "key_events", "subject keys rewrapped"),
    _A(BUDGET_SET, None, None, "an analyst's budget on a dataset set"),
    _A(RELEASE_CHARGE, None, None, "a release's budget charged (before any noise)"),
    _A(RELEASE_DP, "release", "releases", "a DP release (data_hash: the released document)"),
    _A(RELEASE_FAILED, None, "releases", "a charged release that failed"),
    _A(RELEASE_EXPORT, "export", "releases", "a released table exported (the file's bytes)"),
    _A(LEDGER_KEY_ROTATED, None, None, "the log's signing key rotated"),
    _A(LINK_BUILD, "link", None, "a link between two datasets built (data_hash: its pairs)"),
    _A(LINK_CUT, "link", "erasures", "erased subjects cut from a link (data_hash: its pairs)"),
    _A(LINK_REPORT, None, "releases", "a DP match-quality report of a link"),
)}
del _A

#: Actions whose ``data_hash`` vouches for data stored in the vault (the cross-check).
VOUCHING_ACTIONS: Final = frozenset(a.name for a in LEDGER_ACTIONS.values()
                                    if a.vouches_for_stored_data)

#: What an annotation (``ledger annotate``) is, for readers.
ANNOTATION: Final = LedgerAction("annotation", doc="a caller's note: no details, no data_hash")


def ledger_action(name: str, *, has_details: bool = True) -> LedgerAction:
    """The :class:`LedgerAction` ``name``; an annotation when it carries nothing.

    An unknown action with details or a ``data_hash`` (``has_details``) raises
    :class:`UnknownAction`: a reader must not skip what it was not told about.
    """
    found = LEDGER_ACTIONS.get(name)
    if found is not None:
        return found
    if has_details:
        raise UnknownAction(name)
    return ANNOTATION


_ACTION_AT = len(b'{"action":"')


def action_of_entry(raw: bytes) -> LedgerAction:
    """The action of one entry's canonical bytes, without parsing the whole entry.

    RFC 8785 sorts keys, so every entry begins ``{"action":"<name>"``."""
    end = raw.find(b'"', _ACTION_AT)
    if not raw.startswith(b'{"action":"') or end < 0:
        raise UnknownAction("?")
    name = raw[_ACTION_AT:end].decode("ascii", "replace")
    return ledger_action(name, has_details=b'"details":' in raw or b'"data_hash":' in raw)


def annotation_action(name: Any) -> Any:
    """``name`` if a caller may annotate with it: not one of the vault's own actions.

    Anything else is passed on unchanged (``EntryDraft`` checks its shape)."""
    if isinstance(name, str) and name in LEDGER_ACTIONS:
        raise BadInput("that action is written by the vault itself; annotate with a name "
                       "of your own (e.g. 'note.review')")
    return name


# -- lookup entities --------------------------------------------------------------------------

Normalizer = Literal["text", "email", "phone", "id"]

#: Entities that can be blind-indexed, their normaliser, in the order that decides which
#: one identifies a subject. The policy's ``lookup_entities`` chooses among them.
LOOKUP_NORMALIZERS: Final[Mapping[str, Normalizer]] = {
    "VOTER_ID": "id", "US_SSN": "id", "US_DRIVER_LICENSE": "id",
    "EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "PERSON": "text",
}

#: The classifier's lookup entities when it runs without a policy (``classify_frame``
#: alone; ingest and ``classify`` always pass the installed policy's). Narrower than the
#: default policy's: phone numbers are shared within households, so the built-in
#: default keys identity on identifiers only.
CLASSIFIER_LOOKUPS: Final[frozenset[str]] = frozenset(
    {"VOTER_ID", "EMAIL_ADDRESS", "US_SSN", "US_DRIVER_LICENSE"})
