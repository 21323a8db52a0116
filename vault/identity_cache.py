"""Who is already in a dataset: live subjects by identity digest, from the database
(:func:`_existing_subjects`) or from what this process wrote last (:class:`IdentityCache`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import polars as pl
from sqlalchemy import Connection, select

from vault import pg_planning
from vault.tables import T_BLIND, T_SUBJECT

__all__ = ["IdentityCache", "KnownSubject"]

_LOOKUP_CHUNK = 2000


def _existing_subjects(
    conn: Connection, ds_id: int, column: str, digests: Iterable[bytes]
) -> dict[bytes, Any]:
    """Live subjects by identity digest (PostgreSQL: one index probe per digest, see
    ``vault.pg_planning``, so the cost does not depend on the planner's statistics)."""
    found: dict[bytes, Any] = {}
    todo = list(digests)
    postgres = conn.dialect.name == "postgresql"
    for i in range(0, len(todo), _LOOKUP_CHUNK):
        chunk = todo[i : i + _LOOKUP_CHUNK]
        if postgres:
            for r in conn.execute(pg_planning.lookup_sql(),
                                  {"wanted": chunk, "ds": ds_id, "col": column}):
                found[bytes(r.digest)] = r
            continue
        rows = conn.execute(
            select(T_BLIND.c.digest, T_SUBJECT.c.id, T_SUBJECT.c.fingerprint,
                   T_SUBJECT.c.wrapped_key, T_SUBJECT.c.key_id,
                   T_SUBJECT.c.current_batch_id, T_SUBJECT.c.current_row)
            .join(T_SUBJECT, T_SUBJECT.c.id == T_BLIND.c.subject_id)
            .where(T_BLIND.c.dataset_id == ds_id, T_BLIND.c.column == column,
                   T_BLIND.c.digest.in_(chunk), T_SUBJECT.c.erased_at.is_(None))
        ).all()
        for r in rows:
            found[bytes(r.digest)] = r
    return found


class KnownSubject(NamedTuple):
    """What dedup needs to know of a live subject (same names as the lookup query's row)."""

    id: int
    fingerprint: bytes | None
    wrapped_key: bytes
    key_id: int
    current_batch_id: int
    current_row: int


class IdentityCache:
    """Identity digests of the subjects this process wrote into one dataset.

    Later batches of the same ingest then need no database lookups. The cache is
    trusted only while the dataset's highest subject id is the one this process
    wrote last; if anyone else wrote subjects meanwhile, the database is asked.
    The last ``RECENT_BATCHES`` batches are kept whole, one Polars frame per batch
    (no Python object per subject; a lookup is a semi-join, and a subject stored
    twice answers with its last state). Older batches are committed by then and
    shrink to sorted 8-byte digest prefixes, so memory stays flat on a
    20-million-row file (8 bytes a subject): a digest whose prefix is among them
    is *possibly known* (:meth:`possibly_known`) and must be looked up in the
    database; every other digest is certainly new.
    """

    _COLUMNS = ("digest", *KnownSubject._fields)
    RECENT_BATCHES = 2  # the pipelined writer may not have committed the last one

    def __init__(self) -> None:
        self.ds_id: int | None = None
        self.watermark: int | None = None
        self._parts: list[pl.DataFrame] = []
        self._old: np.ndarray[Any, np.dtype[np.uint64]] = np.zeros(0, dtype=np.uint64)
        self._old_runs: list[np.ndarray[Any, np.dtype[np.uint64]]] = []

    def valid_for(self, ds_id: int, max_subject_id: int | None) -> bool:
        return self.ds_id == ds_id and self.watermark == max_subject_id

    def add(self, digests: list[bytes | None], ids: list[int], fingerprints: list[bytes],
            wrapped: list[bytes], key_ids: list[int], batch_id: int,
            rows: list[int]) -> None:
        part = pl.DataFrame({
            "digest": pl.Series(digests, dtype=pl.Binary),
            "id": pl.Series(ids, dtype=pl.Int64),
            "fingerprint": pl.Series(fingerprints, dtype=pl.Binary),
            "wrapped_key": pl.Series(wrapped, dtype=pl.Binary),
            "key_id": pl.Series(key_ids, dtype=pl.Int64),
            "current_batch_id": pl.Series([batch_id] * len(ids), dtype=pl.Int64),
            "current_row": pl.Series(rows, dtype=pl.Int64),
        }).drop_nulls("digest")
        if part.height:
            self._parts.append(part)
        while len(self._parts) > self.RECENT_BATCHES:
            self._compact(self._parts.pop(0))

    def _compact(self, part: pl.DataFrame) -> None:
        self._old_runs.append(np.sort(_prefixes(part.get_column("digest").to_list())))
        fresh = sum(len(r) for r in self._old_runs)
        if fresh >= max(len(self._old) // 4, 1 << 16):
            # grown in place (realloc: a large block is remapped, not copied), the runs
            # appended, then one stable sort (timsort: it finds the sorted runs and merges
            # them, with a buffer of the smaller side). Sorting a concatenated copy held
            # the old prefixes three times over for a moment: 8 -> ~24 bytes a subject
            held = len(self._old)
            merged = self._old if self._old.flags.owndata else self._old.copy()
            self._old = np.zeros(0, dtype=np.uint64)
            try:
                merged.resize(held + fresh, refcheck=False)
                for run in self._old_runs:
                    merged[held:held + len(run)] = run
                    held += len(run)
                merged.sort(kind="stable")
            except BaseException:  # out of memory mid-merge: forget it all, so the
                self.clear()  # database is asked (a digest missed would be a duplicate)
                raise
            self._old_runs = []
            self._old = merged

    def lookup(self, wanted: Iterable[bytes]) -> dict[bytes, KnownSubject]:
        """The subjects of the recent batches among the ``wanted`` identity digests."""
        if not self._parts:
            return {}
        keys = pl.DataFrame({"digest": pl.Series(list(wanted), dtype=pl.Binary)})
        hits = pl.concat(self._parts, rechunk=False).join(keys, on="digest", how="semi")
        if hits.height == 0:
            return {}
        hits = hits.unique(subset="digest", keep="last", maintain_order=True)
        return {r[0]: KnownSubject(*r[1:]) for r in hits.iter_rows()}

    def possibly_known(self, wanted: Iterable[bytes]) -> set[bytes]:
        """Digests (not found by :meth:`lookup`) that older, compacted batches may hold."""
        todo = list(wanted)
        if not todo or not (len(self._old) or self._old_runs):
            return set()
        # searched in ascending order: each search starts near the last one's place in the
        # run (100k digests against 900k: 26 -> 15 ms, on the thread that decides)
        prefixes = _prefixes(todo)
        order = np.argsort(prefixes)
        prefixes = prefixes[order]
        hit = np.zeros(len(todo), dtype=bool)
        for run in (self._old, *self._old_runs):
            if len(run):
                at = np.minimum(np.searchsorted(run, prefixes), len(run) - 1)
                hit |= run[at] == prefixes
        return {todo[i] for i in order[np.flatnonzero(hit)]}

    def clear(self) -> None:
        self._parts.clear()
        self._old = np.zeros(0, dtype=np.uint64)
        self._old_runs = []
        self.ds_id = self.watermark = None

    def __len__(self) -> int:
        """Distinct subjects known (recent batches exactly, compacted ones by prefix)."""
        old = np.unique(np.concatenate([self._old, *self._old_runs]))
        if not self._parts:
            return len(old)
        recent = pl.concat(self._parts, rechunk=False).get_column("digest").unique().to_list()
        return len(old) + int(np.count_nonzero(~np.isin(_prefixes(recent), old)))


def _prefixes(digests: Sequence[bytes]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """The first 8 bytes of each digest as an unsigned integer (zero-padded if shorter)."""
    if not digests:
        return np.zeros(0, dtype=np.uint64)
    width = len(digests[0])
    if width >= 8 and min(map(len, digests)) == width == max(map(len, digests)):
        # every digest is as long as the first (a blind index's are): cut the prefixes
        # out of one buffer, without a bytes object per digest (issue 17: 100k digests
        # 12.8 -> 5.9 ms, on the thread that decides and seals)
        rows = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), width)[:, :8]
        return np.ascontiguousarray(rows).view(">u8").ravel().astype(np.uint64)
    return np.frombuffer(b"".join(d[:8].ljust(8, b"\0") for d in digests),
                         dtype=">u8").astype(np.uint64)
