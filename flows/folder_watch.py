"""What happens to files in a watch folder: settle, ingest, then shred or quarantine.

Prefect-free so it is tested on its own; ``flows.watch`` runs it as a flow.

- A file is taken once it is *settled*: its size and modification time are the same on
  two consecutive polls and it has not been written for ``settle_seconds`` (1 s by
  default), so a writer that pauses between two writes is not caught half-way (writers
  that rename a finished file into place are picked up on the next poll). If the file
  changes while it is being ingested it is neither shredded nor quarantined: it is
  taken again, whole, once it settles (re-ingesting the same rows is idempotent).
  Hidden files and ``*.part``/``*.tmp``/... are ignored.
- After a successful ingest the source is removed (``after_ingest="delete"``, the
  default): overwritten with zeros, flushed, then unlinked (:func:`shred`). With
  ``after_ingest="keep"`` (opt-in; a warning is logged) it is moved to
  ``<folder>/.ingested/`` with mode 0600.
- A file the vault refuses (bad input, or a policy denial) is *quarantined*: moved
  out of the watch folder into ``<vault home>/quarantine/`` (folder 0700, file 0600,
  renamed to a timestamp so the original name, which may hold a person's name, is not
  kept). Quarantined files older than the retention (default 7 days) or beyond the
  newest ``quarantine_max_files`` are shredded at each poll.
- Any other failure (a busy database, a bug) leaves the file where it is and it is
  tried again after ``retry_seconds``.

No plaintext source file stays under the watch folder with the default policy.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.errors import AccessDenied, BadInput, CivicVaultError

DATA_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".parquet", ".json", ".jsonl", ".ndjson"})
IGNORED_SUFFIXES = frozenset({".part", ".tmp", ".partial", ".crdownload"})
KEPT_DIR = ".ingested"
QUARANTINE_DIR = "quarantine"
AFTER_INGEST = ("delete", "keep")
DEFAULT_RETENTION_DAYS = 7.0
DEFAULT_QUARANTINE_MAX = 100
_CHUNK = 1 << 20

Stamp = tuple[int, int]
IngestOne = Callable[[Path], dict[str, int]]
Log = Callable[[str], None]


def candidates(folder: Path) -> dict[Path, Stamp]:
    """Visible data files directly in ``folder`` with their (size, mtime_ns)."""
    found: dict[Path, Stamp] = {}
    for p in folder.iterdir():
        if p.name.startswith(".") or p.suffix.lower() in IGNORED_SUFFIXES:
            continue
        if p.suffix.lower() not in DATA_SUFFIXES:
            continue
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        if p.is_file():
            found[p] = (st.st_size, st.st_mtime_ns)
    return found


def settled(previous: dict[Path, Stamp], current: dict[Path, Stamp],
            quiet_seconds: float = 0.0, now_ns: int | None = None) -> list[Path]:
    """Files unchanged since the previous poll and not written for ``quiet_seconds``."""
    cutoff = (time.time_ns() if now_ns is None else now_ns) - int(quiet_seconds * 1e9)
    return sorted(p for p, stamp in current.items()
                  if previous.get(p) == stamp and stamp[0] > 0 and stamp[1] <= cutoff)


def _stamp(path: Path) -> Stamp | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns)


def shred(path: Path) -> None:
    """Overwrite ``path`` with zeros, flush it to disk, then unlink it.

    Best effort: on copy-on-write or log-structured storage (btrfs, ZFS, most SSDs'
    flash translation) old blocks may survive an overwrite; full-disk encryption of
    the watch folder's volume is the real protection (docs/SECURITY.md).
    """
    try:
        with path.open("r+b", buffering=0) as fh:
            size = os.fstat(fh.fileno()).st_size
            zeros = bytes(min(size, _CHUNK))
            done = 0
            while done < size:
                done += fh.write(zeros[: min(_CHUNK, size - done)])
            os.fsync(fh.fileno())
            fh.truncate(0)
            os.fsync(fh.fileno())
    except OSError:
        pass  # unreadable or vanished: still remove it below
    path.unlink(missing_ok=True)


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _move_private(source: Path, target: Path) -> Path:
    """Move ``source`` to ``target`` (mode 0600); across file systems copy then shred."""
    try:
        os.rename(source, target)
    except OSError:  # another file system
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, _CHUNK)
            out.flush()
            os.fsync(out.fileno())
        shred(source)
    os.chmod(target, 0o600)
    return target


def _stamped_name(suffix: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{secrets.token_hex(4)}{suffix.lower()}"


def quarantine(source: Path, quarantine_dir: Path) -> Path:
    """Move a refused file out of the watch folder into the private quarantine."""
    return _move_private(source, _private_dir(quarantine_dir) / _stamped_name(source.suffix))


def keep_aside(source: Path) -> Path:
    """``after_ingest="keep"``: move an ingested file into ``<folder>/.ingested/`` (0600)."""
    target_dir = _private_dir(source.parent / KEPT_DIR)
    target = target_dir / source.name
    if target.exists():
        target = target_dir / f"{source.stem}.{_stamped_name(source.suffix)}"
    return _move_private(source, target)


def purge_quarantine(quarantine_dir: Path, retention_seconds: float, max_files: int,
                     now: float | None = None) -> int:
    """Shred quarantined files past the retention, and the oldest beyond ``max_files``."""
    if not quarantine_dir.is_dir():
        return 0
    files = sorted((p for p in quarantine_dir.iterdir() if p.is_file()),
                   key=lambda p: p.stat().st_mtime)
    cutoff = (time.time() if now is None else now) - retention_seconds
    doomed = [p for p in files if p.stat().st_mtime < cutoff]
    kept = [p for p in files if p not in doomed]
    doomed += kept[: max(0, len(kept) - max_files)]
    for p in doomed:
        shred(p)
    return len(doomed)


@dataclass
class WatchTotals:
    files: int = 0
    rejected: int = 0
    retried: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {
        "rows_added": 0, "rows_updated": 0, "duplicates_skipped": 0, "erased_suppressed": 0,
        "batches": 0})

    def to_json(self) -> dict[str, Any]:
        return {"files": self.files, "rejected": self.rejected, "retried": self.retried,
                **self.counts}


@dataclass
class FolderWatcher:
    """Poll a folder; ingest each settled file once, then shred, keep or quarantine it."""

    folder: Path
    quarantine_dir: Path
    ingest: IngestOne
    after_ingest: str = "delete"
    retention_seconds: float = DEFAULT_RETENTION_DAYS * 86400
    quarantine_max_files: int = DEFAULT_QUARANTINE_MAX
    retry_seconds: float = 30.0
    settle_seconds: float = 1.0
    info: Log = lambda _msg: None
    warn: Log = lambda _msg: None
    totals: WatchTotals = field(default_factory=WatchTotals)
    _seen: dict[Path, Stamp] = field(default_factory=dict)
    _retry_at: dict[Path, tuple[Stamp, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.after_ingest not in AFTER_INGEST:
            raise BadInput(f"after_ingest must be one of {', '.join(AFTER_INGEST)}")
        if not self.folder.is_dir():
            raise BadInput("the watch folder does not exist")  # its path: not echoed
        if self.after_ingest == "keep":
            self.warn(f"after_ingest=keep: ingested files stay in plaintext in the watch "
                      f"folder's {KEPT_DIR}/ subfolder; the default 'delete' shreds them")

    def poll(self) -> int:
        """One pass: handle every settled file; return how many were handled."""
        purge_quarantine(self.quarantine_dir, self.retention_seconds, self.quarantine_max_files)
        current = candidates(self.folder)
        handled = 0
        for source in settled(self._seen, current, self.settle_seconds):
            waiting = self._retry_at.get(source)
            if waiting is not None and waiting[0] == current[source] \
                    and time.monotonic() < waiting[1]:
                continue
            handled += 1
            self._handle(source, current[source])
            current.pop(source, None)
        self._seen = current
        return handled

    def _still_writing(self, source: Path) -> None:
        self._retry_at.pop(source, None)
        self.totals.retried += 1
        self.warn("file changed while it was being ingested; it is taken again once it settles")

    def _handle(self, source: Path, stamp: Stamp) -> None:
        try:
            counts = self.ingest(source)
        except (BadInput, AccessDenied) as exc:
            if _stamp(source) != stamp:  # still being written: judge the whole file later
                self._still_writing(source)
                return
            self._retry_at.pop(source, None)
            quarantine(source, self.quarantine_dir)
            self.totals.rejected += 1
            self.warn(f"file quarantined: {exc.diagnostics().splitlines()[0]}")
            return
        except Exception as exc:  # transient or a bug: try again later, never lose the file
            self._retry_at[source] = (stamp, time.monotonic() + self.retry_seconds)
            self.totals.retried += 1
            reason = exc.diagnostics().splitlines()[0] if isinstance(exc, CivicVaultError) \
                else type(exc).__name__
            self.warn(f"ingest failed ({reason}); retrying in {self.retry_seconds:g} s")
            return
        if _stamp(source) != stamp:  # grew while read: keep it, take it again once whole
            self._still_writing(source)
            return
        self._retry_at.pop(source, None)
        if self.after_ingest == "delete":
            shred(source)
        else:
            keep_aside(source)
        self.totals.files += 1
        for key, value in counts.items():
            if key in self.totals.counts:
                self.totals.counts[key] += int(value)
