"""Re-derive the vault's state from the ledger and compare it with the database.

What grants power or holds data is vouched for by ledger entries written in the
same transaction as the change (``vault.manifest`` defines the digests). This
module folds the (already verified) entries into the state they vouch for and
compares it, table by table, with the rows stored now; the first difference
raises :class:`StateMismatch` naming the table and the row (and the ledger entry
that vouched for it last).

=====================  ==============================================================
table                  re-derived from
=====================  ==============================================================
principals             ``principal.added`` (role, token hash), ``principal.revoked``
policy file            the last ``policy.applied`` (its ``data_hash``)
budget_accounts        spent = sum of ``epsilon_charged`` / ``delta_charged`` of every
                       entry carrying one, per (analyst, dataset); totals = the last
                       ``budget.set``'s or charge's ``epsilon_total`` / ``delta_total``
budget_datasets        spent = sum of the charges on the dataset
budget_analysts        vault-wide spend (epsilon, delta) = sum of the analyst's charges
vault_data_keys        ``key_rows`` digests (``keys.created``/``rotated``/``retired``)
vault_datasets,        ``vault.source.registered`` (``dataset_row``, ``source_row``)
vault_sources
vault_batches          ``vault.ingest.batch`` (dataset, source, index, rows),
                       ``data_hash`` of the newest ingest/reseal entry,
                       ``live_masks`` digests (ingest, erase), ``row_subjects``
                       digest (ingest; migration 0011), ``record_fields`` digest
                       (ingest; migration 0015)
vault_subjects         erased = exactly the ``vault.erase`` subjects; full mode: the
vault_blind_index      ``subject_buckets`` digests (ingest, erase, key rotation), of the
                       digest version each entry names (v2 column-wise; v1 before)
vault_suppressed       ``suppressed`` digest of the last erasure per dataset
principal_reveals      one row per ``policy.allowed`` reveal, per principal
vault_batch_columns,   full mode: every batch's ciphertext re-hashed against its
vault_records          ``data_hash`` (``vault.crosscheck``); no record under a batch
                       the ledger does not vouch for
=====================  ==============================================================

Fast mode (routine audits) skips the two full-mode rows: it reads no ciphertext
and no per-subject rows beyond the erased ones.

A subject bucket that differs is drilled into with the locator committed beside its
digests (``vault.manifest.locate``): the message names the subject row
(``vault_subjects`` id) or the subject whose blind-index rows differ
(``vault_blind_index`` "subject N"); only when several subjects of one bucket differ,
or for entries written before locators, the bucket. The expensive full-mode reads are
``state_tasks``, which ``vault.verify_all`` shares between two processes; adding a
table means a compare function here, and a task if it is big.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select

from vault import manifest
from vault.errors import StateMismatch, VaultMismatch
from vault.manifest import (
    T_ACCOUNTS,
    T_ANALYSTS,
    T_BATCH,
    T_DATASET,
    T_DATASETS,
    T_SOURCE,
    T_SUBJECT,
    T_SUPPRESSED,
)
from vault.principals import T_PRINCIPALS, T_REVEALS
from vault.vocab import VOUCHING_ACTIONS

__all__ = ["Expected", "StateReport", "Task", "apply_entries", "batch_rehash", "bucket_versions",
           "fold", "relevant", "run_task", "state_tasks", "verify_database", "verify_state"]

_RELEVANT = re.compile(
    rb'"action":"(?:principal\.|policy\.applied"|budget\.set"|keys\.|vault\.'
    rb'|link\.(?:build|cut)")'
    rb'|"epsilon_charged"|"op":"reveal"')
_VOUCHING = VOUCHING_ACTIONS
NANO, ATTO = 10**9, 10**18
"""``vault.budget``'s units (epsilon in nano, delta in atto; a test holds them equal):
verification does not import the budget writer and its SQL dialects."""


@dataclass
class Expected:
    """The state the ledger vouches for; every value carries the seq that vouched for it."""

    principals: dict[str, dict[str, Any]] = field(default_factory=dict)
    policy: tuple[str, int] | None = None
    spent: dict[tuple[str, str], Fraction] = field(default_factory=dict)
    delta_spent: dict[tuple[str, str], Fraction] = field(default_factory=dict)
    totals: dict[tuple[str, str], tuple[Fraction, int]] = field(default_factory=dict)
    delta_totals: dict[tuple[str, str], tuple[Fraction, int]] = field(default_factory=dict)
    charge_seq: dict[tuple[str, str], int] = field(default_factory=dict)
    keys: dict[int, tuple[str, int]] = field(default_factory=dict)
    datasets: dict[int, tuple[str, int]] = field(default_factory=dict)
    sources: dict[int, tuple[str, int]] = field(default_factory=dict)
    batches: dict[int, dict[str, Any]] = field(default_factory=dict)
    data_hash: dict[int, tuple[str, int]] = field(default_factory=dict)
    live: dict[int, tuple[str, int]] = field(default_factory=dict)
    buckets: dict[int, tuple[str, str, int, str | None, int]] = field(default_factory=dict)
    """bucket -> (subjects digest, blind-index digest, seq, locator, digest version)"""
    erased: dict[int, int] = field(default_factory=dict)
    suppressed: dict[int, tuple[str, int]] = field(default_factory=dict)
    reveals: Counter[str] = field(default_factory=Counter)
    links: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> link hash
    link_layouts: dict[str, int] = field(default_factory=dict)  # name -> layout it names
    entries: int = 0


def _amount(text: object) -> Fraction:
    return Fraction(str(text))


def _no_overspend(exp: Expected, who: tuple[str, str], seq: int) -> None:
    """The log alone proves the budget held: after each charge, what the analyst has spent
    on the dataset is within the total the log set for it (by ``budget.set`` or carried by
    the charge). A log that shows an overspend fails verification whatever the tables say."""
    total = exp.totals.get(who)
    if total is not None and exp.spent[who] > total[0]:
        raise StateMismatch("ledger_entries", str(seq), "this charge takes the analyst's spend "
                            "on the dataset past the epsilon budget on the log", seq=seq)
    delta_total = exp.delta_totals.get(who)
    if delta_total is not None and exp.delta_spent.get(who, Fraction(0)) > delta_total[0]:
        raise StateMismatch("ledger_entries", str(seq), "this charge takes the analyst's spend "
                            "on the dataset past the delta budget on the log", seq=seq)


def _apply(exp: Expected, e: dict[str, Any]) -> None:
    seq = int(e["seq"])
    action = e.get("action")
    d = e.get("details")
    if not isinstance(d, dict):
        return  # annotations carry no details: they vouch for nothing
    if "epsilon_charged" in d:
        who = (str(d.get("analyst", e.get("actor"))), str(d.get("dataset")))
        exp.spent[who] = exp.spent.get(who, Fraction(0)) + _amount(d["epsilon_charged"])
        if "delta_charged" in d:
            exp.delta_spent[who] = exp.delta_spent.get(who, Fraction(0)) + _amount(
                d["delta_charged"])
        if "epsilon_total" in d:
            exp.totals[who] = (_amount(d["epsilon_total"]), seq)
        if "delta_total" in d:
            exp.delta_totals[who] = (_amount(d["delta_total"]), seq)
        exp.charge_seq[who] = seq
        _no_overspend(exp, who, seq)
    if action == "policy.allowed" and d.get("op") == "reveal":
        exp.reveals[str(e.get("actor"))] += 1
    elif action == "principal.added":
        exp.principals[str(d["name"])] = {"role": d["role"], "token_hash": d["token_hash"],
                                          "revoked": False, "seq": seq}
    elif action == "principal.revoked" and str(d.get("name")) in exp.principals:
        exp.principals[str(d["name"])].update(revoked=True, seq=seq)
    elif action == "policy.applied" and e.get("data_hash"):
        exp.policy = (str(e["data_hash"]), seq)
    elif action == "budget.set":
        who = (str(d["analyst"]), str(d["dataset"]))
        exp.totals[who] = (_amount(d["epsilon_total"]), seq)
        if "delta_total" in d:
            exp.delta_totals[who] = (_amount(d["delta_total"]), seq)
    elif action == "vault.source.registered":
        exp.datasets[int(d["dataset_id"])] = (str(d["dataset_row"]), seq)
        exp.sources[int(d["source"])] = (str(d["source_row"]), seq)
    elif action == "vault.erase":
        for s in d.get("subjects", []):
            exp.erased[int(s)] = seq
        if "suppressed" in d:
            exp.suppressed[int(d["dataset_id"])] = (str(d["suppressed"]), seq)
    if action in ("link.build", "link.cut") and e.get("data_hash"):  # vault.linkage
        exp.links[str(d["link"])] = (str(e["data_hash"]), seq)
        exp.link_layouts[str(d["link"])] = int(d.get("layout", 1))
    if action in _VOUCHING and e.get("data_hash"):
        exp.data_hash[int(d["batch"])] = (str(e["data_hash"]), seq)
        if action == "vault.ingest.batch":
            exp.batches[int(d["batch"])] = {
                "dataset": d.get("dataset"), "source": d.get("source"),
                "batch_index": d.get("batch_index"),
                "rows": int(d.get("added", 0)) + int(d.get("updated", 0)), "seq": seq,
                "row_subjects": d.get("row_subjects"), "record_fields": d.get("record_fields")}
    for key_id, digest in d.get("key_rows", []):
        exp.keys[int(key_id)] = (str(digest), seq)
    for batch_id, digest in d.get("live_masks", []):
        exp.live[int(batch_id)] = (str(digest), seq)
    for item in d.get("subject_buckets", []):  # [bucket, subjects, blind(, locator(, v))]
        exp.buckets[int(item[0])] = (str(item[1]), str(item[2]), seq,
                                     str(item[3]) if len(item) > 3 else None,
                                     int(item[4]) if len(item) > 4 else 1)


def relevant(chunk: list[bytes]) -> list[bytes]:
    """The entries of ``chunk`` that can vouch for state (one regular-expression scan)."""
    blob = b"\n".join(chunk)
    out: list[bytes] = []
    last_start = -1
    for m in _RELEVANT.finditer(blob):
        start = blob.rfind(b"\n", 0, m.start()) + 1
        if start == last_start:
            continue
        last_start = start
        end = blob.find(b"\n", m.end())
        out.append(blob[start:end if end >= 0 else len(blob)])
    return out


def apply_entries(exp: Expected, entries: Iterable[bytes]) -> None:
    """Fold entries (in log order; others than ``relevant`` ones change nothing)."""
    for raw in entries:
        _apply(exp, orjson.loads(raw))


def fold(chunks: Iterable[list[bytes]]) -> Expected:
    """The vouched-for state from the entries' canonical bytes (in order, from entry 0).

    Only entries that can vouch for state are parsed (``relevant``).
    """
    exp = Expected()
    for chunk in chunks:
        exp.entries += len(chunk)
        apply_entries(exp, relevant(chunk))
    return exp


# -- comparing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateReport:
    principals: int
    budgets: int
    data_keys: int
    batches: int
    erased_subjects: int
    subject_buckets: int  # 0 in fast mode
    records: int  # ciphertext re-hashed; 0 in fast mode
    full: bool

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _seq(pair: tuple[Any, ...] | None) -> int | None:
    return None if pair is None else int(pair[-1])


def _principals(conn: Connection, exp: Expected) -> int:
    rows = conn.execute(select(T_PRINCIPALS.c.id, T_PRINCIPALS.c.role, T_PRINCIPALS.c.token_hash,
                               T_PRINCIPALS.c.revoked).order_by(T_PRINCIPALS.c.id)).all()
    seen = set()
    for r in rows:
        name = str(r.id)
        seen.add(name)
        want = exp.principals.get(name)
        if want is None:
            raise StateMismatch("principals", name, "no principal.added entry on the ledger")
        seq = int(want["seq"])
        if r.role != want["role"]:
            raise StateMismatch("principals", name, "role differs from the ledger", seq=seq)
        if r.token_hash != want["token_hash"]:
            raise StateMismatch("principals", name, "token hash differs from the ledger", seq=seq)
        if (r.revoked is not None) != want["revoked"]:
            state = "revoked" if want["revoked"] else "active"
            raise StateMismatch("principals", name, f"should be {state}", seq=seq)
    for name in sorted(set(exp.principals) - seen):
        raise StateMismatch("principals", name, "on the ledger but missing from the table",
                            seq=int(exp.principals[name]["seq"]))
    return len(rows)


def _policy(policy_bytes: bytes | None, exp: Expected) -> None:
    if policy_bytes is None:
        return
    actual = hashlib.sha256(policy_bytes).hexdigest()
    if exp.policy is None:
        raise StateMismatch("policy", "policy.toml", "no policy.applied entry on the ledger")
    if actual != exp.policy[0]:
        raise StateMismatch("policy", "policy.toml", "the installed policy file is not the "
                            "one last applied", seq=exp.policy[1])


def _budgets(conn: Connection, exp: Expected) -> int:
    rows = conn.execute(select(T_ACCOUNTS.c.analyst, T_ACCOUNTS.c.dataset,
                               T_ACCOUNTS.c.total_nano, T_ACCOUNTS.c.spent_nano,
                               T_ACCOUNTS.c.delta_total_atto, T_ACCOUNTS.c.delta_spent_atto)
                        .order_by(T_ACCOUNTS.c.analyst, T_ACCOUNTS.c.dataset)).all()
    seen = set()
    for r in rows:
        who = (str(r.analyst), str(r.dataset))
        seen.add(who)
        name = f"{who[0]}/{who[1]}"
        spent = exp.spent.get(who, Fraction(0))
        if Fraction(int(r.spent_nano), NANO) != spent:
            raise StateMismatch("budget_accounts", name, "spent differs from the sum of the "
                                "charges on the ledger", seq=exp.charge_seq.get(who))
        total = exp.totals.get(who)
        if total is None:
            raise StateMismatch("budget_accounts", name, "no budget.set or charge on the "
                                "ledger vouches for its total")
        if Fraction(int(r.total_nano), NANO) != total[0]:
            raise StateMismatch("budget_accounts", name, "total differs from the ledger",
                                seq=total[1])
        if Fraction(int(r.delta_spent_atto), ATTO) != exp.delta_spent.get(who, Fraction(0)):
            raise StateMismatch("budget_accounts", name, "delta spent differs from the sum of "
                                "the charges on the ledger", seq=exp.charge_seq.get(who))
        delta_total = exp.delta_totals.get(who)
        if delta_total is not None and Fraction(int(r.delta_total_atto), ATTO) != delta_total[0]:
            raise StateMismatch("budget_accounts", name, "delta total differs from the ledger",
                                seq=delta_total[1])
    for who in sorted(set(exp.spent) - seen):
        raise StateMismatch("budget_accounts", f"{who[0]}/{who[1]}", "charged on the ledger "
                            "but missing from the table", seq=exp.charge_seq.get(who))
    per_dataset: dict[str, Fraction] = {}
    for (_, dataset), amount in exp.spent.items():
        per_dataset[dataset] = per_dataset.get(dataset, Fraction(0)) + amount
    seen_ds = set()
    for d in conn.execute(select(T_DATASETS.c.dataset, T_DATASETS.c.spent_nano)
                          .order_by(T_DATASETS.c.dataset)):
        seen_ds.add(str(d.dataset))
        if Fraction(int(d.spent_nano), NANO) != per_dataset.get(str(d.dataset), Fraction(0)):
            raise StateMismatch("budget_datasets", str(d.dataset), "spent differs from the sum "
                                "of the charges on the ledger")
    for dataset in sorted(k for k, v in per_dataset.items() if v and k not in seen_ds):
        raise StateMismatch("budget_datasets", dataset, "charged on the ledger but missing "
                            "from the table")
    per_analyst: dict[str, tuple[Fraction, Fraction]] = {}
    for who, amount in exp.spent.items():
        eps, dlt = per_analyst.get(who[0], (Fraction(0), Fraction(0)))
        per_analyst[who[0]] = (eps + amount, dlt + exp.delta_spent.get(who, Fraction(0)))
    seen_an = set()
    for a in conn.execute(select(T_ANALYSTS.c.analyst, T_ANALYSTS.c.spent_nano,
                                 T_ANALYSTS.c.delta_spent_atto).order_by(T_ANALYSTS.c.analyst)):
        seen_an.add(str(a.analyst))
        eps, dlt = per_analyst.get(str(a.analyst), (Fraction(0), Fraction(0)))
        if (Fraction(int(a.spent_nano), NANO), Fraction(int(a.delta_spent_atto), ATTO)) \
                != (eps, dlt):
            raise StateMismatch("budget_analysts", str(a.analyst), "vault-wide spend differs "
                                "from the sum of the charges on the ledger")
    for analyst in sorted(k for k, v in per_analyst.items() if v[0] and k not in seen_an):
        raise StateMismatch("budget_analysts", analyst, "charged on the ledger but missing "
                            "from the table")
    return len(rows)


def _pairs(table: str, actual: dict[int, str], want: dict[int, tuple[str, int]],
           what: str) -> None:
    for row_id in sorted(set(actual) | set(want)):
        have, vouched = actual.get(row_id), want.get(row_id)
        if vouched is None:
            raise StateMismatch(table, str(row_id), f"no ledger entry vouches for {what}")
        if have is None:
            raise StateMismatch(table, str(row_id), "on the ledger but missing from the table",
                                seq=vouched[1])
        if have != vouched[0]:
            raise StateMismatch(table, str(row_id), f"{what} differs from the ledger",
                                seq=vouched[1])


def _keys(conn: Connection, exp: Expected) -> int:
    actual = {int(i): d for i, d in manifest.key_rows(conn)}
    _pairs("vault_data_keys", actual, exp.keys, "this data key (wrapped bytes, state, version)")
    return len(actual)


def _datasets_and_sources(conn: Connection, exp: Expected) -> None:
    ds = {int(r.id): manifest.dataset_row_digest(r) for r in conn.execute(
        select(T_DATASET.c.id, T_DATASET.c.name, T_DATASET.c.schema_hash,
               T_DATASET.c.columns_json))}
    _pairs("vault_datasets", ds, exp.datasets, "this dataset row")
    src = {int(r.id): manifest.source_row_digest(r) for r in conn.execute(
        select(T_SOURCE.c.id, T_SOURCE.c.dataset_id, T_SOURCE.c.content_hash, T_SOURCE.c.rows,
               T_SOURCE.c.batches))}
    _pairs("vault_sources", src, exp.sources, "this source row")


def _batches(conn: Connection, exp: Expected) -> int:
    names = {int(r.id): str(r.name) for r in conn.execute(select(T_DATASET.c.id,
                                                                 T_DATASET.c.name))}
    columns = manifest.batch_columns(conn)
    with_subjects = "row_subjects" in columns  # migration 0011
    with_fields = "record_fields" in columns  # migration 0015
    rows = conn.execute(select(T_BATCH.c.id, T_BATCH.c.dataset_id, T_BATCH.c.source_id,
                               T_BATCH.c.batch_index, T_BATCH.c.rows, T_BATCH.c.data_hash,
                               T_BATCH.c.live_mask,
                               *([T_BATCH.c.row_subjects] if with_subjects else []),
                               *([T_BATCH.c.record_fields] if with_fields else []))
                        .order_by(T_BATCH.c.id)).all()
    seen = set()
    for r in rows:
        bid = int(r.id)
        seen.add(bid)
        meta = exp.batches.get(bid)
        if meta is None:
            raise StateMismatch("vault_batches", str(bid), "no vault.ingest.batch entry")
        seq = int(meta["seq"])
        if (names.get(int(r.dataset_id)) != meta["dataset"] or int(r.source_id) != meta["source"]
                or int(r.batch_index) != meta["batch_index"] or int(r.rows) != meta["rows"]):
            raise StateMismatch("vault_batches", str(bid), "dataset, source, index or row "
                                "count differs from its ingest entry", seq=seq)
        vouched = exp.data_hash[bid]
        if r.data_hash != vouched[0]:
            raise StateMismatch("vault_batches", str(bid), "data_hash column differs from the "
                                "ledger", seq=vouched[1])
        live = exp.live.get(bid)
        if live is None or manifest.live_digest(int(r.rows), bytes(r.live_mask)) != live[0]:
            raise StateMismatch("vault_batches", str(bid), "live/erased row bits (live_mask) "
                                "differ from the ledger", seq=_seq(live))
        # the row -> subject column: absent (NULL) exactly where the ingest entry names no
        # digest (batches stored before migration 0011), else equal to that digest
        want = meta.get("row_subjects")
        got = r.row_subjects if with_subjects else None
        if (want is None) != (got is None) or (got is not None and manifest.row_subjects_digest(
                int(r.rows), bytes(got)) != want):
            raise StateMismatch("vault_batches", str(bid), "row -> subject column "
                                "(row_subjects) differs from the ledger", seq=seq)
        # the records' field names: NULL where the ingest entry has no digest of them
        # (batches stored before migration 0015, or without records), else its digest
        want = meta.get("record_fields")
        got = r.record_fields if with_fields else None
        if (want is None) != (got is None) or (
                got is not None and manifest.record_fields_digest(bid, str(got)) != want):
            raise StateMismatch("vault_batches", str(bid), "the records' field names "
                                "(record_fields) differ from the ledger", seq=seq)
    for bid in sorted(set(exp.batches) - seen):
        raise StateMismatch("vault_batches", str(bid), "on the ledger but missing from the "
                            "table", seq=int(exp.batches[bid]["seq"]))
    return len(rows)


def _erased(conn: Connection, exp: Expected) -> int:
    """Erased (key shredded, marked) = exactly the subjects of the ``vault.erase`` entries."""
    rows = conn.execute(select(T_SUBJECT.c.id, T_SUBJECT.c.erased_at.is_not(None),
                               T_SUBJECT.c.wrapped_key.is_(None))
                        .where((T_SUBJECT.c.erased_at.is_not(None))
                               | (T_SUBJECT.c.wrapped_key.is_(None)))).all()
    found = {int(r[0]): (bool(r[1]), bool(r[2])) for r in rows}
    for sid in sorted(found):
        if sid not in exp.erased:
            raise StateMismatch("vault_subjects", str(sid), "erased or key-shredded without a "
                                "vault.erase entry")
        if not all(found[sid]):
            raise StateMismatch("vault_subjects", str(sid), "erased on the ledger but its key "
                                "or erasure mark is back", seq=exp.erased[sid])
    missing = sorted(set(exp.erased) - set(found))
    for lo in range(0, len(missing), 10_000):  # erased subjects whose rows look live again
        back = conn.execute(select(T_SUBJECT.c.id).where(
            T_SUBJECT.c.id.in_(missing[lo:lo + 10_000])).order_by(T_SUBJECT.c.id)).first()
        if back is not None:
            raise StateMismatch("vault_subjects", str(back[0]), "erased on the ledger but its "
                                "key and erasure mark are back", seq=exp.erased[int(back[0])])
    return len(exp.erased)


def _suppressed(conn: Connection, exp: Expected) -> None:
    ids = {int(i) for i in conn.execute(select(T_SUPPRESSED.c.dataset_id).distinct()).scalars()}
    actual = {ds: manifest.suppressed_digest(conn, ds) for ds in ids | set(exp.suppressed)}
    _pairs("vault_suppressed", {k: v for k, v in actual.items()
                                if k in ids or k in exp.suppressed}, exp.suppressed,
           "this dataset's suppression list")


def _reveals(conn: Connection, exp: Expected) -> None:
    counts = Counter({str(p): int(n) for p, n in conn.exec_driver_sql(
        "SELECT principal_id, count(*) FROM principal_reveals GROUP BY principal_id")})
    for who in sorted(set(counts) | set(exp.reveals)):
        if counts[who] != exp.reveals[who]:
            raise StateMismatch(T_REVEALS.name, who, f"{counts[who]} reveal rows but "
                                f"{exp.reveals[who]} allowed reveals on the ledger")


def _buckets(
    conn: Connection, exp: Expected, actual: Mapping[int, tuple[str, str, int]] | None = None
) -> int:
    """Every subject bucket's digests (``actual``: (subjects, blind, version) already
    computed, quick) against the ledger; a bucket whose last entry names another version
    is digested again in that one, and a quick digest that differs again in order."""
    n = manifest.bucket_count(conn)
    with manifest.bucket_reads(conn):
        _check_buckets(conn, exp, n, actual)
    return n


def _check_buckets(conn: Connection, exp: Expected, n: int,
                   actual: Mapping[int, tuple[str, str, int]] | None) -> None:
    for b in sorted(set(range(n)) | set(exp.buckets)):
        want = exp.buckets.get(b)
        lo, hi = b * manifest.BUCKET, (b + 1) * manifest.BUCKET - 1
        if want is None:
            raise StateMismatch("vault_subjects", f"{lo}..{hi}", "no ledger entry vouches for "
                                "these subjects")
        version = want[4]
        if version not in manifest.BUCKET_DIGEST_VERSIONS:
            raise StateMismatch("vault_subjects", f"{lo}..{hi}", "the ledger vouches for "
                                "these subjects with an unknown digest version", seq=want[2])
        done = actual.get(b) if actual is not None else None
        got = (done[0], done[1]) if done is not None and done[2] == version else \
            manifest.bucket_digest(conn, b, version, quick=True)
        if got != want[:2] and version == 2:  # a quick digest that differs: again, in order
            got = manifest.bucket_digest(conn, b, version)
        subjects, blind = got
        if subjects != want[0]:
            _name_the_row(conn, b, 0, want)
        if blind != want[1]:
            _name_the_row(conn, b, 1, want)


def _name_the_row(conn: Connection, bucket: int, part: int,
                  want: tuple[str, str, int, str | None, int]) -> None:
    """A bucket digest differs: raise naming the subject whose rows differ (its locator),
    or the bucket when that cannot be told (several subjects, or an entry without one)."""
    lo, hi = bucket * manifest.BUCKET, (bucket + 1) * manifest.BUCKET - 1
    sid = None
    if want[3] is not None:
        sid = manifest.locate(manifest.bucket_texts(conn, bucket)[part], want[3], part)
    if sid is not None and not lo <= sid <= hi:
        sid = None
    if part == 0:
        if sid is not None:
            raise StateMismatch("vault_subjects", str(sid), "this subject row (wrapped key, "
                                "key id, dataset or erasure mark) differs from the ledger "
                                "(edited, added or deleted)", seq=want[2])
        raise StateMismatch("vault_subjects", f"{lo}..{hi}", "a subject row (wrapped key, "
                            "key id or erasure mark) differs from the ledger"
                            + ("" if want[3] is None else "; several subjects differ"),
                            seq=want[2])
    if sid is not None:
        raise StateMismatch("vault_blind_index", f"subject {sid}", "this subject's blind-index "
                            "rows differ from the ledger (a digest edited, added or deleted)",
                            seq=want[2])
    raise StateMismatch("vault_blind_index", f"subjects {lo}..{hi}", "a blind-index row "
                        "differs from the ledger"
                        + ("" if want[3] is None else "; several subjects differ"), seq=want[2])


def verify_state(
    conn: Connection, exp: Expected, *, policy_bytes: bytes | None = None, full: bool = True,
    done: Mapping[Task, Any] | None = None,
) -> StateReport:
    """Compare the database (``conn``, one snapshot) with ``exp``; raise at the first difference.

    ``done``: results of ``state_tasks`` already run (``run_task``), possibly by another
    process on the same snapshot; the rest is computed here.
    """
    principals = _principals(conn, exp)
    _policy(policy_bytes, exp)
    budgets = _budgets(conn, exp)
    keys = _keys(conn, exp)
    _datasets_and_sources(conn, exp)
    batches = _batches(conn, exp)
    erased = _erased(conn, exp)
    _suppressed(conn, exp)
    _reveals(conn, exp)
    from vault.link_tables import verify_links

    verify_links(conn, exp.links, exp.link_layouts)
    buckets = records = 0
    if full:
        done = done or {}
        buckets = _buckets(conn, exp, {b: v for (kind, b), v in done.items() if kind == BUCKET})
        records = _rehash(conn, exp, {b: v for (kind, b), v in done.items() if kind == BATCH})
    return StateReport(principals, budgets, keys, batches, erased, buckets, records, full)


def _rehash(conn: Connection, exp: Expected, actual: Mapping[int, str] | None = None) -> int:
    """Every batch's ciphertext against its vouched data_hash (``batch_rehash``)."""
    for bid, (digest, seq) in sorted(exp.data_hash.items()):
        got = actual.get(bid) if actual is not None else None
        if (got if got is not None else batch_rehash(conn, bid)) != digest:
            raise VaultMismatch(f"batch {bid}: stored ciphertext does not match the ledger's "
                                f"data_hash of entry {seq} (tampered or replaced)",
                                batch=str(bid))
    _no_stray_records(conn, set(exp.data_hash))
    return int(conn.exec_driver_sql("SELECT count(*) FROM vault_records").scalar_one())


