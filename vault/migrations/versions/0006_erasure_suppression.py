"""Erasure suppression list: identity digests of erased subjects, per dataset.

Erasing a subject deletes its key and its blind-index rows; without a record of
*who* was erased, the next voter file carrying the same person would quietly add
them back. ``vault_suppressed`` keeps the erased subject's identity digest (the
keyed HMAC of the dataset's identity column, e.g. the voter id; never a value) and
ingest skips rows whose identity digest is listed.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vault_suppressed",
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("vault_datasets.id"), primary_key=True),
        sa.Column("column", sa.String(256), primary_key=True),
        sa.Column("digest", sa.LargeBinary, primary_key=True),
        sa.Column("key_id", sa.Integer, sa.ForeignKey("vault_data_keys.id"), nullable=False),
        sa.Column("erased_at", sa.String, nullable=False),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("vault_suppressed")
