"""Helpers for vault tests: a real key file, a FakeKms, and batch writing in one call."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine

from vault import _aead
from vault.keyring import Keyring
from vault.keys import FileKeyProvider
from vault.store import BatchResult, ColumnLayout, StoredColumn, dataset_id, write_batch

LAYOUT = ColumnLayout(
    columns=(
        StoredColumn("voter_id", "direct", "id"),
        StoredColumn("name", "direct", "text"),
        StoredColumn("phone", "direct", "phone"),
        StoredColumn("county", "attribute"),
        StoredColumn("party", "attribute"),
        StoredColumn("age", "attribute"),
    ),
    identity="voter_id",
)


class FakeKms:
    """An external KMS stand-in: key material never leaves it (same protocol as real ones)."""

    def __init__(self) -> None:
        self._keks = {1: _aead.random_key()}
        self.calls = 0

    def current_version(self) -> int:
        return max(self._keks)

    def versions(self) -> list[int]:
        return sorted(self._keks)

    def wrap(self, version: int, key: bytes, context: bytes) -> bytes:
        self.calls += 1
        return _aead.seal(self._keks[version], key, b"fakekms" + context)

    def unwrap(self, version: int, wrapped: bytes, context: bytes) -> bytes:
        self.calls += 1
        return _aead.open_(self._keks[version], wrapped, b"fakekms" + context)

    def new_version(self) -> int:
        v = max(self._keks) + 1
        self._keks[v] = _aead.random_key()
        return v


def file_keyring(tmp_path: Path) -> Keyring:
    return Keyring(FileKeyProvider.create(tmp_path / f"kek-{secrets.token_hex(3)}.json"))


def voters(n: int, *, start: int = 0, party: str = "DEM") -> pl.DataFrame:
    return pl.DataFrame({
        "voter_id": [f"NC{start + i:08d}" for i in range(n)],
        "name": [f"Person Number{start + i} Zyx" for i in range(n)],
        "phone": [f"(919) 555-{(start + i) % 10000:04d}" for i in range(n)],
        "county": [["WAKE", "CHATHAM", "ORANGE"][(start + i) % 3] for i in range(n)],
        "party": [party] * n,
        "age": [str(18 + (start + i) % 70) for i in range(n)],
    })


def register_source(conn: Any, dataset: str, ds: int, source: int) -> None:
    """The ``vault.source.registered`` entry ``plan_ingest`` writes, so verification of a
    vault built with :func:`store` vouches for its dataset and source rows."""
    from ledger import store as ledger_store
    from ledger.entry import EntryDraft
    from vault import manifest

    ledger_store.append(conn, [EntryDraft(
        actor="tester", action="vault.source.registered", resource=f"dataset/{dataset}",
        details={"dataset": dataset, "dataset_id": ds, "source": source,
                 "dataset_row": manifest.dataset_row(conn, ds),
                 "source_row": manifest.source_row(conn, source)})])


def store(engine: Engine, keyring: Keyring, frame: pl.DataFrame, *, dataset: str = "voters",
          source: int | None = None, batch_index: int = 0,
          layout: ColumnLayout = LAYOUT) -> BatchResult:
    """Write ``frame`` as one batch of a new (or given) source, committed."""
    from vault.keyring import now
    from vault.store import T_SOURCE

    with engine.begin() as conn:
        ds = dataset_id(conn, dataset, create_with=("test", layout.to_json()))
        if source is None:
            source = int(conn.execute(T_SOURCE.insert().values(
                dataset_id=ds, content_hash=secrets.token_hex(16), rows=frame.height, batches=1,
                created=now()).returning(T_SOURCE.c.id)).scalar_one())
            new_source = True
        else:
            new_source = False
        result = write_batch(conn, keyring, ds_id=ds, dataset=dataset, source_id=source,
                             batch_index=batch_index, frame=frame, layout=layout, actor="tester")
        if new_source:  # after the batch: the vault lock first, then the ledger's (as ingest)
            register_source(conn, dataset, ds, source)
        return result


# A child process that ingests argv[1] into dataset "voters" in batches of argv[2] rows, as
# the CLI does (the vault home and database from the environment): the kill -9 tests' victim.
INGEST_CHILD = """
import sys
from pathlib import Path
from vault.access import authenticate
from vault.db import make_engine
from vault.home import VaultHome
from vault.ingest import ingest_path
home = VaultHome.from_env()
engine = make_engine(home.db_url)
report = ingest_path(engine, home, authenticate(engine, home, None), Path(sys.argv[1]),
                     "voters", batch_rows=int(sys.argv[2]))
print(report.rows_added, report.batches)
"""