# The batch ids vault_records holds, one index probe per batch (a loose scan of
# ix_vault_records_batch, on both databases), not a read of every record.
_RECORD_BATCHES = """
WITH RECURSIVE b(id) AS (
    SELECT min(batch_id) FROM vault_records
    UNION ALL
    SELECT (SELECT min(batch_id) FROM vault_records WHERE batch_id > b.id) FROM b
    WHERE b.id IS NOT NULL)
SELECT id FROM b WHERE id IS NOT NULL"""


def _no_stray_records(conn: Connection, vouched: set[int]) -> None:
    """No record under a batch the ledger does not vouch for. The re-hash reads each
    vouched batch's records; a row added under any other batch id would go unread (no
    foreign key stops plain SQL: SQLite checks one only on connections that ask)."""
    stray = sorted(set(conn.exec_driver_sql(_RECORD_BATCHES).scalars()) - vouched)
    if stray:
        rid = conn.exec_driver_sql(
            f"SELECT min(id) FROM vault_records WHERE batch_id = {int(stray[0])}").scalar_one()
        raise StateMismatch("vault_records", str(rid),
                            f"a record under batch {int(stray[0])}, which no ledger entry "
                            "vouches for (added outside civicvault)")


# -- the expensive parts, as tasks two processes can share ---------------------------------------

