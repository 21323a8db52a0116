"""(epsilon, delta) budgets and a vault-wide cap per analyst.

Delta amounts are integers in units of 10^-18 ("atto-delta"), exact on both
databases like the nano-epsilon columns of 0004. Accounts made before this
revision get a delta total of 0 (fail closed: approximate-DP releases need a
``budget set`` first); every (analyst, dataset) account and every dataset
counter carries what delta was spent; ``budget_analysts`` holds what each
analyst spent over *all* datasets (seeded with the epsilon spent so far), held
under the policy's vault-wide cap.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("budget_accounts") as batch:
        batch.add_column(sa.Column("delta_total_atto", sa.BigInteger(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("delta_spent_atto", sa.BigInteger(), nullable=False,
                                   server_default="0"))
    with op.batch_alter_table("budget_datasets") as batch:
        batch.add_column(sa.Column("delta_spent_atto", sa.BigInteger(), nullable=False,
                                   server_default="0"))
    op.create_table(
        "budget_analysts",
        sa.Column("analyst", sa.String(200), primary_key=True),
        sa.Column("spent_nano", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("delta_spent_atto", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated", sa.String(40), nullable=False),
        sa.CheckConstraint("spent_nano >= 0", name="ck_budget_analysts_spent"),
        sa.CheckConstraint("delta_spent_atto >= 0", name="ck_budget_analysts_delta"),
    )
    # what each analyst spent so far counts against the vault-wide cap from now on
    op.execute(
        "INSERT INTO budget_analysts (analyst, spent_nano, delta_spent_atto, updated) "
        "SELECT analyst, SUM(spent_nano), 0, 'migration 0007' FROM budget_accounts "
        "GROUP BY analyst"
    )


def downgrade() -> None:
    op.drop_table("budget_analysts")
    with op.batch_alter_table("budget_datasets") as batch:
        batch.drop_column("delta_spent_atto")
    with op.batch_alter_table("budget_accounts") as batch:
        batch.drop_column("delta_spent_atto")
        batch.drop_column("delta_total_atto")
