"""The vault's tables and the small things every writer of them needs.

Table handles (``T_*``, see ``vault.schema``), dataset ids, the one vault-wide write
lock, and the bulk insert (COPY on PostgreSQL, executemany on SQLite). The write
path (``vault.store``), erasure, rotation, manifests and verification import these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ledger.entry import rfc3339_utc as now
from vault import vocab
from vault.errors import BadInput
from vault.layout import ColumnLayout
from vault.schema import (
    Batch,
    BatchColumn,
    BlindIndex,
    Dataset,
    Record,
    Source,
    Subject,
    Suppressed,
)

__all__ = ["T_BATCH", "T_BLIND", "T_COLUMN", "T_DATASET", "T_RECORD", "T_SOURCE", "T_SUBJECT",
           "T_SUPPRESSED", "VAULT_WRITE_LOCK", "attribute_columns", "bulk_insert", "dataset_id",
           "dataset_resource", "holds_dataset", "lock_vault", "record_fields"]

T_DATASET: Table = Dataset.__table__  # type: ignore[attr-defined]
T_SOURCE: Table = Source.__table__  # type: ignore[attr-defined]
T_BATCH: Table = Batch.__table__  # type: ignore[attr-defined]
T_COLUMN: Table = BatchColumn.__table__  # type: ignore[attr-defined]
T_SUBJECT: Table = Subject.__table__  # type: ignore[attr-defined]
T_RECORD: Table = Record.__table__  # type: ignore[attr-defined]
T_BLIND: Table = BlindIndex.__table__  # type: ignore[attr-defined]
T_SUPPRESSED: Table = Suppressed.__table__  # type: ignore[attr-defined]

def dataset_id(conn: Connection, name: str, *, create_with: tuple[str, str] | None = None) -> int:
    """Id of dataset ``name``; with ``create_with=(schema_hash, columns_json)`` create it."""
    row = conn.execute(select(T_DATASET.c.id).where(T_DATASET.c.name == name)).scalar()
    if row is not None:
        return int(row)
    if create_with is None:
        raise BadInput(f"unknown dataset '{name}'")
    schema_hash, columns_json = create_with
    return int(conn.execute(
        T_DATASET.insert().values(name=name, created=now(), schema_hash=schema_hash,
                                  columns_json=columns_json).returning(T_DATASET.c.id)
    ).scalar_one())


def holds_dataset(conn: Connection, name: str) -> bool:
    """Whether the vault holds a dataset named ``name``."""
    return conn.execute(select(T_DATASET.c.id).where(T_DATASET.c.name == name)).first() is not None


def dataset_resource(conn: Connection, name: str) -> str:
    """The resource of a caller-given dataset name: ``dataset/<name>`` when the vault holds
    the dataset, else ``dataset/<fingerprint>``: a name typed for a dataset that does not
    exist (a refusal, a not-found) never reaches the immutable ledger verbatim."""
    return vocab.dataset(name, known=holds_dataset(conn, name))


def attribute_columns(conn: Connection, name: str) -> list[str]:
    """The sealed attribute columns of dataset ``name`` (its stored layout; names only)."""
    raw = conn.execute(select(T_DATASET.c.columns_json).where(T_DATASET.c.name == name)).scalar()
    if raw is None:
        raise BadInput(f"unknown dataset '{name}'")
    return ColumnLayout.from_json(str(raw)).attributes


VAULT_WRITE_LOCK = 0x5641554C54000000  # "VAULT" in the high bytes: one key for all batch writers


def lock_vault(conn: Connection) -> None:
    """Serialise the transactions that change vault tables (SQLite: BEGIN IMMEDIATE
    already does). One lock for the whole vault, not one per dataset: batch, subject
    and record ids are vault-wide max + 1. Batch writers, erasure, rotation and
    re-encryption take it before they touch a data-key row or append their own ledger
    entries: an erasure that appended to the ledger and then re-sealed (a key-row
    update) once deadlocked a batch writer that held the key row and waited for the
    ledger."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": VAULT_WRITE_LOCK})


def record_fields() -> ColumnElement[str]:
    """A record's field names, as its associated data binds them: its own ``fields``, or
    (stored since migration 0015, ``fields`` empty) its batch's ``record_fields``. The
    query joins ``T_BATCH`` on the record's batch; a batch without names gives ``''``,
    under which no record opens."""
    return func.coalesce(func.nullif(T_RECORD.c.fields, ""), T_BATCH.c.record_fields,
                         "").label("fields")


def _stored_batch(conn: Connection, source_id: int, batch_index: int) -> int | None:
    """Id of the batch already stored for (source, index), if any."""
    done = conn.execute(select(T_BATCH.c.id).where(
        T_BATCH.c.source_id == source_id, T_BATCH.c.batch_index == batch_index)).scalar()
    return None if done is None else int(done)


def bulk_insert(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert many rows (tuples in ``columns`` order): COPY on PostgreSQL, executemany on SQLite.

    Bypasses the ORM and SQLAlchemy's per-row parameter processing; the values
    are plain ints, strings and bytes.
    """
    if not rows:
        return
    for c in columns:
        if c not in table.c:
            raise ValueError(f"{table.name} has no column {c}")
    names = ", ".join(f'"{c}"' for c in columns)
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({names}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
        return
    sql = f'INSERT INTO {table.name} ({names}) VALUES ({", ".join("?" * len(columns))})'
    raw.cursor().executemany(sql, rows)


def _insert_ignore(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    ins = pg_insert(table) if conn.dialect.name == "postgresql" else sqlite_insert(table)
    conn.execute(ins.on_conflict_do_nothing(), list(rows))


def _next_id(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()) + 1