BUCKET, BATCH = "bucket", "batch"
Task = tuple[str, int]
"""``(BUCKET, b)``: subject bucket ``b``'s digests; ``(BATCH, id)``: a batch's ciphertext."""


def state_tasks(conn: Connection) -> list[Task]:
    """The full mode's expensive reads, biggest first: every stored batch's ciphertext,
    then every subject bucket. Results depend on the snapshot only, not on the ledger."""
    batches = conn.execute(select(T_BATCH.c.id).order_by(T_BATCH.c.id)).scalars().all()
    return ([(BATCH, int(b)) for b in batches]
            + [(BUCKET, b) for b in range(manifest.bucket_count(conn))])


def run_task(conn: Connection, task: Task, version: int = manifest.BUCKET_DIGEST_VERSION
             ) -> Any:
    """A batch's re-hash, or a bucket's quick digests of ``version`` as
    ``(subjects, blind, version)`` (the version its last entry names, when known)."""
    kind, key = task
    if kind == BUCKET:
        return (*manifest.bucket_digest(conn, key, version, quick=True), version)
    return batch_rehash(conn, key)


def bucket_versions(entries: Iterable[bytes]) -> dict[int, int]:
    """Per bucket, the digest version the last of ``entries`` (in log order) names: a hint
    for the tasks of another process; the fold decides (``_buckets``)."""
    out: dict[int, int] = {}
    for raw in entries:
        if b'"subject_buckets"' not in raw:
            continue
        try:
            for item in orjson.loads(raw)["details"]["subject_buckets"]:
                out[int(item[0])] = int(item[4]) if len(item) > 4 else 1
        except (ValueError, TypeError, KeyError, IndexError):
            continue
    return out


