"""A stored batch's row -> subject column (``vault_batches.row_subjects``).

One compact blob per batch: the subject id of each stored row, in row order, as
zlib-compressed little-endian int64 deltas (``vault.live_mask.pack_subjects``; a batch of
new subjects is a run of +1 and packs to a few bytes). Written at ingest next to the
live mask and vouched for by the batch's ``vault.ingest.batch`` entry
(``row_subjects``: its SHA-256), so a linked release reads one column per batch instead
of every history subject's (batch, row) from ``vault_subjects``.

NULL in batches stored before this migration: readers fall back to ``vault_subjects``.
The ids are the vault's surrogate subject ids, already in ``vault_records`` (subject,
batch, row) next to every sealed record: nothing an operator could not read before.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vault_batches") as batch:
        batch.add_column(sa.Column("row_subjects", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vault_batches") as batch:
        batch.drop_column("row_subjects")
