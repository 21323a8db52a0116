"""Saved checkpoints: one naming rule, one loader, one writer, and never backwards.

A folder of signed checkpoint notes, one file each, named
``<size zero-padded to 12>-<UTC time>.checkpoint`` (older homes may hold
``<size>.checkpoint`` / ``<size>-<n>.checkpoint``: read, never written). The newest
is the one with the largest tree size, then the latest written among equals.

``CheckpointStore.save`` writes a note only if it verifies under the log's keys and
origin and *extends* the newest saved one: a larger tree with a consistency proof
from it, or the same tree (same size and root, e.g. with more cosignatures). Files
are created exclusively (never overwritten: a signed checkpoint may be evidence).
``locked()`` makes "read the newest, sign, save" one step across processes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.errors import BadInput, LedgerTampered, VerificationFailed, unreadable
from ledger.filelock import folder_lock
from ledger.signer import Verifier
from ledger.verify import verify_checkpoint_consistency

__all__ = ["SUFFIX", "CheckpointStore", "SavedCheckpoint"]

SUFFIX = ".checkpoint"
_NAME = re.compile(r"(\d{1,20})(-[0-9A-Za-z]+)?\.checkpoint")


MAX_CHECKPOINT_BYTES = 64 * 1024  # a checkpoint with 100 cosignatures is ~15 KB


@dataclass(frozen=True)
class SavedCheckpoint:
    path: Path
    note: str
    checkpoint: Checkpoint

    @property
    def size(self) -> int:
        return self.checkpoint.size


class CheckpointStore:
    """The saved checkpoints of one log (``origin``), verified with ``keys``."""

    def __init__(self, folder: Path, origin: str, keys: Iterable[str | Verifier]) -> None:
        self.folder = folder
        self.origin = origin
        self.keys = list(keys)

    # -- naming and loading -------------------------------------------------------------

    @staticmethod
    def size_of(path: Path) -> int | None:
        match = _NAME.fullmatch(path.name)
        return int(match.group(1)) if match else None

    def files(self) -> list[Path]:
        """Saved checkpoint files, oldest first (by tree size, then write order)."""
        if not self.folder.is_dir():
            return []
        found = [(size, p.name, p) for p in self.folder.glob(f"*{SUFFIX}")
                 if (size := self.size_of(p)) is not None]
        return [p for _, _, p in sorted(found)]  # names sort by write time within a size

    def open(self, path: Path, what: str = "the checkpoint file") -> SavedCheckpoint:
        """Read and verify one checkpoint file (any path) against this log's keys and origin.
        Errors name it as ``what``, never by its path (a caller may have typed it)."""
        try:
            with path.open("rb") as fh:
                raw = fh.read(MAX_CHECKPOINT_BYTES + 1)
            if len(raw) > MAX_CHECKPOINT_BYTES:
                raise BadInput(f"{what} is larger than {MAX_CHECKPOINT_BYTES} bytes")
            note = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read {what} ({unreadable(exc)})") from None
        return SavedCheckpoint(path, note, open_checkpoint(note, self.keys, origin=self.origin))

    def latest(self) -> SavedCheckpoint | None:
        """The newest saved checkpoint, verified; a bad newest file is an error, not skipped."""
        files = self.files()
        return self.open(files[-1], f"saved checkpoint {files[-1].name}") if files else None

    # -- writing ------------------------------------------------------------------------

    def locked(self) -> AbstractContextManager[None]:
        """Exclusive across processes: hold it from reading the newest to saving."""
        return folder_lock(self.folder)

    def check_extends(self, checkpoint: Checkpoint, proof: Sequence[bytes],
                      previous: SavedCheckpoint | Literal["read"] | None = "read") -> None:
        """Raise ``LedgerTampered`` unless ``checkpoint`` extends the newest saved one.

        ``proof`` is the consistency proof from the newest saved size (ignored when
        the sizes are equal or nothing is saved yet). ``previous``: the newest saved
        checkpoint if the caller holds ``locked()`` and has just read it.
        """
        if previous == "read":
            previous = self.latest()
        if previous is None or previous.size == 0:
            return
        last = previous.checkpoint
        if checkpoint.size == last.size:
            if checkpoint.root != last.root:
                raise LedgerTampered(f"two different roots for tree size {last.size} "
                                     "(history rewritten or forked)")
            return
        verify_checkpoint_consistency(last, checkpoint.size, checkpoint.root, proof)

    def save(self, note: str, proof: Sequence[bytes] = (),
             previous: SavedCheckpoint | Literal["read"] | None = "read") -> SavedCheckpoint:
        """Verify ``note``, check it extends the newest saved checkpoint, write a new file."""
        try:
            checkpoint = open_checkpoint(note, self.keys, origin=self.origin)
        except VerificationFailed as exc:
            raise BadInput(f"refusing to save a checkpoint that does not verify: {exc}") from None
        self.check_extends(checkpoint, proof, previous)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        for n in range(1000):
            tail = stamp if n == 0 else f"{stamp}{n:03d}"
            path = self.folder / f"{checkpoint.size:012d}-{tail}{SUFFIX}"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(note)
                out.flush()
                os.fsync(out.fileno())
            return SavedCheckpoint(path, note, checkpoint)
        raise BadInput(f"too many checkpoints saved at once for size {checkpoint.size}")
