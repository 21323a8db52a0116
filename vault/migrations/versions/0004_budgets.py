"""budgets schema: exact privacy budgets per (analyst, dataset) and per dataset.

Epsilon amounts are stored as integers in units of 10^-9 epsilon ("nano-epsilon"),
so totals are exact on SQLite and PostgreSQL alike (no float drift, no NUMERIC
stored as REAL). ``vault.budget`` converts them to and from ``fractions.Fraction``.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budget_accounts",
        sa.Column("analyst", sa.String(200), primary_key=True),
        sa.Column("dataset", sa.String(200), primary_key=True),
        sa.Column("total_nano", sa.BigInteger(), nullable=False),
        sa.Column("spent_nano", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated", sa.String(40), nullable=False),
        sa.CheckConstraint("total_nano >= 0", name="ck_budget_accounts_total"),
        sa.CheckConstraint("spent_nano >= 0", name="ck_budget_accounts_spent"),
    )
    op.create_table(
        "budget_datasets",
        sa.Column("dataset", sa.String(200), primary_key=True),
        sa.Column("spent_nano", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated", sa.String(40), nullable=False),
        sa.CheckConstraint("spent_nano >= 0", name="ck_budget_datasets_spent"),
    )


def downgrade() -> None:
    op.drop_table("budget_datasets")
    op.drop_table("budget_accounts")
