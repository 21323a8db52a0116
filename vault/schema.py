"""Vault tables (SQLModel on SQLAlchemy 2). Migrations: ``vault/migrations/versions/0002``.

Migrations, not these models, create the tables. The three bulk tables
(``vault_subjects``, ``vault_records``, ``vault_blind_index``) declare foreign keys here
for the reader; the databases hold none (migrations 0005 and 0014), and ``ledger
verify`` vouches for their rows.

Nothing here holds plaintext PII:

- ``vault_batch_columns``: one AES-GCM blob per (batch, attribute column), Arrow IPC
  inside, under the dataset's attribute data key.
- ``vault_records``: one sealed blob per ingested row holding that row's direct
  identifiers (and free-text originals), under the *subject's* own key.
- ``vault_subjects``: the subject's key, wrapped by the dataset's subject-wrap key;
  erasure deletes it (crypto-shredding).
- ``vault_blind_index``: HMAC-SHA256 digests of normalised lookup values.
- ``vault_data_keys``: data keys wrapped by a KEK version, with a seal counter.
- ``vault_suppressed``: identity digests of erased subjects (ingest skips them).
- ``vault_batches.row_subjects`` (migration 0011): each stored row's subject id, packed
  (surrogate ids only; the same mapping as ``vault_records``' (subject, batch, row)).
- ``vault_batches.record_fields`` (migration 0015): the field names of the batch's records,
  once per batch instead of once per record.
- links (``vault.linkage``): ``vault_links``, ``vault_link_members``, ``vault_link_cut``
  (migration 0009), ``vault_link_keys`` (migration 0010, layout 2; Core tables in
  ``vault.link_tables``).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

BIGID = BigInteger().with_variant(Integer(), "sqlite")


class Dataset(SQLModel, table=True):
    __tablename__ = "vault_datasets"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=128)
    created: str
    schema_hash: str
    columns_json: str  # column plan: names, classes, handling; never values


class DataKey(SQLModel, table=True):
    __tablename__ = "vault_data_keys"
    __table_args__ = (UniqueConstraint("dataset_id", "purpose", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="vault_datasets.id", index=True)
    purpose: str  # attr | subject_wrap | blind | fingerprint
    version: int
    kek_version: int
    wrapped: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    messages_sealed: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    state: str = "active"  # active | retired | empty
    created: str


class Source(SQLModel, table=True):
    __tablename__ = "vault_sources"
    __table_args__ = (UniqueConstraint("dataset_id", "content_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="vault_datasets.id", index=True)
    content_hash: str
    rows: int
    batches: int
    created: str


class Batch(SQLModel, table=True):
    __tablename__ = "vault_batches"
    __table_args__ = (UniqueConstraint("source_id", "batch_index"),)

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="vault_datasets.id", index=True)
    source_id: int = Field(foreign_key="vault_sources.id")
    batch_index: int
    rows: int
    data_hash: str
    live_mask: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # live rows, bits
    # each stored row's subject id, packed (vault.live_mask.pack_subjects; migration 0011;
    # NULL in batches stored before it)
    row_subjects: bytes | None = Field(default=None,
                                       sa_column=Column(LargeBinary, nullable=True))
    # the comma-joined field names of this batch's records (migration 0015; NULL in
    # batches stored before it, whose records carry their own)
    record_fields: str | None = None
    created: str


class BatchColumn(SQLModel, table=True):
    __tablename__ = "vault_batch_columns"

    batch_id: int = Field(foreign_key="vault_batches.id", primary_key=True)
    column: str = Field(primary_key=True, max_length=256)
    key_id: int = Field(foreign_key="vault_data_keys.id")
    sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Subject(SQLModel, table=True):
    __tablename__ = "vault_subjects"

    id: int = Field(sa_column=Column(BIGID, primary_key=True, autoincrement=False))
    dataset_id: int = Field(foreign_key="vault_datasets.id", index=True)
    key_id: int = Field(foreign_key="vault_data_keys.id")
    wrapped_key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    fingerprint: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    current_batch_id: int = Field(foreign_key="vault_batches.id")
    current_row: int
    erased_at: str | None = None


class Record(SQLModel, table=True):
    __tablename__ = "vault_records"
    __table_args__ = (Index("ix_vault_records_batch", "batch_id", "id"),)

    id: int = Field(sa_column=Column(BIGID, primary_key=True, autoincrement=False))
    subject_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    batch_id: int = Field(foreign_key="vault_batches.id")
    row: int
    # comma-joined field names sealed inside (names, not values); empty in batches stored
    # since migration 0015: their batch's ``record_fields``
    fields: str
    sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class BlindIndex(SQLModel, table=True):
    # The key's columns; their order is the database's: digest first on PostgreSQL
    # (migration 0012), subject first on SQLite (migration 0013, with a lookup index in
    # the order declared here). Migrations, not this model, create the tables.
    __tablename__ = "vault_blind_index"
    __table_args__ = ({"sqlite_with_rowid": False},)

    dataset_id: int = Field(foreign_key="vault_datasets.id", primary_key=True)
    column: str = Field(primary_key=True, max_length=256)
    digest: bytes = Field(sa_column=Column(LargeBinary, primary_key=True))
    subject_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    key_id: int = Field(foreign_key="vault_data_keys.id")


class Suppressed(SQLModel, table=True):
    """Identity digest of an erased subject: ingest never adds that person back."""

    __tablename__ = "vault_suppressed"
    __table_args__ = ({"sqlite_with_rowid": False},)

    dataset_id: int = Field(foreign_key="vault_datasets.id", primary_key=True)
    column: str = Field(primary_key=True, max_length=256)
    digest: bytes = Field(sa_column=Column(LargeBinary, primary_key=True))
    key_id: int = Field(foreign_key="vault_data_keys.id")
    erased_at: str


TABLES = [
    Dataset.__table__, DataKey.__table__, Source.__table__, Batch.__table__,  # type: ignore[attr-defined]
    BatchColumn.__table__, Subject.__table__, Record.__table__, BlindIndex.__table__,  # type: ignore[attr-defined]
    Suppressed.__table__,  # type: ignore[attr-defined]
]
