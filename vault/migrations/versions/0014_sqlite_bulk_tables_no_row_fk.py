"""SQLite: no per-row foreign keys on the three bulk tables, as on PostgreSQL (0005).

``vault_subjects``, ``vault_records`` and ``vault_blind_index`` hold five rows per
ingested voter. With ``PRAGMA foreign_keys=ON`` (``vault.db``) SQLite probes the parent
table's key for each reference of each inserted row: three per subject, one per record,
two per blind-index row, 10M probes for 1M voters. They were a quarter of a first load's
inserts (issue 17; ``bench/ingest_timeline.py --replay``, 1M x 12: 7.98 -> 6.10 s).

They guarded nothing an insider cannot bypass: SQLite enforces a foreign key only on a
connection that turns enforcement on, and plain SQL from any other client skips it. What
guards these tables is what guards them on PostgreSQL: one code path (``vault.store``)
writes them in the transaction that inserts the referenced batch and reads the active
keys, and ``ledger verify`` vouches for every row: subjects and blind-index rows by
their subject-bucket digests, records by their batch's ``data_hash``, and no record
under a batch the ledger does not vouch for (``vault.state_verify``). The small tables
keep their foreign keys.

SQLite cannot drop a constraint in place, so each table is rebuilt: the same columns,
key and indexes (those the table has: a first load that stopped before its end has not
built its deferred index yet, and the table keeps it that way), its rows copied in key
order. Nothing references these three tables, so no other table changes. A 1M-voter vault
migrates in ~20 s; the old tables' pages stay in the file as free pages for later rows.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from typing import NamedTuple

from alembic import op
from sqlalchemy import text

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


class _Table(NamedTuple):
    columns: tuple[tuple[str, str], ...]  # name, declaration (as migration 0002/0013 made it)
    key: str  # the primary key's columns, in order
    foreign_keys: str  # the clauses 0002 declared
    options: str = ""


_TABLES = {
    "vault_subjects": _Table(
        (("id", "INTEGER NOT NULL"), ("dataset_id", "INTEGER NOT NULL"),
         ("key_id", "INTEGER NOT NULL"), ("wrapped_key", "BLOB"), ("fingerprint", "BLOB"),
         ("current_batch_id", "INTEGER NOT NULL"), ("current_row", "INTEGER NOT NULL"),
         ("erased_at", "VARCHAR")),
        "id",
        "FOREIGN KEY(dataset_id) REFERENCES vault_datasets (id), "
        "FOREIGN KEY(key_id) REFERENCES vault_data_keys (id), "
        "FOREIGN KEY(current_batch_id) REFERENCES vault_batches (id)"),
    "vault_records": _Table(
        (("id", "INTEGER NOT NULL"), ("subject_id", "BIGINT NOT NULL"),
         ("batch_id", "INTEGER NOT NULL"), ('"row"', "INTEGER NOT NULL"),
         ("fields", "VARCHAR NOT NULL"), ("sealed", "BLOB NOT NULL")),
        "id",
        "FOREIGN KEY(batch_id) REFERENCES vault_batches (id)"),
    "vault_blind_index": _Table(
        (("dataset_id", "INTEGER NOT NULL"), ('"column"', "VARCHAR(256) NOT NULL"),
         ("digest", "BLOB NOT NULL"), ("subject_id", "BIGINT NOT NULL"),
         ("key_id", "INTEGER NOT NULL")),
        'subject_id, "column", digest, dataset_id',
        "FOREIGN KEY(dataset_id) REFERENCES vault_datasets (id), "
        "FOREIGN KEY(key_id) REFERENCES vault_data_keys (id)",
        " WITHOUT ROWID"),
}


def _rebuild(with_foreign_keys: bool) -> None:
    """Each bulk table copied into one declared with (or without) its foreign keys."""
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    for table, t in _TABLES.items():
        indexes = [sql for (sql,) in conn.execute(text(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t "
            "AND sql IS NOT NULL ORDER BY name"), {"t": table})]
        new = f"_{table}_rebuilt"
        body = [f"{name} {decl}" for name, decl in t.columns] + [f"PRIMARY KEY ({t.key})"]
        if with_foreign_keys:
            body.append(t.foreign_keys)
        op.execute(f"CREATE TABLE {new} ({', '.join(body)}){t.options}")
        cols = ", ".join(name for name, _ in t.columns)
        op.execute(f"INSERT INTO {new} ({cols}) SELECT {cols} FROM {table} ORDER BY {t.key}")
        op.execute(f"DROP TABLE {table}")
        op.execute(f"ALTER TABLE {new} RENAME TO {table}")
        for sql in indexes:  # the same indexes (DROP TABLE dropped them), by their own SQL
            op.execute(sql)


def upgrade() -> None:
    _rebuild(with_foreign_keys=False)


def downgrade() -> None:
    _rebuild(with_foreign_keys=True)
