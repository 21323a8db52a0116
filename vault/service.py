"""The vault service: one object, one method per operation of the public contract.

::

    vault = Vault.open(home, token=token)        # None: the home's admin.token
    report = vault.ingest(Path("voters.csv"), "nc_voters")
    result = vault.release(request, purpose="turnout")
    vault.erase("nc_voters", {"voter_reg_num": "..."})

Every method that acts as a principal

1. authorises through the installed policy (``vault.access``): a denial is ledgered
   (``policy.denied``) in its own transaction and raised as ``PolicyDenied``;
2. does the work by calling the ``vault`` function that owns it (ingest, dp, erase,
   rotate, principals, budget, transparency, ...), never re-implementing it;
3. appends its ledger entries in the *same* transaction as the change they vouch for
   (the ``policy.allowed`` decision included), so a failure rolls back both.

Read-only operations (verify, audit, proofs, export) have no change to vouch for: the
decision is their ledger entry (``verify`` writes it only once the ledger verified, so
a failed check never appends to the log it found broken). The checkpoint and the
verifier key are public material: no principal, no ledger entry. The resumable
re-encryption job commits one batch at a time, each with its own entries.

The CLI (``flows.cli*``), the HTTP API (``flows.api``) and the Prefect flows
(``flows/*.py``) parse, call one method here and render; none of them composes an
access decision or a ledger entry. To add an operation: add a method here (and its
action to ``policies.vocab.OPERATIONS``); to expose it over HTTP: one route in
``flows/api/app.py``; on the command line: one command in the matching ``flows/cli/*.py``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from ledger import store as ledger_store
from ledger.entry import MAX_STATE_ENTRY_BYTES, EntryDraft
from ledger.errors import BadInput, unreadable
from policies.errors import Unauthenticated
from policies.model import Policy
from vault import access as _access
from vault import vocab
from vault.access import Principal
from vault.home import VaultHome

if TYPE_CHECKING:
    from ledger.cosignature import CosignatureVerifier
    from ledger.verify import LogVerdict
    from vault.audit import AuditSummary, AuditVerdict
    from vault.budget import Budget
    from vault.dp.plan import Accuracy
    from vault.dp.release import ReleaseResult
    from vault.dp.request import ReleaseRequest
    from vault.dp.segment import SegmentRequest
    from vault.erase import EraseReport
    from vault.ingest import IngestPlan, IngestReport, Progress
    from vault.ledger_view import EntryFilter
    from vault.pii.classifier import ColumnClass
    from vault.principals import PrincipalRecord
    from vault.transparency import Published, WitnessPolicy

__all__ = ["Principal", "Vault"]


INGEST_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".parquet", ".jsonl", ".ndjson"})


def source_files(path: Path) -> list[Path]:
    """A file, or the ingestible files of a folder (sorted). Errors never echo the path:
    the caller typed it, and a file name may name a person."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in INGEST_SUFFIXES)
        if not files:
            raise BadInput("the folder given to ingest holds no ingestible file ("
                           + " ".join(sorted(INGEST_SUFFIXES)) + ")")
        return files
    if not path.exists():
        raise BadInput("the file or folder given to ingest does not exist")
    return [path]


@dataclass(frozen=True)
class OpenedSubject:
    """What a reveal opened for one subject, as counts and column names only (no value):
    what a terminal, a JSON answer or a log may show."""
    subject: int
    record_count: int
    field_names: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "records": self.record_count,
                "fields": list(self.field_names)}


@dataclass(frozen=True)
class Revealed:
    dataset: str
    purpose: str
    subjects: list[tuple[int, list[dict[str, str | None]]]]  # the values: private file only
    ledger_seq: int

    def opened_counts(self) -> tuple[int, int]:
        """How many subjects and how many of their records were opened: two numbers."""
        return len(self.subjects), sum(len(recs) for _, recs in self.subjects)

    def opened(self) -> list[OpenedSubject]:
        """Which subjects, how many records and which columns were opened (no value)."""
        return [OpenedSubject(sid, len(recs), tuple(sorted({name for r in recs for name in r})))
                for sid, recs in self.subjects]


@dataclass(frozen=True)
class Classified:
    rows: int
    columns: int
    classes: list[ColumnClass]


@dataclass(frozen=True)
class AuditOutcome:
    verdict: AuditVerdict
    summary: AuditSummary
    origin: str
    vkey: str
    checkpoint: str | None  # the newest saved checkpoint (the one store's)


@dataclass
class VerifyReport:
    """What ``verify`` found; filled as it goes, so a failure still reports what it had."""

    mode: str
    size: int | None = None
    root_hash: str | None = None
    checkpoint: dict[str, Any] | None = None
    saved_size: int | None = None
    state: Any = None
    entries_folded: int = 0
    nodes_checked: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"verified": False, "mode": self.mode, "size": self.size,
                "root_hash": self.root_hash, "checkpoint": self.checkpoint}


