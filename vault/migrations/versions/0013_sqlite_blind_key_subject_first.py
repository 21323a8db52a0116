"""SQLite: the blind index's primary key leads with the subject; a lookup index by digest.

On SQLite the blind index is a ``WITHOUT ROWID`` table: its primary key is the table.
It was ``(dataset_id, "column", digest, subject_id)``, so each batch's new rows went to
random places in it (digests are uniform), and those inserts were the largest part of a
first load's writer (issue 17: 7.9 of 16.8 s for 1M rows x 12 columns). It is now
``(subject_id, "column", digest, dataset_id)``: the same columns, the same uniqueness,
and a batch's new subjects (the highest ids) are appended at the B-tree's right edge.

Lookups by value, duplicate detection and linkage read by dataset, column and digest:
``ix_vault_blind_lookup`` ``(dataset_id, "column", digest, subject_id, key_id)`` gives
them the old key's order (plus ``key_id``, so it covers every such read). It replaces
``ix_vault_blind_subject`` (migration 0008), which the new key makes redundant: state
verification and erasure read a subject range, now the key's prefix. A first load builds
the lookup index once at its end (``vault.store``), as it built the subject index.

PostgreSQL is unchanged (a heap table; its key leads with the digest, migration 0012).

The table is rebuilt (SQLite cannot change a primary key in place), its rows copied in
the new key's order.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_COLUMNS = '"dataset_id", "column", "digest", "subject_id", "key_id"'
_NEW = "_vault_blind_index_rekeyed"


def _rebuild(key: str, index: str, index_columns: str) -> None:
    """Copy the blind index into a table keyed by ``key``, in that order, and index it."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in ("ix_vault_blind_subject", "ix_vault_blind_lookup"):
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.execute(
        f"CREATE TABLE {_NEW} ("
        "dataset_id INTEGER NOT NULL REFERENCES vault_datasets (id), "
        '"column" VARCHAR(256) NOT NULL, '
        "digest BLOB NOT NULL, "
        "subject_id BIGINT NOT NULL, "
        "key_id INTEGER NOT NULL REFERENCES vault_data_keys (id), "
        f"PRIMARY KEY ({key})) WITHOUT ROWID")
    op.execute(f"INSERT INTO {_NEW} ({_COLUMNS}) SELECT {_COLUMNS} FROM vault_blind_index "
               f"ORDER BY {key}")
    op.execute("DROP TABLE vault_blind_index")
    op.execute(f"ALTER TABLE {_NEW} RENAME TO vault_blind_index")
    op.execute(f"CREATE INDEX {index} ON vault_blind_index ({index_columns})")


def upgrade() -> None:
    _rebuild('subject_id, "column", digest, dataset_id', "ix_vault_blind_lookup",
             'dataset_id, "column", digest, subject_id, key_id')


def downgrade() -> None:
    _rebuild('dataset_id, "column", digest, subject_id', "ix_vault_blind_subject",
             'subject_id, "column", digest, key_id')
