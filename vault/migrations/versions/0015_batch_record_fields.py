"""A batch's record field names once, in ``vault_batches.record_fields``, not on every record.

A record's sealed payload holds the values of its direct identifiers, in the order of its
field names (comma-joined column names: names, never values), and its associated data
binds those names. Every record of a batch has the same names, and ``vault_records.fields``
repeated them: 59 bytes of one text on each of 1M rows, 27% of the table (issue 17). A
batch stored from now on keeps them once, in ``record_fields``, and its records an empty
``fields``; its ``vault.ingest.batch`` entry vouches for the names (by a digest: header
text never goes into the ledger), so an edit is named by
``ledger verify`` (and a record would no longer open under other names anyway). Records
stored before keep their own ``fields``; readers take a record's own names when it has
them, else its batch's (``vault.tables.record_fields``).

The downgrade writes each batch's names back onto its records, so a civicvault before
this migration opens them, and leaves the column: the batches' ledger entries vouch for
it, an older civicvault neither reads nor writes it (its batches keep NULL, as their
entries name no fields), and an upgrade again finds it in place.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("vault_batches")}
    if "record_fields" not in columns:  # present after a downgrade (see above)
        op.add_column("vault_batches", sa.Column("record_fields", sa.String, nullable=True))


def downgrade() -> None:
    op.execute("UPDATE vault_records SET fields = (SELECT b.record_fields FROM vault_batches b "
               "WHERE b.id = vault_records.batch_id) WHERE fields = ''")
