"""Re-seal one batch's attribute columns: after an erasure (rows blanked) or a key
rotation (new data key). The new ``data_hash`` goes on the ledger in the same
transaction as ``vault.batch.resealed``, so the cross-check keeps holding.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from sqlalchemy import Connection, delete, select, update

from ledger import store as ledger_store
from ledger.entry import EntryDraft
from vault import crypto, vocab
from vault.crosscheck import recompute
from vault.keyring import Keyring
from vault.store import T_BATCH, T_COLUMN, bulk_insert


def reseal_batch(
    conn: Connection,
    keyring: Keyring,
    *,
    ds_id: int,
    dataset: str,
    batch_id: int,
    actor: str,
    reason: str,
    blank_rows: Sequence[int] = (),
) -> str:
    """Decrypt, optionally null ``blank_rows``, re-seal under the active attr key; ledger it."""
    blobs = conn.execute(select(T_COLUMN.c.column, T_COLUMN.c.key_id, T_COLUMN.c.sealed)
                         .where(T_COLUMN.c.batch_id == batch_id)
                         .order_by(T_COLUMN.c.column)).all()
    if blobs:
        frame = pl.DataFrame([
            crypto.open_column(keyring.by_id(conn, int(b.key_id)), int(b.key_id), ds_id,
                               batch_id, b.column, bytes(b.sealed)) for b in blobs])
        if blank_rows:
            mask = pl.Series([False] * frame.height)
            mask[list(blank_rows)] = True
            frame = frame.select(
                pl.when(mask).then(None).otherwise(pl.col(c)).alias(c) for c in frame.columns)
        key = keyring.active(conn, ds_id, "attr")
        sealed = crypto.seal_batch(key.key, key.id, ds_id, batch_id, frame)
        keyring.count_sealed(conn, key.id, len(sealed))
        conn.execute(delete(T_COLUMN).where(T_COLUMN.c.batch_id == batch_id))
        bulk_insert(conn, T_COLUMN, ("batch_id", "column", "key_id", "sealed"),
                    [(batch_id, c, key.id, b) for c, b in sealed.items()])
    data_hash = recompute(conn, batch_id)
    conn.execute(update(T_BATCH).where(T_BATCH.c.id == batch_id).values(data_hash=data_hash))
    ledger_store.append(conn, [EntryDraft(
        actor=actor, action=vocab.VAULT_BATCH_RESEALED,
        resource=vocab.batch(dataset, batch_id), data_hash=data_hash,
        details={"dataset": dataset, "batch": batch_id, "reason": reason,
                 "rows_blanked": len(blank_rows)})])
    return data_hash
