"""Who is already in a dataset: live subjects by identity digest, from the database
(:func:`_existing_subjects`) or from what this process wrote last (:class:`IdentityCache`)."""

from __future__ import annotations

import errno
import mmap
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import polars as pl
from sqlalchemy import Connection, select

from vault import pg_planning
from vault.bulk import IntArray, arrow_binary
from vault.errors import BadInput, TempFolderFull, TempFolderUnwritable
from vault.tables import T_BLIND, T_SUBJECT

__all__ = ["CACHE_ENV", "IdentityCache", "KnownSubject", "cache_limit"]

_LOOKUP_CHUNK = 2000

CACHE_ENV = "CIVICVAULT_IDENTITY_CACHE_MB"
DEFAULT_CACHE_MB = 1024
"""The memory an ingest's :class:`IdentityCache` may take for its compacted batches' prefixes:
about 89 million subjects. Past it they move to a temporary file (``_SpilledRun``)."""
_BYTES_PER_SUBJECT = 12  # an 8-byte prefix, and up to half as much again while a merge sorts


def cache_limit() -> int:
    """How many compacted subjects an ingest's cache may hold in memory, by
    ``CIVICVAULT_IDENTITY_CACHE_MB`` (MiB, 0 to 65536; ``DEFAULT_CACHE_MB`` when unset).
    A bad setting is refused (BadInput), without its value."""
    raw = os.environ.get(CACHE_ENV, "").strip()
    if not raw:
        mib = DEFAULT_CACHE_MB
    elif len(raw) <= 5 and raw.isascii() and raw.isdigit() and int(raw) <= 65536:
        mib = int(raw)
    else:
        raise BadInput(f"{CACHE_ENV} must be a whole number of MiB from 0 to 65536")
    return (mib << 20) // _BYTES_PER_SUBJECT


