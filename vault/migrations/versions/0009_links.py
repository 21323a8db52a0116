"""Links between datasets (``vault.linkage``): definitions, members, cut digests.

``vault_links``: one row per link declared in the policy and built at least once:
its two datasets, its data key (``vault_data_keys``, purpose ``link:<name>``), the
batch watermarks it has digested up to on each side, and the hash of its pairs.

``vault_link_members``: per (link, side, subject) the keyed HMAC digest of the
subject's normalised link key under the link's own key (never a value). Two
subjects are linked when their digests are equal (and unique on the left side).

``vault_link_cut``: digests of erased subjects: a later file carrying the same key
is never linked again.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None



def upgrade() -> None:
    op.create_table(
        "vault_links",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("left_dataset_id", sa.Integer, sa.ForeignKey("vault_datasets.id"),
                  nullable=False),
        sa.Column("right_dataset_id", sa.Integer, sa.ForeignKey("vault_datasets.id"),
                  nullable=False),
        sa.Column("key_id", sa.Integer, sa.ForeignKey("vault_data_keys.id"), nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("left_batch", sa.BigInteger, nullable=False),
        sa.Column("right_batch", sa.BigInteger, nullable=False),
        sa.Column("pairs_hash", sa.String(64), nullable=False),
        sa.Column("built_at", sa.String, nullable=False),
    )
    op.create_table(
        "vault_link_members",
        sa.Column("link_id", sa.Integer, sa.ForeignKey("vault_links.id"), primary_key=True),
        sa.Column("side", sa.SmallInteger, primary_key=True),
        sa.Column("subject_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("digest", sa.LargeBinary, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_vault_link_members_digest", "vault_link_members",
                    ["link_id", "digest"])
    op.create_table(
        "vault_link_cut",
        sa.Column("link_id", sa.Integer, sa.ForeignKey("vault_links.id"), primary_key=True),
        sa.Column("digest", sa.LargeBinary, primary_key=True),
        sa.Column("cut_at", sa.String, nullable=False),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("vault_link_cut")
    op.drop_index("ix_vault_link_members_digest", table_name="vault_link_members")
    op.drop_table("vault_link_members")
    op.drop_table("vault_links")
