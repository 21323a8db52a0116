"""Key rotation without downtime, and the resumable re-encryption job.

``rotate_keys``: a new KEK version becomes current and every data key is
rewrapped under it (one transaction; readers keep working throughout because
old versions stay in the provider until nothing needs them). New ``attr`` and
``subject_wrap`` data keys are made active for each dataset and the old ones
retired.

``reencrypt``: moves data still sealed under retired data keys to the active
ones, one batch (or chunk of subject keys) per transaction, so it can be killed
and rerun at any point. When a retired key has nothing left under it, its
wrapped bytes are destroyed and ``keys.retired`` goes on the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, bindparam, func, select, update

from ledger import store as ledger_store
from ledger.entry import MAX_STATE_ENTRY_BYTES, EntryDraft
from vault import crypto, manifest, vocab
from vault.keyring import Keyring
from vault.keys import KeyProvider
from vault.reseal import reseal_batch
from vault.schema import DataKey
from vault.store import T_BATCH, T_COLUMN, T_DATASET, T_SUBJECT, lock_vault

T_KEY = DataKey.__table__  # type: ignore[attr-defined]
ROTATED_PURPOSES = ("attr", "subject_wrap")
SUBJECT_CHUNK = 50_000


@dataclass(frozen=True)
class RotationReport:
    kek_version: int
    data_keys_rewrapped: int
    batches_resealed: int
    subject_keys_rewrapped: int
    keys_destroyed: int


def rotate_keys(engine: Engine, provider: KeyProvider, actor: str) -> tuple[int, int]:
    """New KEK version, every data key rewrapped, new active data keys. Returns (kek, n)."""
    with engine.begin() as conn:
        return rotate_keys_in(conn, provider, actor)


def rotate_keys_in(conn: Connection, provider: KeyProvider, actor: str) -> tuple[int, int]:
    """``rotate_keys`` inside the caller's transaction (e.g. the one of its access decision)."""
    keyring = Keyring(provider)
    lock_vault(conn)
    keyring.unwrap_live(conn)  # first: a key that does not unwrap adds no KEK version
    kek_version = provider.new_version()
    n = keyring.rewrap_all(conn, kek_version)
    for (ds_id,) in conn.execute(select(T_DATASET.c.id)).all():
        for purpose in ROTATED_PURPOSES:
            keyring.create(conn, int(ds_id), purpose)
    ledger_store.append(conn, [EntryDraft(
        actor=actor, action=vocab.KEYS_ROTATED, resource=vocab.DATA_KEYS,
        max_bytes=MAX_STATE_ENTRY_BYTES,
        details={"kek_version": kek_version, "data_keys_rewrapped": n,
                 "key_rows": manifest.key_rows(conn)})])
    return kek_version, n


def reencrypt(engine: Engine, provider: KeyProvider, actor: str) -> tuple[int, int, int]:
    """Move data off retired keys; returns (batches resealed, subject keys rewrapped, destroyed)."""
    keyring = Keyring(provider)
    batches = subjects = 0
    with engine.connect() as conn:
        todo = conn.execute(
            select(T_BATCH.c.id, T_BATCH.c.dataset_id, T_DATASET.c.name).distinct()
            .join(T_COLUMN, T_COLUMN.c.batch_id == T_BATCH.c.id)
            .join(T_KEY, T_KEY.c.id == T_COLUMN.c.key_id)
            .join(T_DATASET, T_DATASET.c.id == T_BATCH.c.dataset_id)
            .where(T_KEY.c.state != "active").order_by(T_BATCH.c.id)).all()
        conn.rollback()
    for b in todo:
        with engine.begin() as conn:
            lock_vault(conn)
            reseal_batch(conn, keyring, ds_id=int(b.dataset_id), dataset=b.name,
                         batch_id=int(b.id), actor=actor, reason="key-rotation")
        batches += 1
    while True:
        with engine.begin() as conn:
            lock_vault(conn)
            rows = conn.execute(
                select(T_SUBJECT.c.id, T_SUBJECT.c.dataset_id, T_SUBJECT.c.key_id,
                       T_SUBJECT.c.wrapped_key)
                .join(T_KEY, T_KEY.c.id == T_SUBJECT.c.key_id)
                .where(T_KEY.c.state != "active", T_SUBJECT.c.wrapped_key.is_not(None))
                .order_by(T_SUBJECT.c.id).limit(SUBJECT_CHUNK)).all()
            if not rows:
                break
            groups: dict[tuple[int, int], list[tuple[int, bytes]]] = {}
            for r in rows:
                groups.setdefault((int(r.dataset_id), int(r.key_id)), []).append(
                    (int(r.id), bytes(r.wrapped_key)))
            for (ds_id, old_id), items in groups.items():
                ids = [i for i, _ in items]
                keys = crypto.unwrap_subject_keys(keyring.by_id(conn, old_id), old_id, ds_id, ids,
                                                  [w for _, w in items])
                new = keyring.active(conn, ds_id, "subject_wrap")
                wrapped = crypto.wrap_subject_keys(new.key, new.id, ds_id, ids, keys)
                keyring.count_sealed(conn, new.id, len(ids))
                conn.execute(update(T_SUBJECT).where(T_SUBJECT.c.id == bindparam("sid"))
                             .values(wrapped_key=bindparam("w"), key_id=new.id),
                             [{"sid": i, "w": w} for i, w in zip(ids, wrapped, strict=True)])
                subjects += len(ids)
            ledger_store.append(conn, [EntryDraft(
                actor=actor, action=vocab.KEYS_SUBJECTS_REWRAPPED, resource=vocab.DATA_KEYS,
                max_bytes=MAX_STATE_ENTRY_BYTES,
                details={"subjects": len(rows), "subject_buckets": manifest.subject_buckets(
                    conn, manifest.buckets_of(int(r.id) for r in rows))})])
    return batches, subjects, destroy_empty_keys(engine, actor)


def destroy_empty_keys(engine: Engine, actor: str) -> int:
    """Destroy retired data keys that no ciphertext needs any more; ledger each."""
    destroyed = 0
    with engine.begin() as conn:
        lock_vault(conn)
        retired = conn.execute(select(T_KEY.c.id, T_KEY.c.dataset_id, T_KEY.c.purpose,
                                      T_KEY.c.version)
                               .where(T_KEY.c.state == "retired",
                                      T_KEY.c.purpose.in_(ROTATED_PURPOSES))).all()
        for k in retired:
            table_col = T_COLUMN.c.key_id if k.purpose == "attr" else T_SUBJECT.c.key_id
            in_use = conn.execute(select(func.count()).where(table_col == k.id)).scalar_one()
            if k.purpose == "subject_wrap":
                in_use = conn.execute(select(func.count()).where(
                    T_SUBJECT.c.key_id == k.id, T_SUBJECT.c.wrapped_key.is_not(None))).scalar_one()
            if in_use:
                continue
            conn.execute(update(T_KEY).where(T_KEY.c.id == k.id)
                         .values(state="destroyed", wrapped=b""))
            ledger_store.append(conn, [EntryDraft(
                actor=actor, action=vocab.KEYS_RETIRED, resource=vocab.data_key(int(k.id)),
                details={"key": int(k.id), "dataset": int(k.dataset_id), "purpose": k.purpose,
                         "version": int(k.version), "destroyed": True,
                         "key_rows": manifest.key_rows(conn, [int(k.id)])})])
            destroyed += 1
    return destroyed
