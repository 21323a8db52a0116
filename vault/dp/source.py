"""Where a release reads its private rows from: the vault store, or a frame (tests, benches).

A source gives two things:

* ``check``: BadInput for an unknown dataset (before anything is charged). Nothing
  about the data's size is read: row bounds are the policy's (``Unit``);
* ``scan``: a context manager yielding a *scanned* LazyFrame of the live rows, with
  the pseudonymous person column ``__person`` where the dataset has one (a frame
  without it is one person per row).
  OpenDP serialises its input plan: an in-memory frame of 10M rows costs
  seconds to hand over, a Parquet scan costs nothing. Test and bench frames
  (``FrameSource``, synthetic) are spilled to a private temporary directory
  (mode 0700, file 0600, deleted afterwards); the vault source never writes
  decrypted rows anywhere, it hands OpenDP the frame in memory;
* ``batches`` (optional, :class:`BatchSource`): the same rows as frames of bounded
  size, decrypted in memory one stored batch at a time, for the streaming release
  (``vault.dp.stream``): nothing is written anywhere.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

import polars as pl
from sqlalchemy import Connection

from vault.errors import BadInput
from vault.home import VaultHome

PERSON = "__person"


@runtime_checkable
class BatchSource(Protocol):
    def batches(
        self, conn: Connection, dataset: str, columns: Sequence[str]
    ) -> Iterator[pl.DataFrame]:
        """The live rows' ``columns`` (and ``__person`` where the dataset has it), a
        bounded frame at a time (BadInput for a missing column)."""
        ...


class DataSource(Protocol):
    def check(self, conn: Connection, dataset: str) -> bool:
        """BadInput for an unknown dataset; else whether its rows carry person ids."""
        ...

    def scan(
        self, conn: Connection, dataset: str, columns: Sequence[str]
    ) -> AbstractContextManager[pl.LazyFrame]: ...


@contextmanager
def private_workdir() -> Iterator[Path]:
    """A fresh directory only this user can enter, removed afterwards (also on error)."""
    path = Path(tempfile.mkdtemp(prefix="civicvault-dp-"))
    try:
        os.chmod(path, 0o700)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _write_private(frame: pl.DataFrame, path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        frame.write_parquet(fh, compression="uncompressed", statistics=False)


class FrameSource:
    """Plaintext frames per dataset (tests, benchmarks, the bench's OpenDP baseline)."""

    def __init__(self, frames: dict[str, pl.DataFrame], *, spill: bool = True,
                 batch_rows: int = 100_000) -> None:
        self.frames = frames
        self.spill = spill
        self.batch_rows = batch_rows

    def _frame(self, dataset: str) -> pl.DataFrame:
        try:
            return self.frames[dataset]
        except KeyError:
            raise BadInput(f"unknown dataset '{dataset}'") from None

    def _selected(self, dataset: str, columns: Sequence[str]) -> pl.DataFrame:
        """The asked-for columns (and the person id, when the frame has one)."""
        frame = self._frame(dataset)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise BadInput(f"dataset '{dataset}' has no column '{missing[0]}'")
        return frame.select([*columns, *([PERSON] if PERSON in frame.columns else [])])

    def check(self, conn: Connection, dataset: str) -> bool:
        return PERSON in self._frame(dataset).columns

    @contextmanager
    def scan(
        self, conn: Connection, dataset: str, columns: Sequence[str]
    ) -> Iterator[pl.LazyFrame]:
        frame = self._selected(dataset, columns)
        if not self.spill:
            yield frame.lazy()
            return
        with private_workdir() as tmp:
            path = tmp / "rows.parquet"
            _write_private(frame, path)
            yield pl.scan_parquet(path)

    def batches(
        self, conn: Connection, dataset: str, columns: Sequence[str]
    ) -> Iterator[pl.DataFrame]:
        frame = self._selected(dataset, columns)
        yield from frame.iter_slices(self.batch_rows)


class VaultSource:
    """The vault store: decrypt attribute columns of live rows (erased subjects never appear)."""

    def __init__(self, home: VaultHome) -> None:
        self.home = home

    def _keyring(self) -> object:
        from vault.keyring import Keyring
        from vault.keys import provider_for

        return Keyring(provider_for(self.home))

    def check(self, conn: Connection, dataset: str) -> bool:
        from vault import store

        store.dataset_id(conn, dataset)  # unknown: BadInput
        return PERSON in store.attribute_columns(conn, dataset)

    @contextmanager
    def scan(
        self, conn: Connection, dataset: str, columns: Sequence[str]
    ) -> Iterator[pl.LazyFrame]:
        # DECRYPTION HOOK: vault.store.read_attributes is the fast columnar decrypt path
        # (one AES-GCM call per batch and column). bench/release.py times it separately.
        from vault import store

        wanted = list(columns)
        if PERSON in store.attribute_columns(conn, dataset):
            wanted.append(PERSON)
        frame = store.read_attributes(conn, self._keyring(), dataset, wanted)  # type: ignore[arg-type]
        # in memory only: decrypted rows are never written to disk, not even to a private
        # temporary file (OpenDP then serialises the frame with its plan: seconds at 10M
        # rows; releases that can stream, vault.dp.stream, do not come here)
        yield frame.lazy()

    def batches(
        self, conn: Connection, dataset: str, columns: Sequence[str]
    ) -> Iterator[pl.DataFrame]:
        from vault import store

        wanted = list(columns)
        if PERSON in store.attribute_columns(conn, dataset):
            wanted.append(PERSON)
        yield from store.iter_attributes(conn, self._keyring(), dataset, wanted)  # type: ignore[arg-type]
