"""Erasure (right to be forgotten) by crypto-shredding.

A request names a dataset and one or more lookup columns with values. The
values are turned into blind-index digests (never stored, never logged); every
live subject matching all of them is erased:

- its wrapped subject key is deleted, so every record sealed under it (direct
  identifiers, free-text originals) is unreadable from then on, backups included;
- its blind-index rows are deleted, so it can no longer be found; only the digest
  of its identity column (e.g. the keyed HMAC of the voter id, never the value) is
  kept in the suppression list, so a later file carrying the same person does not
  add them back (ingest counts such rows as ``suppressed``);
- its rows leave the live set and its attribute values are blanked by
  re-sealing the affected batches, so no release ever counts it again;
- the ledger records ``vault.erase`` (dataset, subject ids, counts; no values).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, literal, select, update

from ledger import store as ledger_store
from ledger.entry import MAX_STATE_ENTRY_BYTES, EntryDraft
from vault import blind_index, linkage, manifest, vocab
from vault.errors import BadInput
from vault.keyring import Keyring, now
from vault.reseal import reseal_batch
from vault.store import (
    T_BLIND,
    T_DATASET,
    T_RECORD,
    T_SUBJECT,
    T_SUPPRESSED,
    ColumnLayout,
    clear_live_rows,
    lock_vault,
)


@dataclass(frozen=True)
class EraseReport:
    dataset: str
    subjects_erased: int
    batches_resealed: int


def lookup_columns(conn: Connection, dataset: str) -> tuple[int, dict[str, str]]:
    row = conn.execute(select(T_DATASET.c.id, T_DATASET.c.columns_json)
                       .where(T_DATASET.c.name == dataset)).first()
    if row is None:
        raise BadInput(f"unknown dataset '{dataset}'")
    plan = json.loads(row.columns_json)
    return int(row.id), {c["name"]: c["lookup"] for c in plan["stored"] if c.get("lookup")}


def find_subjects(conn: Connection, keyring: Keyring, dataset: str,
                  match: Mapping[str, str]) -> tuple[int, set[int]]:
    """Live subjects matching every (column, value) of ``match`` via blind indexes."""
    if not match:
        raise BadInput("give at least one --match COL=VALUE")
    ds_id, lookups = lookup_columns(conn, dataset)
    found: set[int] | None = None
    blind_key = keyring.active(conn, ds_id, "blind")
    for col, value in match.items():
        if col not in lookups:
            known = ", ".join(sorted(lookups)) or "none"
            raise BadInput(f"column '{col}' of dataset '{dataset}' is not a lookup column "
                           f"(lookup columns: {known})")
        digest = blind_index.digest_one(blind_key.key, col, value, lookups[col])  # type: ignore[arg-type]
        ids = {int(r[0]) for r in conn.execute(
            select(T_BLIND.c.subject_id).where(T_BLIND.c.dataset_id == ds_id,
                                               T_BLIND.c.column == col,
                                               T_BLIND.c.digest == digest))} if digest else set()
        found = ids if found is None else found & ids
    return ds_id, found or set()


def erase(conn: Connection, keyring: Keyring, dataset: str, match: Mapping[str, str],
          actor: str) -> EraseReport:
    lock_vault(conn)
    ds_id, subjects = find_subjects(conn, keyring, dataset, match)
    subjects_sorted = sorted(subjects)
    positions: dict[int, list[int]] = {}
    held = linkage.held_keys(conn, ds_id, subjects_sorted)  # before the blind rows go
    if subjects_sorted:
        for r in conn.execute(select(T_RECORD.c.batch_id, T_RECORD.c.row)
                              .where(T_RECORD.c.subject_id.in_(subjects_sorted))):
            positions.setdefault(int(r.batch_id), []).append(int(r.row))
        conn.execute(update(T_SUBJECT).where(T_SUBJECT.c.id.in_(subjects_sorted))
                     .values(wrapped_key=None, fingerprint=None, erased_at=now()))
        identity = ColumnLayout.from_json(conn.execute(
            select(T_DATASET.c.columns_json).where(T_DATASET.c.id == ds_id)).scalar_one()).identity
        if identity is not None:
            listed = select(T_SUPPRESSED.c.digest).where(
                T_SUPPRESSED.c.dataset_id == ds_id, T_SUPPRESSED.c.column == identity)
            conn.execute(insert(T_SUPPRESSED).from_select(
                ["dataset_id", "column", "digest", "key_id", "erased_at"],
                select(T_BLIND.c.dataset_id, T_BLIND.c.column, T_BLIND.c.digest,
                       T_BLIND.c.key_id, literal(now()))
                .where(T_BLIND.c.subject_id.in_(subjects_sorted),
                       T_BLIND.c.column == identity, T_BLIND.c.digest.not_in(listed))
                .distinct()))
        # by subject alone (the subjects are this dataset's: found above by its lookups):
        # the blind index's key leads with the subject on SQLite (migration 0013), and
        # naming the dataset too let SQLite's planner read the dataset's whole column
        # by the lookup index instead
        conn.execute(delete(T_BLIND).where(T_BLIND.c.subject_id.in_(subjects_sorted)))
        clear_live_rows(conn, positions)
    ledger_store.append(conn, [EntryDraft(
        actor=actor, action=vocab.VAULT_ERASE, resource=vocab.dataset(dataset),
        max_bytes=MAX_STATE_ENTRY_BYTES,
        details={"dataset": dataset, "subjects": subjects_sorted,
                 "match_columns": sorted(match), "batches": sorted(positions),
                 # what the erasure leaves behind, for the verifier (vault.manifest)
                 "subject_buckets": manifest.subject_buckets(
                     conn, manifest.buckets_of(subjects_sorted)),
                 "live_masks": manifest.live_masks(conn, positions),
                 "dataset_id": ds_id, "suppressed": manifest.suppressed_digest(conn, ds_id)})])
    linkage.cut_erased(conn, ds_id, subjects_sorted, actor, held)  # never linked again
    for batch_id, rows in sorted(positions.items()):
        reseal_batch(conn, keyring, ds_id=ds_id, dataset=dataset, batch_id=batch_id,
                     actor=actor, reason="erasure", blank_rows=rows)
    return EraseReport(dataset, len(subjects_sorted), len(positions))