_BATCH_TAG = b"civicvault/batch-data/v1"
_LEN32, _LEN64 = struct.Struct(">I").pack, struct.Struct(">Q").pack
_PAGE = 4096


def batch_rehash(conn: Connection, batch_id: int) -> str:
    """``vault.crypto.batch_digest`` of a stored batch, streamed: column blobs by name,
    then record blobs by id, a page at a time (driver-level reads, no copies per row)."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    h = hashlib.sha256(_BATCH_TAG)
    cursor = conn.connection.cursor()
    try:
        cursor.execute('SELECT "column", sealed FROM vault_batch_columns '
                       f"WHERE batch_id = {mark}", (batch_id,))
        for name, blob in sorted((str(c), bytes(b)) for c, b in cursor.fetchall()):
            raw = name.encode()
            h.update(b"C" + _LEN32(len(raw)) + raw)
            h.update(_LEN64(len(blob)))
            h.update(blob)
        cursor.execute(f"SELECT sealed FROM vault_records WHERE batch_id = {mark} ORDER BY id",
                       (batch_id,))
        heads: dict[int, bytes] = {}
        while rows := cursor.fetchmany(_PAGE):
            parts: list[bytes] = []
            for (blob,) in rows:
                size = len(blob)
                head = heads.get(size)
                if head is None:
                    head = heads[size] = b"R" + _LEN64(size)
                parts += (head, blob)
            h.update(b"".join(parts))
    finally:
        cursor.close()
    return h.hexdigest()


def verify_database(
    engine: Engine, *, policy_bytes: bytes | None = None, full: bool = True
) -> tuple[StateReport, int]:
    """Fold the stored entries and compare the tables, all in one read snapshot.

    Returns the report and the number of entries folded (at least the size the
    ledger had when ``ledger.db_verify`` verified it; entries appended since
    belong to the same snapshot as the rows they vouch for).
    """
    from ledger import store as ledger_store

    conn = engine.connect()
    if conn.dialect.name == "postgresql":  # every statement must see the same snapshot
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    conn = conn.execution_options(readonly=True)
    with conn, conn.begin():
        n = ledger_store.size(conn)
        exp = fold(chunk for chunk, _ in ledger_store.iter_chunks(conn, 0, n))
        return verify_state(conn, exp, policy_bytes=policy_bytes, full=full), n
