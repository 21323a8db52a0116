"""Vault/ledger cross-check: every stored batch still hashes to what the ledger says.

For each batch, the newest ledger entry that vouches for it (an action of
``vault.vocab.VOUCHING_ACTIONS``: ``vault.ingest.batch``, ``vault.batch.resealed``)
must carry the ``data_hash`` recomputed from the ciphertext in the database now.
A batch with no entry, or an entry with no batch, fails too: data can be neither
edited, nor slipped in, nor hidden. An entry under an action the vocabulary does
not define that carries details or a ``data_hash`` fails as well (``UnknownAction``):
it might vouch for data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from sqlalchemy import Connection, func, select

from vault import crypto
from vault.errors import VaultMismatch
from vault.store import T_BATCH, T_COLUMN, T_DATASET, T_RECORD
from vault.vocab import VOUCHING_ACTIONS, action_of_entry

__all__ = ["VOUCHING_ACTIONS", "CrosscheckReport", "recompute", "verify_vault",
           "vouched_hashes"]


@dataclass(frozen=True)
class CrosscheckReport:
    batches: int
    records: int


def vouched_hashes(entries: Iterable[bytes]) -> dict[int, str]:
    """Newest data_hash per batch id from ledger entry bytes.

    Raises ``UnknownAction`` for an entry whose action the vocabulary does not define
    but that carries details or a ``data_hash`` (annotations carry neither)."""
    out: dict[int, str] = {}
    for raw in entries:
        if action_of_entry(raw).vouches_for_stored_data:
            e = orjson.loads(raw)
            out[int(e["details"]["batch"])] = str(e["data_hash"])
    return out


def recompute(conn: Connection, batch_id: int) -> str:
    cols = {r.column: bytes(r.sealed) for r in conn.execute(
        select(T_COLUMN.c.column, T_COLUMN.c.sealed).where(T_COLUMN.c.batch_id == batch_id))}
    recs = [bytes(r.sealed) for r in conn.execute(
        select(T_RECORD.c.sealed).where(T_RECORD.c.batch_id == batch_id).order_by(T_RECORD.c.id))]
    return crypto.batch_digest(cols, recs)


def verify_vault(conn: Connection, entries: Iterable[bytes]) -> CrosscheckReport:
    """Raise VaultMismatch on the first batch that differs from its ledger entry."""
    vouched = vouched_hashes(entries)
    batches = conn.execute(
        select(T_BATCH.c.id, T_BATCH.c.data_hash, T_DATASET.c.name)
        .join(T_DATASET, T_DATASET.c.id == T_BATCH.c.dataset_id).order_by(T_BATCH.c.id)).all()
    seen: set[int] = set()
    for b in batches:
        bid = int(b.id)
        seen.add(bid)
        if bid not in vouched:
            raise VaultMismatch(f"batch {bid} of dataset '{b.name}' has no ledger entry",
                                batch=str(bid))
        actual = recompute(conn, bid)
        if actual != vouched[bid]:
            raise VaultMismatch(
                f"batch {bid} of dataset '{b.name}': stored ciphertext does not match the "
                "ledger's data_hash (tampered or replaced)", batch=str(bid))
    missing = sorted(set(vouched) - seen)
    if missing:
        raise VaultMismatch(f"batch {missing[0]} is on the ledger but missing from the vault",
                            batch=str(missing[0]))
    records = int(conn.execute(select(func.count()).select_from(T_RECORD)).scalar_one())
    return CrosscheckReport(batches=len(batches), records=records)