class Vault:
    """A vault home (or database URL) opened as one principal. See the module docstring."""

    def __init__(self, home: VaultHome, engine: Engine, principal: Principal | None, *,
                 owns_engine: bool = False) -> None:
        self.home = home
        self.engine = engine
        self._principal = principal
        self._owns_engine = owns_engine

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, home: VaultHome | str | Path | None = None, *, token: str | None = None,
             db_url: str | None = None, engine: Engine | None = None,
             anonymous: bool = False) -> Vault:
        """Open an initialised home (default: ``CIVICVAULT_HOME``) and authenticate ``token``
        (None: the home's admin token). ``anonymous``: public material only."""
        from vault.db import make_engine, require_schema

        if not isinstance(home, VaultHome):
            home = (VaultHome.from_env() if home is None
                    else VaultHome(root=Path(home).expanduser().absolute(),
                                   db_url_override=os.environ.get("CIVICVAULT_DB_URL") or None))
        if db_url is not None:
            home = VaultHome(root=home.root, db_url_override=db_url)
        home.require_initialised()
        owns = engine is None
        if engine is None:
            engine = make_engine(home.db_url)
        try:
            require_schema(engine)
            principal = None if anonymous else _access.authenticate(engine, home, token)
        except BaseException:
            if owns:
                engine.dispose()
            raise
        return cls(home, engine, principal, owns_engine=owns)

    def acting_as(self, token: str | None) -> Vault:
        """The same vault (engine shared) as the principal holding ``token``."""
        return Vault(self.home, self.engine, _access.authenticate(self.engine, self.home, token))

    def as_principal(self, principal: Principal) -> Vault:
        """The same vault as an already authenticated principal (flows pass these)."""
        return Vault(self.home, self.engine, principal)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def principal(self) -> Principal:
        if self._principal is None:
            raise Unauthenticated("this operation needs a principal's token")
        return self._principal

    @property
    def policy(self) -> Policy:
        """The installed policy (public to the service's callers for rendering only)."""
        return _access.installed_policy(self.home)

    @contextmanager
    def _access(self, op: str, resource: str, *,
                purpose: str | None = None) -> Iterator[Connection]:
        with _access.access(self.engine, self.home, self.principal, op, resource,
                            purpose=purpose) as conn:
            yield conn

    def _may(self, op: str, resource: str) -> bool:
        """Whether the policy would allow ``op`` on ``resource`` (pure: nothing ledgered)."""
        p = self.principal
        return self.policy.decide(p.role, op, resource, None, actor=p.id).allowed

    def _require(self, op: str, resource: str) -> None:
        """Refuse (ledgered, raised) before any input is read, if the policy would deny;
        an allowed decision is ledgered later, in the transaction of the work."""
        if not self._may(op, resource):
            with self._access(op, resource):
                pass  # ledgers the denial and raises

    def _dataset(self, name: str, *, analyst: str | None = None) -> str:
        """The resource of a caller-given dataset name (``budget/<analyst>/<name>`` with
        ``analyst``): verbatim only if the vault holds the dataset, else its fingerprint
        (``vault.tables.dataset_resource``), so a refusal or a not-found never ledgers
        what was typed."""
        from vault.tables import holds_dataset

        with self.engine.connect().execution_options(readonly=True) as conn, conn.begin():
            known = holds_dataset(conn, name)
        if analyst is not None:
            return vocab.budget(analyst, name, known=known)
        return vocab.dataset(name, known=known)

    def _keyring(self) -> Any:
        from vault.keyring import Keyring
        from vault.keys import provider_for

        return Keyring(provider_for(self.home))

    # -- ingest and classification ------------------------------------------------------------

    def ingest(self, path: Path, dataset: str, *, progress: Progress | None = None,
               client: Any = None) -> dict[str, Any]:
        """Classify, encrypt and store a file or every file of a folder (``ingest``); with a
        Dask ``client``, its workers prepare the batches and this process writes them."""
        from vault.ingest import ingest_path, source_label

        self._require("ingest", self._dataset(dataset))  # no file is read for a denied caller
        totals: dict[str, Any] = {"dataset": dataset, "rows_added": 0, "rows_updated": 0,
                                  "duplicates_skipped": 0, "erased_suppressed": 0, "batches": 0,
                                  "people": 0, "columns": []}  # people: summed per file
        files = source_files(path)
        for i, f in enumerate(files, start=1):
            label = source_label(i, len(files), folder=path.is_dir())  # errors: never a name
            if client is None:
                r = ingest_path(self.engine, self.home, self.principal, f, dataset,
                                progress=progress, label=label)
            else:
                plan = self.ingest_plan(f, dataset, label=label)
                r = self.ingest_planned(plan, client=client, progress=progress)
            totals["rows_added"] += r.rows_added
            totals["rows_updated"] += r.rows_updated
            totals["duplicates_skipped"] += r.duplicates_skipped
            totals["erased_suppressed"] += r.erased_suppressed
            totals["batches"] += r.batches
            totals["people"] += r.people or 0
            totals["columns"] = r.columns
        self.refresh_links(dataset)  # declared links see the new rows (vault.linkage)
        return totals

    def ingest_plan(self, path: Path, dataset: str, *, batch_rows: int | None = None,
                    label: str | None = None) -> IngestPlan:
        """Step 1 of a distributed ingest: read, register and classify one source; errors
        name it as ``label`` (``vault.ingest.source_label``; default "the file")."""
        from vault.ingest import BATCH_ROWS, plan_ingest, source_label

        self._require("ingest", self._dataset(dataset))  # an allowed ingest creates the name
        return plan_ingest(self.engine, self.home, self.principal, path, dataset,
                           batch_rows=batch_rows or BATCH_ROWS,
                           label=label or source_label(1, 1, folder=False))

    def ingest_batch(self, plan: IngestPlan, batch_index: int) -> dict[str, int]:
        """Step 2 (per batch, idempotent) of a distributed ingest."""
        from vault.ingest import ingest_batch

        return ingest_batch(self.engine, self.home, self.principal, plan, batch_index)

    def ingest_planned(self, plan: IngestPlan, *, client: Any = None,
                       progress: Progress | None = None) -> IngestReport:
        """Step 2: every batch of a planned source, pipelined, in this process; with a Dask
        ``client`` the workers prepare the batches (sealed in transit) and this process is
        the one ordered writer."""
        from vault.ingest import IngestReport, store_source

        if plan.already_ingested:
            return IngestReport(plan.dataset, 0, 0, plan.rows, 0, plan.columns,
                                already_ingested=True)
        if client is None:
            return store_source(self.engine, self.home, self.principal, plan, progress=progress)
        from vault.ingest_parallel import store_source_on

        return store_source_on(client, self.engine, self.home, self.principal, plan,
                               progress=progress)

    def classify(self, path: Path, *, sample_rows: int = 300) -> Classified:
        """Dry run: per column entity, handling, confidence (``classify``; stores nothing)
        under the installed policy. A caller the policy denies is refused before the file
        is read; the allowed decision is ledgered once the file was read and classified
        (a bad file is bad input, with no entry)."""
        resource = vocab.file(path.name)
        self._require("classify", resource)
        info, classes = _scan_and_classify(path, sample_rows)
        with self._access("classify", resource):
            policy = self.policy
        return _classified(info, classes, policy)

    # -- releases and budgets -----------------------------------------------------------------

    def preview(self, request: ReleaseRequest) -> Accuracy:
        """The accuracy of a release: no data read, no budget spent (``release``)."""
        from vault.dp import preview_release

        return preview_release(self.engine, self.home, self.principal, request)

    def release(self, request: ReleaseRequest, *, purpose: str | None = None) -> ReleaseResult:
        """A DP release, charged to the principal's budget before any noise (``release``)."""
        from vault.dp import run_release

        return run_release(self.engine, self.home, self.principal, request, purpose=purpose)

    def segment(self, request: SegmentRequest, *, purpose: str | None = None) -> ReleaseResult:
        """DP k-means segments (``segment``)."""
        from vault.dp import run_segment

        return run_segment(self.engine, self.home, self.principal, request, purpose=purpose)

    # -- links between datasets (vault.linkage, vault.dp.linked) ------------------------------

    def link_rule(self, name: str) -> Any:
        """The policy's ``[links.NAME]`` rule; BadInput (the name never echoed) if none."""
        rule = self.policy.links.get(name)
        if rule is None:
            raise BadInput("no such link in the policy ([links] in 'civicvault policy show')")
        return rule

    def link_build(self, name: str, *, purpose: str | None = None) -> Any:
        """Build or refresh a link (idempotent), ledgered with its counts (``link.build``)."""
        from vault import linkage

        rule = self.link_rule(name)
        linkage.check_purpose(self.engine, self.principal, rule, purpose)
        with self._access(linkage.LINK_PERMISSION, linkage.resource_of(name),
                          purpose=purpose) as conn:
            return linkage.build_link(conn, self._keyring(), rule, self.principal.id, purpose)

    def refresh_links(self, dataset: str) -> list[str]:
        """After an ingest into ``dataset``: rebuild every declared link it is a side of
        that has been built before (idempotent; ledgered ``link.build`` with ``trigger:
        ingest``), so linked releases see the new rows. Only when this principal may build
        links; otherwise (or for a link never built: its first build names a purpose) the
        link stays out of date and linked releases refuse until ``civicvault link build``.
        Returns the names of the links rebuilt."""
        from vault import linkage

        done: list[str] = []
        for rule in sorted(self.policy.links.values(), key=lambda r: r.name):
            if dataset not in (rule.left, rule.right):
                continue
            resource = linkage.resource_of(rule.name)
            with self.engine.connect() as conn:
                if not linkage.is_built(conn, rule) or linkage.is_current(conn, rule):
                    continue
            if not self._may(linkage.LINK_PERMISSION, resource):
                continue
            with self._access(linkage.LINK_PERMISSION, resource) as conn:
                linkage.build_link(conn, self._keyring(), rule, self.principal.id,
                                   trigger="ingest")
            done.append(rule.name)
        return done

    def link_report(self, name: str, by: str | None, epsilon: Fraction, *,
                    purpose: str | None = None) -> ReleaseResult:
        """DP counts of a link's matched, unmatched and ambiguous records (``link.report``)."""
        from vault.dp.linked import run_link_report

        return run_link_report(self.engine, self.home, self.principal, name, by, epsilon,
                               purpose=purpose)

    def release_linked(self, request: Any, *, purpose: str | None = None) -> ReleaseResult:
        """A DP release across two linked datasets, charged on both (``release --join``)."""
        from vault.dp.linked import run_linked_release

        return run_linked_release(self.engine, self.home, self.principal, request,
                                  purpose=purpose)

    def budget_set(self, analyst: str, dataset: str, epsilon: Fraction, *,
                   delta: Fraction | None = None) -> Budget:
        """Set an analyst's totals on a dataset; spending is kept (``budget.set``)."""
        from vault.budget import set_budget
        from vault.principals import get_principal
        from vault.store import T_DATASET

        default_delta = self.policy.delta_default(dataset)
        with self._access("budget.set", self._dataset(dataset, analyst=analyst)) as conn:
            if get_principal(conn, analyst) is None:
                raise BadInput(f"unknown analyst '{analyst}' (add it with "
                               "'civicvault principals add')")
            from sqlalchemy import select

            if conn.execute(select(T_DATASET.c.id).where(T_DATASET.c.name == dataset)
                            ).first() is None:
                raise BadInput(f"no dataset '{dataset}' in the vault: ingest it first "
                               "(a budget on a misspelt name would never be used)")
            return set_budget(conn, analyst, dataset, epsilon, delta_total=delta,
                              default_delta=default_delta, actor=self.principal.id)

    def budget_show(self, analyst: str | None = None) -> list[Budget]:
        """Budgets: total, spent, remaining (``budget.show``). Without ``analyst``: every
        analyst's if the policy lets this principal see them all, else its own."""
        from policies.validate import parse_name
        from vault.budget import show_budgets

        if analyst is not None:
            parse_name(analyst, "principal", what="analyst name")
        elif not self._may("budget.show", vocab.budget()):
            analyst = self.principal.id  # e.g. an analyst: their own budgets
        resource = vocab.budget(analyst)
        with self._access("budget.show", resource) as conn:
            return show_budgets(conn, analyst)

    # -- subjects: erasure and break-glass reveal -----------------------------------------------

    def erase(self, dataset: str, match: Mapping[str, str], *,
              purpose: str | None = None) -> tuple[EraseReport, int | None]:
        """Crypto-shred every subject matching ``match`` (``erase``); returns the report and
        the seq of its ``vault.erase`` entry."""
        from policies.validate import parse_name
        from vault.erase import erase as do_erase

        parse_name(dataset, "dataset")  # before the name reaches the ledger as a resource
        keyring = self._keyring()
        with self._access("erase", self._dataset(dataset), purpose=purpose) as conn:
            before = ledger_store.size(conn)
            report = do_erase(conn, keyring, dataset, match, self.principal.id)
            seq = _entry_seq(conn, before, vocab.VAULT_ERASE)
        return report, seq

    def reveal(self, dataset: str, match: Mapping[str, str], purpose: str) -> Revealed:
        """Break glass: open the matching subjects' records (``reveal``; purpose required,
        rate-limited); ledgered with the subject ids, never the values."""
        from vault.erase import find_subjects
        from vault.records import open_subject

        keyring = self._keyring()
        with self._access("reveal", self._dataset(dataset), purpose=purpose) as conn:
            _, found = find_subjects(conn, keyring, dataset, dict(match))
            subjects = sorted(found)
            opened = [(sid, open_subject(conn, keyring, sid)) for sid in subjects]
            [entry] = ledger_store.append(conn, [EntryDraft(
                actor=self.principal.id, action=vocab.VAULT_REVEAL,
                resource=vocab.dataset(dataset), purpose=purpose,
                max_bytes=MAX_STATE_ENTRY_BYTES,  # the subject ids, like an erasure's
                details={"dataset": dataset, "subjects": subjects,
                         "match_columns": sorted(match)})])
        return Revealed(dataset, purpose, opened, int(entry.seq))

    # -- keys -----------------------------------------------------------------------------------

    def keys_rotate(self, *, reencrypt: bool = False) -> dict[str, int]:
        """New KEK version and every data key rewrapped, in the decision's transaction
        (``keys.rotate``); with ``reencrypt``, then the re-encryption job (see
        ``keys_reencrypt``) under the same decision."""
        from vault.keys import provider_for
        from vault.rotate import reencrypt as reencrypt_job
        from vault.rotate import rotate_keys_in

        provider = provider_for(self.home)
        with self._access("keys.rotate", vocab.DATA_KEYS) as conn:
            kek, rewrapped = rotate_keys_in(conn, provider, self.principal.id)
        out = {"kek_version": kek, "data_keys_rewrapped": rewrapped}
        if reencrypt:
            batches, subjects, destroyed = reencrypt_job(self.engine, provider,
                                                         self.principal.id)
            out.update(batches_resealed=batches, subject_keys_rewrapped=subjects,
                       keys_destroyed=destroyed)
        return out

    def keys_reencrypt(self) -> dict[str, int]:
        """Move data off retired keys (``keys.rotate``): resumable, one batch per
        transaction, each committed with its own entries (a job, not one change)."""
        from vault.keys import provider_for
        from vault.rotate import reencrypt

        with self._access("keys.rotate", vocab.DATA_KEYS):
            pass  # the decision; the job commits (and ledgers) batch by batch, resumably
        batches, subjects, destroyed = reencrypt(self.engine, provider_for(self.home),
                                                 self.principal.id)
        return {"batches_resealed": batches, "subject_keys_rewrapped": subjects,
                "keys_destroyed": destroyed}

    def rotate_log_key(self) -> tuple[str, str, Published]:
        """New log signing key (``keys.rotate`` on the ledger key): (old vkey, new vkey,
        the transition checkpoint signed by both)."""
        from ledger.signer import parse_vkey
        from vault.transparency import log_vkeys, rotate_log_key

        old = parse_vkey(log_vkeys(self.home, include_retired=False)[0])
        with self._access("keys.rotate", vocab.LEDGER_KEY) as conn:
            ledger_store.append(conn, [EntryDraft(
                actor=self.principal.id, action=vocab.LEDGER_KEY_ROTATED, resource=vocab.LEDGER_KEY,
                details={"old_key_id": old.key_id.hex()})])
        return rotate_log_key(self.engine, self.home)

    # -- principals and policy --------------------------------------------------------------------

    def principals_add(self, name: str, role: str) -> str:
        """Add a principal; returns its token, shown once (``principals.add``)."""
        from vault import principals

        with self._access("principals.add", vocab.principal(name)) as conn:
            principals.validate_name(name)
            roles = self.policy.roles
            if role not in roles:
                raise BadInput(f"unknown role '{role}'; the policy defines: {', '.join(roles)}")
            return principals.add_principal(conn, name, role, actor=self.principal.id)

    def principals_list(self) -> list[PrincipalRecord]:
        """Principals, roles, revocations, never tokens (``principals.list``)."""
        from vault import principals

        with self._access("principals.list", vocab.PRINCIPALS) as conn:
            return principals.list_principals(conn)

    def principals_revoke(self, name: str) -> PrincipalRecord:
        """Revoke a principal: its token stops working (``principals.revoke``)."""
        from vault import principals

        with self._access("principals.revoke", vocab.principal(name)) as conn:
            if name == self.principal.id:
                raise BadInput("a principal cannot revoke itself (ask another admin)")
            return principals.revoke_principal(conn, name, actor=self.principal.id)

    def policy_show(self) -> Policy:
        """The installed policy (``policy.show``)."""
        with self._access("policy.show", vocab.POLICY):
            return self.policy

    def policy_apply(self, file: Path | bytes, source: str | None = None,
                     ) -> tuple[Policy, str | None]:
        """Install a policy file (``policy.apply``): (the policy, the previous file's SHA-256).
        ``file``: a path (read once authorised) or the file's bytes; ``source`` names it in
        errors (default "policy file": never the path, which the caller typed). The
        ``policy.applied`` entry commits only if the file is in place."""
        from policies.load import parse_policy_bytes
        from vault import principals

        target = self.home.policy_path
        with self._access("policy.apply", vocab.POLICY) as conn:
            if isinstance(file, Path):
                source = source or "policy file"
                try:
                    data = file.read_bytes()
                except OSError as exc:
                    raise BadInput(f"{source}: cannot read the file ({unreadable(exc)})") \
                        from None
            else:
                data = file
            policy = parse_policy_bytes(data, source or "policy")
            stranded = sorted({p.role for p in principals.list_principals(conn)
                               if p.active and p.role not in policy.roles})
            if stranded:
                raise BadInput(f"the new policy drops role(s) still held by active principals: "
                               f"{', '.join(stranded)} (revoke them first)")
            previous = (hashlib.sha256(target.read_bytes()).hexdigest() if target.exists()
                        else None)
            ledger_store.append(conn, [EntryDraft(
                actor=self.principal.id, action=vocab.POLICY_APPLIED, resource=vocab.POLICY,
                data_hash=policy.sha256,
                details={"previous": previous, "roles": len(policy.roles),
                         "datasets": len(policy.datasets)})])
            if previous is not None:  # kept for the policy view's diff (policy_diff)
                _keep_policy(self.home, previous, target.read_bytes())
            _install(target, data)  # last: a failure here rolls the ledger entry back
        return policy, previous

    def witnesses_add(self, url: str, vkeys: Sequence[str]) -> WitnessPolicy:
        """Add a witness that cosigns checkpoints (``policy.apply`` on the witnesses)."""
        from vault.transparency import add_witness

        with self._access("policy.apply", vocab.WITNESSES):
            return add_witness(self.home, url, list(vkeys))

    def witnesses_quorum(self, count: int) -> WitnessPolicy:
        """How many witnesses must cosign each checkpoint (``policy.apply``)."""
        from vault.transparency import WitnessPolicy, save_witness_policy, witness_policy

        with self._access("policy.apply", vocab.WITNESSES):
            policy = WitnessPolicy(witness_policy(self.home).witnesses, count)
            save_witness_policy(self.home, policy)
        return policy

    def witnesses(self) -> WitnessPolicy:
        """The configured witnesses and quorum (public configuration)."""
        from vault.transparency import witness_policy

        return witness_policy(self.home)

    # -- the ledger -----------------------------------------------------------------------------

    def annotate(self, notes: Sequence[tuple[str, str, str | None]], *,
                 many: bool = False) -> list[int]:
        """Append annotation entries (action, resource, purpose), all or none
        (``ledger.annotate``); one note is authorised on its resource, a batch on the
        ledger. Returns their seqs."""
        if not notes:
            raise BadInput("no annotations")
        actor = self.principal.id
        drafts = [EntryDraft(actor=actor, action=vocab.annotation_action(a), resource=r,
                             purpose=p) for a, r, p in notes]
        single = len(notes) == 1 and not many
        target = notes[0][1] if single else vocab.LEDGER
        purpose = notes[0][2] if single else None
        with self._access("ledger.annotate", target, purpose=purpose) as conn:
            return [int(e.seq) for e in ledger_store.append(conn, drafts)]

    @staticmethod
    def check_note(action: str, resource: str, purpose: str | None = None) -> None:
        """BadInput unless (action, resource, purpose) makes a valid annotation entry."""
        EntryDraft(actor="check", action=vocab.annotation_action(action), resource=resource,
                   purpose=purpose)

    def verify(self, report: VerifyReport, *, checkpoint: Path | None = None,
               witness_keys: Sequence[CosignatureVerifier] = (),
               quorum: int | None = None) -> VerifyReport:
        """Verify every entry and that the vault's tables are what the ledger vouches for,
        held against ``checkpoint`` (default: the newest saved one) (``ledger.verify``).
        The decision is ledgered once verification passed; ``report`` is filled as it
        goes, so a caller can show what was found when it raises."""
        from ledger.cosignature import require_quorum
        from ledger.verify import verify_against_checkpoint
        from vault.transparency import checkpoint_store, witness_policy
        from vault.verify_all import verify_everything

        self._require("ledger.verify", vocab.LEDGER)
        cps = checkpoint_store(self.home)
        opened = (cps.open(checkpoint, "the checkpoint file given to verify")
                  if checkpoint is not None else cps.latest())
        saved = opened.checkpoint if opened is not None else None
        if opened is not None and saved is not None:
            wp = witness_policy(self.home)
            keys = wp.keys() + list(witness_keys)
            need = quorum if quorum is not None else (wp.quorum if checkpoint is not None
                                                      else 0)
            cosigned = require_quorum(opened.note, keys, need)
            report.saved_size = saved.size
            # "file": the saved one in the vault home, never a path the caller typed
            report.checkpoint = {"file": None if checkpoint is not None else str(opened.path),
                                 "origin": saved.origin,
                                 "size": saved.size, "root_hash": saved.root.hex(),
                                 "witnesses": sorted(cosigned), "quorum": need}

        def against_checkpoint(verdict: LogVerdict) -> None:
            report.size, report.root_hash = verdict.size, verdict.root.hex()
            if saved is not None:
                verify_against_checkpoint(verdict, saved)

        policy_file = self.home.policy_path
        done = verify_everything(
            self.engine,
            policy_bytes=policy_file.read_bytes() if policy_file.exists() else None,
            full=report.mode == "full", prefix_sizes={saved.size} if saved is not None else (),
            after_ledger=against_checkpoint)
        # On the ledger once it passed: appending to a log that failed would fill a
        # deleted tail and destroy the evidence the next run needs.
        with self._access("ledger.verify", vocab.LEDGER):
            pass
        report.state = done.state
        report.entries_folded = done.entries_folded
        report.nodes_checked = done.nodes_checked
        return report

    def verify_for_audit(self) -> dict[str, Any]:
        """The audit flow's check (``ledger.verify``): whole log held against the newest saved
        checkpoint, then every stored batch against its ledger ``data_hash``; per-action
        counts of the entries."""
        from collections import Counter

        import orjson

        from ledger.db_verify import verify_stored
        from ledger.verify import verify_against_checkpoint
        from vault.crosscheck import verify_vault
        from vault.transparency import checkpoint_store

        latest = checkpoint_store(self.home).latest()
        previous = latest.checkpoint if latest is not None else None
        with self._access("ledger.verify", vocab.LEDGER):
            pass  # the decision is ledgered; verification reads its own snapshot
        verdict = verify_stored(self.engine,
                                prefix_sizes={previous.size} if previous else ())
        if previous is not None:
            verify_against_checkpoint(verdict, previous)
        counts: Counter[str] = Counter()

        def counting(entries: Iterator[bytes]) -> Iterator[bytes]:
            for raw in entries:
                counts[str(orjson.loads(raw).get("action", "?"))] += 1
                yield raw

        with self.engine.connect().execution_options(readonly=True) as conn, conn.begin():
            report = verify_vault(conn, counting(ledger_store.iter_entries(conn)))
        return {"size": verdict.size, "root": verdict.root.hex(), "batches": report.batches,
                "records": report.records, "actions": dict(sorted(counts.items())),
                "previous_size": previous.size if previous else None}

    def export(self) -> Iterator[list[bytes]]:
        """Every entry's canonical bytes, in chunks (``ledger.export``); the decision is
        taken when iteration starts and the read is one snapshot."""
        with self._access("ledger.export", vocab.LEDGER) as conn:
            for chunk, _ in ledger_store.iter_chunks(conn):
                yield chunk

    def prove(self, index: int, size: int | None = None) -> dict[str, Any]:
        """RFC 9162 inclusion proof document (``ledger.prove``)."""
        with self._access("ledger.prove", vocab.LEDGER) as conn:
            return ledger_store.inclusion_document(conn, index, size)

    def consistency(self, old: int, new: int | None = None) -> dict[str, Any]:
        """RFC 9162 consistency proof document (``ledger.consistency``)."""
        with self._access("ledger.consistency", vocab.LEDGER) as conn:
            return ledger_store.consistency_document(conn, old, new)

    def checkpoint(self, *, record: bool = False) -> Published:
        """The newest checkpoint of the current tree: signed only if it extends the newest
        saved one, cosigned, saved in the one store (``vault.transparency``). Public: no
        principal, no entry; ``record`` (the audit flow) ledgers a ``ledger.checkpoint``
        decision first, so the checkpoint covers it."""
        from vault.transparency import publish_checkpoint

        if record:
            with self._access("ledger.checkpoint", vocab.LEDGER):
                pass
        return publish_checkpoint(self.engine, self.home)

    def saved_checkpoint(self) -> str | None:
        """The newest saved checkpoint note (public), without signing anything."""
        from vault.transparency import checkpoint_store

        latest = checkpoint_store(self.home).latest()
        return latest.note if latest is not None else None

    def denials_repeated(self, count: int, *, route: str, request: str, error: str,
                         window_seconds: int) -> int:
        """Ledger, as one entry, ``count`` repeats of a request this principal was denied
        (``policy.denied.repeated``): the HTTP API answered them 429 instead of deciding
        and ledgering each (``flows.api.limits``). ``route`` is the API's route template,
        ``request`` a fingerprint of the exact request (never the request itself). No
        authorisation: like a denial, it is a record about the principal, not an act."""
        if count < 1:
            raise BadInput("a count of repeated denials is at least 1")
        with self.engine.begin() as conn:
            [entry] = ledger_store.append(conn, [EntryDraft(
                actor=self.principal.id, action=vocab.POLICY_DENIED_REPEATED,
                resource=vocab.principal(self.principal.id),
                details={"count": count, "window_seconds": window_seconds, "route": route,
                         "request": request, "error": error, "role": self.principal.role,
                         "reason": f"{count} identical repeats answered 429, not decided"})])
        return int(entry.seq)

    def pubkey(self, *, include_retired: bool = False) -> list[str]:
        """The log's verifier key first, then (``include_retired``) retired ones. Public."""
        from vault.transparency import log_vkeys

        return log_vkeys(self.home, include_retired=include_retired)

    def origin(self) -> str:
        return self.home.identity()

    def receipts(self, seqs: list[int]) -> tuple[list[str], Published]:
        """tlog-proof receipts of committed entries against one published checkpoint."""
        from vault.transparency import receipts_for

        return receipts_for(self.engine, self.home, seqs)

    def record_export(self, dataset: str, release_seq: int | None, path: Path) -> int:
        """Ledger the exact bytes of a released result written to ``path`` (the release's
        own export, by its analyst: no new access)."""
        from vault.transparency import record_export

        return record_export(self.engine, self.principal.id, dataset, release_seq, path)

    # -- audit ---------------------------------------------------------------------------------

    def audit(self, *, since: str | None = None) -> AuditOutcome:
        """Verify ledger and vault and summarise who did what (``audit.report``), with the
        newest saved checkpoint (the same store as ``verify``)."""
        from vault.audit import audit_vault, summarize

        with self._access("audit.report", vocab.LEDGER):
            pass  # read-only: the decision is the entry
        from vault.transparency import checkpoint_store

        latest = checkpoint_store(self.home).latest()
        verdict = audit_vault(self.engine, latest.checkpoint if latest is not None else None)
        with self.engine.connect() as conn:
            summary = summarize(ledger_store.iter_entries(conn), since=since)
        return AuditOutcome(verdict, summary, self.origin(), self.pubkey()[0],
                            self.saved_checkpoint())

    # -- views of the web workbench (flows/web): one decision each, like the CLI's ------------

    def whoami(self) -> dict[str, Any]:
        """The principal and the operations its role is granted (pure: nothing ledgered)."""
        p = self.principal
        granted = sorted(op for op in vocab.OPERATIONS
                         if any(g.role in (p.role, "*") for g in self.policy.roles_for(op)))
        return {"principal": p.id, "role": p.role, "operations": granted}

    def catalog(self) -> list[dict[str, Any]]:
        """The vault's datasets with what the policy lets analysts do on each: group-by
        columns (public keys, or DP key release), measures and their bounds (``policy.show``)."""
        from sqlalchemy import select

        from vault.store import ColumnLayout
        from vault.tables import T_DATASET

        with self._access("policy.show", vocab.POLICY) as conn:
            found = sorted((str(n), str(c)) for n, c in conn.execute(
                select(T_DATASET.c.name, T_DATASET.c.columns_json)))
        policy = self.policy
        out = []
        for name, layout in found:
            stored = {c.name for c in ColumnLayout.from_json(layout).columns}
            rules = {c: r for c, r in policy.columns_for(name).items() if c in stored}
            out.append({
                "dataset": name,
                "group_by": [{"column": c, "keys": None if r.keys is None else list(r.keys)}
                             for c, r in sorted(rules.items()) if r.groupable],
                "measures": ["count"] + [f"{kind}:{c}" for c, r in sorted(rules.items())
                                         if r.measurable for kind in ("sum", "mean")],
                "bounds": {c: [r.lower, r.upper] for c, r in sorted(rules.items())
                           if r.measurable},
                "budget_per_analyst": str(policy.budget_default(name)),
            })
        return out

    def ledger_page(self, flt: EntryFilter, *, before: int | None = None,
                    limit: int = 50) -> dict[str, Any]:
        """One page of entries, newest first, filtered (``ledger.export``): keyset paging
        over the derived index (``vault.ledger_view``); the entries are the ledger's bytes."""
        import orjson

        from vault import ledger_view

        with self._access("ledger.export", vocab.LEDGER):
            pass  # read-only: the decision is the entry
        size = ledger_view.catch_up(self.engine, self.home.root)
        seqs, total, nxt = ledger_view.page(self.home.root, flt, before=before, limit=limit)
        capped = bool(flt.to_json()) and total > ledger_view.COUNT_CAP
        return {"size": size, "total": total, "total_capped": capped,
                "next_before": nxt, "filter": flt.to_json(),
                "entries": [orjson.loads(r) for r in ledger_view.read_entries(self.engine, seqs)]}

    def ledger_export_filtered(self, flt: EntryFilter, *,
                               limit: int = 10_000) -> Iterator[tuple[bytes, dict[str, Any]]]:
        """The filtered entries, oldest first, each with its inclusion proof against one
        tree size (``ledger.export``); at most ``limit``. The decision is taken when
        iteration starts; proofs come from one snapshot."""
        from vault import ledger_view

        with self._access("ledger.export", vocab.LEDGER):
            pass
        ledger_view.catch_up(self.engine, self.home.root)
        seqs = ledger_view.all_seqs(self.home.root, flt, limit=limit)
        with self.engine.connect().execution_options(readonly=True) as conn, conn.begin():
            size = ledger_store.size(conn)
            for start in range(0, len(seqs), 500):
                part = seqs[start:start + 500]
                raws = ledger_view.read_entries(self.engine, part)
                for seq, raw in zip(part, raws, strict=True):
                    yield raw, ledger_store.inclusion_document(conn, seq, size)

    def ledger_activity(self, flt: EntryFilter) -> dict[str, list[dict[str, Any]]]:
        """Entries per day by principal and by action, and epsilon charged over time by
        analyst and dataset, of the filtered entries (``audit.report``: one decision)."""
        from vault import ledger_view

        with self._access("audit.report", vocab.LEDGER):
            pass
        ledger_view.catch_up(self.engine, self.home.root)
        root = self.home.root
        return {"by_action": ledger_view.timeline(root, flt, by="action"),
                "by_actor": ledger_view.timeline(root, flt, by="actor"),
                "spend": ledger_view.spend(root, flt)}

    def my_releases(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """The principal's own releases, newest first, from the ledger (``budget.show`` on
        its own budgets: what it spent, where)."""
        import orjson

        from vault import ledger_view

        with self._access("budget.show", vocab.budget(self.principal.id)):
            pass
        ledger_view.catch_up(self.engine, self.home.root)
        flt = ledger_view.EntryFilter(principal=self.principal.id, section="releases")
        seqs, _, _ = ledger_view.page(self.home.root, flt, before=None, limit=limit)
        return [orjson.loads(r) for r in ledger_view.read_entries(self.engine, seqs)]

    def ledger_health(self, *, refresh: bool = False) -> dict[str, Any]:
        """Ledger size, the latest signed checkpoint and the verdict of a verification of
        the stored log held against it (``ledger.verify``). The verdict is kept per vault
        and re-run on ``refresh`` (or when there is none): a page view never re-verifies
        a million entries; the verdict names the checkpoint size it was held against and
        the size it verified, so a newer checkpoint or a longer log shows. A failed check
        appends nothing (see ``verify``)."""
        import base64
        import time

        from ledger.db_verify import verify_stored
        from ledger.errors import VerificationFailed
        from ledger.verify import verify_against_checkpoint
        from vault.transparency import checkpoint_store

        self._require("ledger.verify", vocab.LEDGER)
        latest = checkpoint_store(self.home).latest()
        saved = latest.checkpoint if latest is not None else None
        key = (str(self.home.root), self.home.db_url)
        found = _VERDICTS.get(key)
        if refresh or found is None:
            t0 = time.perf_counter()
            found = {"name": "verification of the stored ledger against the latest signed "
                             "checkpoint", "checkpoint_size": saved.size if saved else None}
            try:
                verdict = verify_stored(self.engine,
                                        prefix_sizes={saved.size} if saved else ())
                if saved is not None:
                    verify_against_checkpoint(verdict, saved)
                found.update(ok=True, problem=None, verified_size=verdict.size,
                             root_hex=verdict.root.hex(),
                             root_base64=base64.b64encode(verdict.root).decode())
            except VerificationFailed as exc:
                found.update(ok=False, problem=exc.diagnostics().splitlines()[0],
                             verified_size=None, root_hex=None, root_base64=None)
            found.update(seconds=round(time.perf_counter() - t0, 3),
                         checked_at=_now_text())
            _VERDICTS[key] = found
        if found["ok"]:
            with self._access("ledger.verify", vocab.LEDGER):
                pass  # never appended to a log found broken
        with self.engine.connect() as conn:
            size = ledger_store.size(conn)
        checkpoint = None if saved is None or latest is None else {
            "name": "latest signed checkpoint", "origin": saved.origin, "size": saved.size,
            "root_hex": saved.root.hex(), "root_base64": base64.b64encode(saved.root).decode(),
            "note": latest.note}
        return {"size": size, "checkpoint": checkpoint, "verification": found}

    def policy_diff(self) -> dict[str, Any]:
        """The installed policy file, its SHA-256, and a unified diff against the policy it
        replaced (kept by ``policy_apply`` under ``policy_history/``) (``policy.show``)."""
        import difflib

        with self._access("policy.show", vocab.POLICY):
            pass
        target = self.home.policy_path
        text = target.read_text("utf-8") if target.exists() else ""
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        kept = sorted(_policy_history(self.home).glob("*.toml"),
                      key=lambda p: p.stat().st_mtime)
        previous = next((p for p in reversed(kept) if p.stem != sha), None)
        old = previous.read_text("utf-8") if previous is not None else None
        diff = None if old is None else "".join(difflib.unified_diff(
            old.splitlines(keepends=True), text.splitlines(keepends=True),
            fromfile=f"previous {previous.stem[:12] if previous else ''}",
            tofile=f"applied {sha[:12]}"))
        return {"sha256": sha, "text": text,
                "previous_sha256": previous.stem if previous is not None else None,
                "diff": diff, "summary": self.policy.summary()}

    # -- helpers for shells ----------------------------------------------------------------------

    def dataset_columns(self, dataset: str) -> list[str] | None:
        """Column names stored for ``dataset`` (headers only); None if unknown."""
        from sqlalchemy import select

        from vault.store import T_DATASET, ColumnLayout

        with self.engine.connect() as conn:
            conn.execution_options(readonly=True)
            raw = conn.execute(select(T_DATASET.c.columns_json)
                               .where(T_DATASET.c.name == dataset)).scalar()
        return None if raw is None else [c.name for c in ColumnLayout.from_json(str(raw)).columns]

    def column_rules(self, dataset: str) -> dict[str, Any]:
        """The installed policy's column rules for ``dataset`` (empty if none)."""
        try:
            return dict(self.policy.columns_for(dataset))
        except KeyError:
            return {}


def classify_locally(path: Path, *, sample_rows: int = 300) -> Classified:
    """``classify`` with no vault: a local dry run under the default policy (no access)."""
    from policies.load import default_policy_text, parse_policy

    info, classes = _scan_and_classify(path, sample_rows)
    return _classified(info, classes, parse_policy(default_policy_text(), "default policy"))


def _scan_and_classify(path: Path, sample_rows: int) -> tuple[Any, list[ColumnClass]]:
    from vault.pii import classify_frame
    from vault.pii.limits import limits_from_env
    from vault.pii.readers import scan_source

    info = scan_source(path, limits=limits_from_env())
    return info, classify_frame(info.sample, sample_rows=sample_rows)


def _classified(info: Any, classes: list[ColumnClass], policy: Policy) -> Classified:
    from vault.pii.classifier import apply_policy

    return Classified(int(info.rows), len(info.columns),
                      apply_policy(classes, policy.pii_handling, policy.lookup_entities))


def _entry_seq(conn: Connection, start: int, action: str) -> int | None:
    """The seq of the first entry with ``action`` appended from ``start`` in this transaction."""
    import orjson

    for offset, raw in enumerate(ledger_store.iter_entries(conn, start)):
        if orjson.loads(raw).get("action") == action:
            return start + offset
    return None


_VERDICTS: dict[tuple[str, str], dict[str, Any]] = {}  # ledger_health's, per vault


def _now_text() -> str:
    from ledger.entry import rfc3339_utc

    return rfc3339_utc()


def _policy_history(home: VaultHome) -> Path:
    return home.root / "policy_history"


def _keep_policy(home: VaultHome, sha: str, data: bytes) -> None:
    folder = _policy_history(home)
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{sha}.toml"
    if not path.exists():
        _install(path, data)


def _install(target: Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)


