"""Migration 0012: on SQLite the blind index becomes a rowid table whose key is the unique
index ``ux_vault_blind_key`` (so a first load can drop it and build it once at its end);
PostgreSQL keeps its primary key. Rows survive the migration both ways, the key still
refuses a duplicate, and a migrated vault's table is the one the models describe."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, inspect
from sqlmodel import SQLModel

from vault.db import _alembic_config, make_engine, migrate
from vault.schema import BlindIndex, DataKey, Dataset

ROWS = [(1, col, secrets.token_bytes(32), sid, 1)
        for col in ("email", "phone", "voter_id") for sid in range(1, 41)]
_INSERT = sa.text('INSERT INTO vault_blind_index (dataset_id, "column", digest, subject_id, '
                  "key_id) VALUES (:d, :c, :g, :s, :k)")


def _seed(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO vault_datasets (id, name, created, schema_hash, "
                             "columns_json) VALUES (1, 'voters', 'then', 'h', '{}')"))
        conn.execute(sa.text("INSERT INTO vault_data_keys (id, dataset_id, purpose, version, "
                             "kek_version, wrapped, created) "
                             "VALUES (1, 1, 'blind', 1, 1, :w, 'then')"), {"w": b"wrapped"})
        conn.execute(_INSERT, [dict(zip("dcgsk", r, strict=True)) for r in ROWS])


def _rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.text(
            'SELECT dataset_id, "column", digest, subject_id, key_id FROM vault_blind_index')))


def _shape(engine: Engine, schema: str | None = None) -> dict[str, Any]:
    """What a reader or writer of the table relies on: columns, key, indexes, rowid."""
    found = inspect(engine)
    shape: dict[str, Any] = {
        "columns": [(c["name"], str(c["type"]), c["nullable"])
                    for c in found.get_columns("vault_blind_index", schema)],
        "primary_key": found.get_pk_constraint("vault_blind_index", schema)["constrained_columns"],
        "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                          for i in found.get_indexes("vault_blind_index", schema)),
    }
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            shape["without_rowid"] = "WITHOUT ROWID" in conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'vault_blind_index'").scalar_one()
    return shape


def test_0012_keeps_every_row_and_the_key_refuses_a_duplicate(db_url: str) -> None:
    from alembic import command

    engine = make_engine(db_url)
    try:
        command.upgrade(_alembic_config(engine), "0011")
        _seed(engine)
        migrate(engine)
        assert _rows(engine) == sorted(ROWS)
        shape = _shape(engine)
        key = ("dataset_id", "column", "digest", "subject_id")
        if engine.dialect.name == "sqlite":
            assert not shape["without_rowid"] and shape["primary_key"] == []
            assert ("ux_vault_blind_key", key, True) in shape["indexes"]
            assert ("ix_vault_blind_subject", ("subject_id", "column", "digest", "key_id",
                                               "dataset_id"), False) in shape["indexes"]
        else:  # PostgreSQL: unchanged
            assert tuple(shape["primary_key"]) == key
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(_INSERT, dict(zip("dcgsk", ROWS[7], strict=True)))
        if engine.dialect.name == "sqlite":  # and back: the WITHOUT ROWID table of 0002
            command.downgrade(_alembic_config(engine), "0011")
            assert _rows(engine) == sorted(ROWS)
            back = _shape(engine)
            assert back["without_rowid"] and tuple(back["primary_key"]) == key
            assert back["indexes"] == [("ix_vault_blind_subject",
                                        ("subject_id", "column", "digest", "key_id"), False)]
            migrate(engine)
            assert _rows(engine) == sorted(ROWS) and _shape(engine) == shape
    finally:
        engine.dispose()


def test_a_migrated_blind_index_is_the_one_the_models_create(db_url: str,
                                                             tmp_path: Path) -> None:
    """``civicvault init`` (the migrations) and ``vault.schema`` describe one table."""
    migrated = make_engine(db_url)
    sqlite = migrated.dialect.name == "sqlite"
    # SQLite: a file of its own; PostgreSQL: a schema of its own on the same database
    modelled = make_engine(f"sqlite:///{tmp_path / 'models.db'}") if sqlite else migrated
    schema = None if sqlite else "models"
    try:
        migrate(migrated)
        tables = [m.__table__ for m in (Dataset, DataKey, BlindIndex)]  # type: ignore[attr-defined]
        with modelled.begin() as conn:
            if schema:
                conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
                conn = conn.execution_options(schema_translate_map={None: schema})
            SQLModel.metadata.create_all(conn, tables=tables)
        assert _shape(modelled, schema) == _shape(migrated)
    finally:
        migrated.dispose()
        modelled.dispose()
