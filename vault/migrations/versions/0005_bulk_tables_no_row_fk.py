"""PostgreSQL: no per-row foreign-key triggers on the three bulk tables.

PostgreSQL checks a foreign key with a trigger that runs a lookup for every
inserted row. On ``vault_subjects``, ``vault_records`` and ``vault_blind_index``
(five rows per ingested voter) those checks cost more than the rows themselves:
they made sealing and storing 2.6x slower (``bench/vault.py --pg-foreign-keys``).

The references they guarded are written by one code path (``vault.store``),
inside the transaction that also inserts the referenced batch and reads the
active keys, and ``ledger verify`` re-hashes every batch's records against the
ledger. Small tables keep their foreign keys; SQLite keeps all of them (it checks
a foreign key with an index probe, no trigger).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ROW_FOREIGN_KEYS = [
    ("vault_subjects", "dataset_id", "vault_datasets"),
    ("vault_subjects", "key_id", "vault_data_keys"),
    ("vault_subjects", "current_batch_id", "vault_batches"),
    ("vault_records", "batch_id", "vault_batches"),
    ("vault_blind_index", "dataset_id", "vault_datasets"),
    ("vault_blind_index", "key_id", "vault_data_keys"),
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, _ in ROW_FOREIGN_KEYS:
        op.drop_constraint(f"{table}_{column}_fkey", table, type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, parent in ROW_FOREIGN_KEYS:
        op.create_foreign_key(f"{table}_{column}_fkey", table, parent, [column], ["id"])