_PAGE = 512  # prefixes a fence stands for: one 4 KiB page of a spilled run
_SEARCH_CHUNK = 4_096  # prefixes searched between two releases of the pages read
_MERGE_CHUNK = 1 << 20  # prefixes of the older run merged at a time (8 MiB)
_DONTNEED: int | None = getattr(mmap, "MADV_DONTNEED", None)
_TMP_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class _SpilledRun:
    """Sorted prefixes in an unnamed temporary file (gone when unmapped, or with the
    process), searched through a read-only mapping. Each page's first prefix (a *fence*,
    1/512 of the run) stays in memory, so a search reads only the page that may hold a
    prefix; the pages read are given back after every ``_SEARCH_CHUNK`` prefixes
    (``MADV_DONTNEED``: they stay in the page cache, not in this process's RSS; at most
    16 MiB are mapped at a time). 100k sorted prefixes against a 50M run: 22 ms, peak RSS
    +18 MiB (``bench/identity_cache.py --search``, issue 17; 16k prefixes between
    releases: +66 MiB, as fast). Written from ``chunks``, sorted and ascending from one chunk to
    the next; the file is closed once mapped (the mapping keeps it: one descriptor)."""

    def __init__(self, chunks: Iterable[np.ndarray[Any, np.dtype[np.uint64]]]) -> None:
        fences, n = [], 0
        with tempfile.TemporaryFile(prefix="civicvault-known-") as fh:
            for chunk in chunks:
                fences.append(chunk[(-n) % _PAGE::_PAGE].copy())
                view = np.ascontiguousarray(chunk).data.cast("B")
                while view:  # os.write keeps the errno (ENOSPC, EFBIG) numpy's tofile loses
                    view = view[os.write(fh.fileno(), view[:1 << 24]):]
                n += len(chunk)
            self._map = mmap.mmap(fh.fileno(), n * 8, prot=mmap.PROT_READ)
        self.n = n
        self.fences = np.concatenate(fences)
        self.run: np.ndarray[Any, np.dtype[np.uint64]] = np.frombuffer(self._map, dtype=np.uint64)

    def release(self) -> None:
        """Give back the pages read (they stay in the page cache)."""
        if _DONTNEED is not None:
            self._map.madvise(_DONTNEED)

    def hits(self, prefixes: np.ndarray[Any, np.dtype[np.uint64]]
             ) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Which of the (sorted) ``prefixes`` the run holds."""
        out = np.zeros(len(prefixes), dtype=bool)
        for start in range(0, len(prefixes), _SEARCH_CHUNK):
            q = prefixes[start:start + _SEARCH_CHUNK]
            page = np.searchsorted(self.fences, q, side="right").astype(np.int64) - 1
            lo = np.maximum(page, 0) * _PAGE  # a binary search within each prefix's page
            hi = np.minimum(lo + _PAGE, self.n)
            while (live := lo < hi).any():
                mid = (lo + hi) // 2
                less = live & (self.run[np.minimum(mid, self.n - 1)] < q)
                lo = np.where(less, mid + 1, lo)
                hi = np.where(live & ~less, mid, hi)
            out[start:start + len(q)] = (page >= 0) & (self.run[np.minimum(lo, self.n - 1)] == q)
            self.release()
        return out

    def close(self) -> None:
        if not self._map.closed:
            del self.run
            self._map.close()


def _merged(old: _SpilledRun, new: _SpilledRun) -> Iterator[np.ndarray[Any, np.dtype[np.uint64]]]:
    """Two spilled runs' prefixes in order, a chunk of ``old`` (and the part of ``new`` up
    to its last prefix) at a time, the pages read given back after each."""
    taken = 0
    for start in range(0, old.n, _MERGE_CHUNK):
        top = min(start + _MERGE_CHUNK, old.n)
        upto = new.n if top == old.n else int(np.searchsorted(new.run, old.run[top - 1],
                                                              side="right"))
        chunk = np.concatenate([old.run[start:top], new.run[taken:upto]])
        chunk.sort()
        taken = upto
        old.release()
        new.release()
        yield chunk


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

    In memory the prefixes are bounded by ``limit`` subjects (:func:`cache_limit`): a
    compaction that would pass it merges them and moves the merged run to a temporary
    file (:class:`_SpilledRun`, 1/512 of it kept as fences), where later searches find
    them. So the cache's memory is bounded whatever the file's size, its answers are the
    same, and the ingest stays on its pipelined path. A cache with spilled runs is not
    pickled (``vault.seal_worker`` keeps such an ingest in its process).
    """

    _COLUMNS = ("digest", *KnownSubject._fields)
    RECENT_BATCHES = 2  # the pipelined writer may not have committed the last one

    def __init__(self, limit: int | None = None) -> None:
        self.ds_id: int | None = None
        self.watermark: int | None = None
        self.limit = cache_limit() if limit is None else limit
        self._parts: list[pl.DataFrame] = []
        self._old: np.ndarray[Any, np.dtype[np.uint64]] = np.zeros(0, dtype=np.uint64)
        self._old_runs: list[np.ndarray[Any, np.dtype[np.uint64]]] = []
        self._spilled: list[_SpilledRun] = []

    @property
    def spilled(self) -> int:
        """How many runs of prefixes are in temporary files."""
        return len(self._spilled)

    def __getstate__(self) -> dict[str, Any]:
        if self._spilled:  # its files are this process's
            raise TypeError("an IdentityCache with spilled runs stays in its process")
        return self.__dict__.copy()

    def valid_for(self, ds_id: int, max_subject_id: int | None) -> bool:
        return self.ds_id == ds_id and self.watermark == max_subject_id

    def add(self, digests: list[bytes | None], ids: list[int], fingerprints: list[bytes],
            wrapped: list[bytes], key_ids: Sequence[int] | IntArray, batch_id: int,
            rows: Sequence[int] | IntArray) -> None:
        """Learn a batch's subjects. ``key_ids`` and ``rows`` may be NumPy arrays, which
        Polars takes as they are (a list of 100k ints it converts one by one)."""
        part = pl.DataFrame({
            "digest": pl.Series(digests, dtype=pl.Binary),
            "id": pl.Series(ids, dtype=pl.Int64),
            "fingerprint": pl.Series(fingerprints, dtype=pl.Binary),
            "wrapped_key": pl.Series(wrapped, dtype=pl.Binary),
            "key_id": pl.Series(key_ids, dtype=pl.Int64),
            "current_batch_id": pl.Series(np.full(len(ids), batch_id, dtype=np.int64)),
            "current_row": pl.Series(rows, dtype=pl.Int64),
        }).drop_nulls("digest")
        if part.height:
            self._parts.append(part)
        while len(self._parts) > self.RECENT_BATCHES:
            self._compact(self._parts.pop(0))

    def _compact(self, part: pl.DataFrame) -> None:
        self._old_runs.append(np.sort(_prefixes(part.get_column("digest"))))
        fresh = sum(len(r) for r in self._old_runs)
        over = len(self._old) + fresh > self.limit
        if over or fresh >= max(len(self._old) // 4, 1 << 16):
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
            if over:
                self._old = np.zeros(0, dtype=np.uint64)
                self._spill(merged)

    def _spill(self, run: np.ndarray[Any, np.dtype[np.uint64]]) -> None:
        """Move ``run`` to a temporary file; merge the last two spilled runs while the older
        is at most twice the newer, so there are O(log(subjects / limit)) of them. If that
        fails, forget it all (as a failed merge does), so the database is asked."""
        try:
            self._spilled.append(_SpilledRun([run]))
            while len(self._spilled) >= 2 and self._spilled[-2].n <= 2 * self._spilled[-1].n:
                new, old = self._spilled.pop(), self._spilled.pop()
                try:
                    self._spilled.append(_SpilledRun(_merged(old, new)))
                finally:
                    old.close()
                    new.close()
        except OSError as exc:  # no path, no message: the OS error's may name the folder
            self.clear()
            if exc.errno in _TMP_FULL:
                raise TempFolderFull("the identity cache could not move its prefixes to the "
                                     "temp folder (TMPDIR)") from None
            raise TempFolderUnwritable("the identity cache could not write its prefixes "
                                       "to the temp folder (TMPDIR)") from None
        except BaseException:
            self.clear()
            raise

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
        if not todo or not (len(self._old) or self._old_runs or self._spilled):
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
        for spilled in self._spilled:
            hit |= spilled.hits(prefixes)
        return {todo[i] for i in order[np.flatnonzero(hit)]}

    def clear(self) -> None:
        self.ds_id = self.watermark = None  # first: whatever else fails, the database is asked
        self._parts.clear()
        self._old = np.zeros(0, dtype=np.uint64)
        self._old_runs = []
        spilled, self._spilled = self._spilled, []
        for run in spilled:
            run.close()

    def __len__(self) -> int:
        """Distinct subjects known (recent batches exactly, compacted ones by prefix)."""
        old = np.unique(np.concatenate([self._old, *self._old_runs,
                                        *(s.run for s in self._spilled)]))
        if not self._parts:
            return len(old)
        recent = pl.concat(self._parts, rechunk=False).get_column("digest").unique()
        return len(old) + int(np.count_nonzero(~np.isin(_prefixes(recent), old)))


def _prefixes(digests: Sequence[bytes] | pl.Series) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """The first 8 bytes of each digest as an unsigned integer (zero-padded if shorter)."""
    col = digests if isinstance(digests, pl.Series) else pl.Series(digests, dtype=pl.Binary)
    n = len(col)
    if not n:
        return np.zeros(0, dtype=np.uint64)
    # Arrow's buffers hold the digests back to back, with their offsets: when every digest
    # is as long as the first (a blind index's are), the prefixes are cut out of that buffer
    # with no bytes object per digest, and a cache part's column is never made a list of
    # them (issue 17: a join of every digest and two passes for their lengths had been
    # most of each batch's prefixes, on the thread that decides and seals)
    buf, offsets = arrow_binary(col)
    first, width = int(offsets[0]), int(offsets[1] - offsets[0])
    if width >= 8 and bool((np.diff(offsets) == width).all()):
        data = np.frombuffer(buf, dtype=np.uint8)[first:first + n * width]
        rows = data.reshape(n, width)[:, :8]
        return np.ascontiguousarray(rows).view(">u8").ravel().astype(np.uint64)
    return np.frombuffer(b"".join(d[:8].ljust(8, b"\0") for d in col.to_list()),
                         dtype=">u8").astype(np.uint64)
