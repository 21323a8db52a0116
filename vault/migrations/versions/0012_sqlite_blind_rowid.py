"""SQLite: the blind index becomes a rowid table with a separate unique index for its key.

Until now ``vault_blind_index`` was, on SQLite, a ``WITHOUT ROWID`` table: the table was
its primary key B-tree (dataset, column, digest, subject). An ingest adds ~3 digests per
row in digest order, i.e. at random places of that tree, so each batch of 100,000 rows
rewrote most of its pages (issue 17: 11.6-12.8 s for 3M rows against 1.7 s appended to a
rowid table plus 3.5 s for one sorted index build at the end).

Now the rows live in a rowid table (appended in insertion order) and the same key is a
``UNIQUE`` index, ``ux_vault_blind_key``, which a first load can drop and build once at
its end, as PostgreSQL drops and rebuilds its primary key (``vault.store``). The
by-subject index (``ix_vault_blind_subject``, migration 0008) carries ``dataset_id`` as
well on SQLite: the primary key's columns no longer come with every secondary index, and
the state verification reads all five columns of a subject range from that index alone.

The rows are copied unchanged (in subject order); nothing is hashed differently, so the
ledger's subject-bucket digests still hold. PostgreSQL: nothing changes (a heap table
with a primary-key index already).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TABLE = "vault_blind_index"
KEY_INDEX = "ux_vault_blind_key"
SUBJECT_INDEX = "ix_vault_blind_subject"
KEY = ["dataset_id", "column", "digest", "subject_id"]
COLUMNS = '"dataset_id", "column", "digest", "subject_id", "key_id"'


def _columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("vault_datasets.id"), nullable=False),
        sa.Column("column", sa.String(256), nullable=False),
        sa.Column("digest", sa.LargeBinary, nullable=False),
        sa.Column("subject_id", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("key_id", sa.Integer, sa.ForeignKey("vault_data_keys.id"), nullable=False),
    ]


def _copy_into(new: str, order: str) -> None:
    op.execute(f"INSERT INTO {new} ({COLUMNS}) SELECT {COLUMNS} FROM {TABLE} ORDER BY {order}")
    op.drop_index(SUBJECT_INDEX, table_name=TABLE, if_exists=True)
    op.drop_table(TABLE)
    op.rename_table(new, TABLE)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_table("_vault_blind_index_new", *_columns())
    _copy_into("_vault_blind_index_new", 'subject_id, "column", digest')
    op.create_index(KEY_INDEX, TABLE, KEY, unique=True)
    op.create_index(SUBJECT_INDEX, TABLE, ["subject_id", "column", "digest", "key_id",
                                           "dataset_id"])


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    cols = _columns()
    for c in cols:
        if c.name in KEY:
            c.primary_key = True
    op.create_table("_vault_blind_index_old", *cols, sqlite_with_rowid=False)
    _copy_into("_vault_blind_index_old", 'dataset_id, "column", digest, subject_id')
    op.create_index(SUBJECT_INDEX, TABLE, ["subject_id", "column", "digest", "key_id"])
