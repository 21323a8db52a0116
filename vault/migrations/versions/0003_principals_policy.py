"""principals and the reveal log.

``principals``: who may act (name, role), with only the SHA-256 of each bearer
token stored; revocation is a timestamp, rows are never deleted (ledger entries
keep naming them). ``principal_reveals``: one row per allowed break-glass reveal,
for the per-principal rate limit (the ledger holds the same facts; this table
makes the count a cheap indexed query).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "principals",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("revoked", sa.String(40), nullable=True),
    )
    op.create_table(
        "principal_reveals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("principal_id", sa.String(64), sa.ForeignKey("principals.id"), nullable=False),
        sa.Column("resource", sa.String(512), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_principal_reveals_who_when", "principal_reveals",
                    ["principal_id", "at_us"])


def downgrade() -> None:
    op.drop_index("ix_principal_reveals_who_when", table_name="principal_reveals")
    op.drop_table("principal_reveals")
    op.drop_table("principals")
