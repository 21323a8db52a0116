"""Append-only against any plain SQL statement; an index for the state verification.

SQLite: ``REPLACE INTO`` / ``INSERT OR REPLACE`` delete the conflicting row without
firing DELETE triggers, and an upsert's ``DO UPDATE`` is an update in disguise. A
BEFORE INSERT trigger on each ledger table now refuses any insert whose key is
already taken, before SQLite resolves the conflict, so none of these can replace a
stored entry or node. The UPDATE/DELETE triggers of ``0001`` are (re)created on
both ledger tables, in case a vault lost them.

PostgreSQL: ``INSERT ... ON CONFLICT DO UPDATE`` already fires the statement-level
UPDATE trigger of ``0001`` (refused); a row-level BEFORE INSERT trigger refuses a
conflicting insert with a clear error there too.

``ix_vault_blind_subject``: the blind index by subject, covering (with the primary
key's columns and ``key_id``), so the state verification (``vault.state_verify``)
reads one subject range in key order without a lookup per row, and erasure finds
a subject's rows without scanning the dataset's.

Revision ID: 0008
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_KEYS = {"ledger_entries": "seq = NEW.seq",
         "ledger_nodes": "level = NEW.level AND idx = NEW.idx"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION ledger_no_overwrite() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_TABLE_NAME = 'ledger_entries' THEN
                    PERFORM 1 FROM ledger_entries WHERE seq = NEW.seq;
                ELSE
                    PERFORM 1 FROM ledger_nodes WHERE level = NEW.level AND idx = NEW.idx;
                END IF;
                IF FOUND THEN
                    RAISE EXCEPTION 'ledger table % is append-only: overwriting insert refused',
                        TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
                END IF;
                RETURN NEW;
            END
            $$
            """
        )
        for table in _KEYS:
            op.execute(f"CREATE TRIGGER {table}_no_overwrite BEFORE INSERT ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION ledger_no_overwrite()")
    else:
        for table, match in _KEYS.items():
            op.execute(
                f"CREATE TRIGGER {table}_no_overwrite BEFORE INSERT ON {table} "
                f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {match}) "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: overwriting insert "
                f"refused'); END")
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} "
                    f"ON {table} BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} "
                    f"refused'); END")
    op.create_index("ix_vault_blind_subject", "vault_blind_index",
                    ["subject_id", "column", "digest", "key_id"])


def downgrade() -> None:
    op.drop_index("ix_vault_blind_subject", table_name="vault_blind_index")
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in _KEYS:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_overwrite ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_overwrite")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS ledger_no_overwrite()")
