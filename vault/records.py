"""Opening one subject's records: the only path from the vault back to identifiers.

Used by the steward's audited ``reveal`` and by tests; releases never come here.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from vault import crypto
from vault.errors import KeyUnavailable
from vault.keyring import Keyring
from vault.store import T_BATCH, T_RECORD, T_SUBJECT
from vault.tables import record_fields


def open_subject(
    conn: Connection, keyring: Keyring, subject_id: int
) -> list[dict[str, str | None]]:
    """Every record of ``subject_id``, oldest first; KeyUnavailable once it is erased."""
    s = conn.execute(select(T_SUBJECT.c.dataset_id, T_SUBJECT.c.key_id, T_SUBJECT.c.wrapped_key)
                     .where(T_SUBJECT.c.id == subject_id)).first()
    if s is None:
        raise KeyUnavailable(f"subject {subject_id} does not exist")
    if s.wrapped_key is None:
        raise KeyUnavailable(f"subject {subject_id} was erased: its key is destroyed")
    ds_id, wid = int(s.dataset_id), int(s.key_id)
    [key] = crypto.unwrap_subject_keys(keyring.by_id(conn, wid), wid, ds_id, [subject_id],
                                       [bytes(s.wrapped_key)])
    rows = conn.execute(select(T_RECORD.c.id, record_fields(), T_RECORD.c.sealed)
                        .join(T_BATCH, T_BATCH.c.id == T_RECORD.c.batch_id)
                        .where(T_RECORD.c.subject_id == subject_id)
                        .order_by(T_RECORD.c.id)).all()
    return [crypto.open_record(key, ds_id, int(r.id), subject_id, r.fields, bytes(r.sealed))
            for r in rows]
