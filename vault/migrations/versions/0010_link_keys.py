"""Link layout 2 (``vault.link_tables.LAYOUT``): right-side members by blind digest.

``vault_link_keys``: per (link, blind digest of the right dataset's id column) the link
digest that blind digest's subjects carry. A vote history has ~10 rows per voter: one
row per distinct id instead of one per history row; the right side's subjects follow
from the blind index (erasure deletes their rows there).

``vault_links.right_blind``: the right dataset's id column whose blind digests key its
members (NULL: one ``vault_link_members`` row per right subject, as on the left).

``vault_links.layout``: 1 for links built before (one member row per subject on both
sides, ledgered with their pairs' hash), 2 from now on; a layout-1 link is rebuilt from
scratch by its next ``link build`` and verified the old way until then.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vault_link_keys",
        sa.Column("link_id", sa.Integer, sa.ForeignKey("vault_links.id"), primary_key=True),
        sa.Column("blind", sa.LargeBinary, primary_key=True),
        sa.Column("digest", sa.LargeBinary, nullable=False),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("vault_links") as batch:
        batch.add_column(sa.Column("layout", sa.Integer, nullable=False,
                                   server_default="1"))
        batch.add_column(sa.Column("right_blind", sa.String(256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vault_links") as batch:
        batch.drop_column("right_blind")
        batch.drop_column("layout")
    op.drop_table("vault_link_keys")
