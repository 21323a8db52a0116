"""vault core schema: datasets, data keys, sources, batches, columnar blobs, subjects,
records, blind indexes.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# 64-bit ids everywhere; on SQLite "INTEGER PRIMARY KEY" is the rowid itself (one B-tree).
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vault_datasets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("created", sa.String, nullable=False),
        sa.Column("schema_hash", sa.String, nullable=False),
        sa.Column("columns_json", sa.Text, nullable=False),
    )
    op.create_table(
        "vault_data_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("vault_datasets.id"), nullable=False,
                  index=True),
        sa.Column("purpose", sa.String, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kek_version", sa.Integer, nullable=False),
        sa.Column("wrapped", sa.LargeBinary, nullable=False),
        sa.Column("messages_sealed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("state", sa.String, nullable=False, server_default="active"),
        sa.Column("created", sa.String, nullable=False),
        sa.UniqueConstraint("dataset_id", "purpose", "version"),
    )
    op.create_table(
        "vault_sources",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("vault_datasets.id"), nullable=False,
                  index=True),
        sa.Column("content_hash", sa.String, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("batches", sa.Integer, nullable=False),
        sa.Column("created", sa.String, nullable=False),
        sa.UniqueConstraint("dataset_id", "content_hash"),
    )
    op.create_table(
        "vault_batches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("vault_datasets.id"), nullable=False,
                  index=True),
        sa.Column("source_id", sa.Integer, sa.ForeignKey("vault_sources.id"), nullable=False),
        sa.Column("batch_index", sa.Integer, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("data_hash", sa.String, nullable=False),
        sa.Column("live_mask", sa.LargeBinary, nullable=False),
        sa.Column("created", sa.String, nullable=False),
        sa.UniqueConstraint("source_id", "batch_index"),
    )
    op.create_table(
        "vault_batch_columns",
        sa.Column("batch_id", sa.Integer, sa.ForeignKey("vault_batches.id"), primary_key=True),
        sa.Column("column", sa.String(256), primary_key=True),
        sa.Column("key_id", sa.Integer, sa.ForeignKey("vault_data_keys.id"), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "vault_subjects",
        sa.Column("id", BIGID, primary_key=True, autoincrement=False),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("vault_datasets.id"), nullable=False,
                  index=True),
        sa.Column("key_id", sa.Integer, sa.ForeignKey("vault_data_keys.id"), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=True),
        sa.Column("fingerprint", sa.LargeBinary, nullable=True),
        sa.Column("current_batch_id", sa.Integer, sa.ForeignKey("vault_batches.id"),
                  nullable=False),
        sa.Column("current_row", sa.Integer, nullable=False),
        sa.Column("erased_at", sa.String, nullable=True),
    )
    op.create_table(
        "vault_records",
        sa.Column("id", BIGID, primary_key=True, autoincrement=False),
        sa.Column("subject_id", sa.BigInteger, nullable=False, index=True),
        sa.Column("batch_id", sa.Integer, sa.ForeignKey("vault_batches.id"), nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("fields", sa.String, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_vault_records_batch", "vault_records", ["batch_id", "id"])
    op.create_table(
        "vault_blind_index",
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("vault_datasets.id"), primary_key=True),
        sa.Column("column", sa.String(256), primary_key=True),
        sa.Column("digest", sa.LargeBinary, primary_key=True),
        sa.Column("subject_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("key_id", sa.Integer, sa.ForeignKey("vault_data_keys.id"), nullable=False),
        sqlite_with_rowid=False,  # the primary key is the only B-tree; lookups use its prefix
    )


def downgrade() -> None:
    for table in ("vault_blind_index", "vault_records", "vault_subjects", "vault_batch_columns",
                  "vault_batches", "vault_sources", "vault_data_keys", "vault_datasets"):
        op.drop_table(table)
