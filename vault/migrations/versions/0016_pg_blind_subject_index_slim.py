"""PostgreSQL: the blind index's subject index holds the subject id alone.

``ix_vault_blind_subject`` (migration 0008) was ``(subject_id, "column", digest, key_id)``:
every column of the row but ``dataset_id``, so that state verification and erasure, which
read a subject range, could read the index alone. On PostgreSQL it was as large as the
table's key (168 MB for 3M rows) and built at the end of every first load, after the key
(issue 17). It is now ``(subject_id)``: 47 MB, built in about half the time, and a first
load writes its blind-index rows in subject order (``vault.store._blind_rows``), so the
rows of a subject range lie in a few runs of heap pages. A 1M-row first load, 5 interleaved
pairs: 13.12 -> 11.37 s (medians); the bucket digests of state verification over it 13.0 ->
10.4 s (docs/BENCHMARKS.md).

SQLite is unchanged: it has no such index since migration 0013 (its key leads with the
subject). The index keeps its name, so ``vault.store`` finds it as before.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_INDEX = "ix_vault_blind_subject"


def _rebuild(columns: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP INDEX IF EXISTS {_INDEX}")
    op.execute(f"CREATE INDEX {_INDEX} ON vault_blind_index ({columns})")


def upgrade() -> None:
    _rebuild("subject_id")


def downgrade() -> None:
    _rebuild('subject_id, "column", digest, key_id')
