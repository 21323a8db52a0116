"""Sealing ingest batches in a second process, so that it runs beside the writer.

The pipelined writer (``vault.store.write_batches``) seals batch k+1 while batch k is
written. In one process both hold the GIL for their Python parts: the sealing side
(a blind-index HMAC per value, an AES-GCM call per record and per subject key, the
decision's per-row objects) is pure-Python-bound, and every time the writer thread
comes back from SQLite or the PostgreSQL driver it waits for its turn. Here the
decision and the sealing of a batch (``vault.store._decide_cached`` and ``_seal``, the
same functions) run in a child process instead (``vault.seal_child``), which keeps its
own copy of the ingest's identity cache; the parent only writes.

What crosses the pipe (an OS pipe between two processes of this user, never a file):
the data keys of the batch (``BatchKeys``) and the plaintext rows of each batch (Arrow
IPC) going in; the decision and the sealed batch (ciphertexts, digests, ids) coming
back, without the per-row maps the writer does not read. The child writes nothing
anywhere, so a crash of either process leaves what the writer committed, whole
batches only, as before; the child exits when the parent's end of the pipe closes.

Setting ``CIVICVAULT_SEAL_PROCESS``: ``off`` (default: seal in the ingest's own thread)
or ``on`` (a child process, when this process may use two or more cores; on one core
the setting changes nothing). Off by default because on the 2-core machine of
docs/BENCHMARKS.md ("Sealing in a second process") it did not make a 1M-row ingest
faster: with the pipeline the writer thread is already busy about as long as the sealer,
and the child adds its pickling and start-up (~2 CPU s per 1M rows). The child starts
once the second batch of an ingest has been sealed (its start-up overlaps the
in-process sealing of the third) and takes over from the fourth, so ingests of three
batches or fewer pay its start-up for nothing; a batch it declines (it updates stored
subjects, or names one only the database can tell apart), a child that fails, or
predictions that fail end its use for the rest of the ingest, which continues the
in-process way. Contents, ids and ledger entries are those of the in-process path
(tests hold them equal).
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import polars as pl

from vault.errors import BadInput

if TYPE_CHECKING:
    from vault.identity_cache import IdentityCache
    from vault.layout import ColumnLayout

SETTING = "CIVICVAULT_SEAL_PROCESS"
MODES = ("off", "on")


def mode() -> str:
    """The ``CIVICVAULT_SEAL_PROCESS`` setting (``off`` when unset)."""
    raw = os.environ.get(SETTING, "").strip().lower() or "off"
    if raw not in MODES:
        raise BadInput(f"{SETTING} must be one of {', '.join(MODES)}")
    return raw


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity
        return os.cpu_count() or 1


def wanted() -> bool:
    """Whether an ingest should seal in a child process (the setting, and two cores)."""
    if mode() == "off":
        return False
    if os.name != "posix" or not sys.executable:  # pragma: no cover - no child to start
        return False
    return cores() >= 2


class SealWorker:
    """The child process and the parent's end of its pipe. One request at a time: the
    parent sends a batch, then reads its answer, so neither side can block the other."""

    def __init__(self) -> None:
        # A fresh interpreter (no inherited threads or locks, unlike fork), started without
        # multiprocessing's spawn, which would re-run the caller's ``__main__`` module.
        ours, theirs = socket.socketpair()
        try:
            code = f"from vault.seal_child import main; main({theirs.fileno()})"
            self._proc = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed program
                [sys.executable, "-c", code], pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self.asked = False

    def setup(self, layout: ColumnLayout, ds_id: int, dialect: str, erased: set[bytes],
              cache: IdentityCache, key_deferred: bool = False) -> None:
        """Hand the child what deciding and sealing need besides each batch (no answer);
        ``key_deferred``: as ``vault.store._seal``'s."""
        self._conn.send(("setup", layout, ds_id, dialect, erased, cache, key_deferred))

    def seal(self, frame: pl.DataFrame, keys: Any, ids: Any) -> None:
        """Send batch ``frame`` to be decided and sealed under ``keys`` with ids ``ids``."""
        buf = io.BytesIO()
        frame.write_ipc(buf, compression="uncompressed")
        self._conn.send(("seal", buf.getvalue(), keys, ids))
        self.asked = True

    def result(self) -> tuple[Any, Any] | None:
        """The (decision, sealed batch) of the last batch sent, or None if the child
        declined it or failed (the caller then writes it the in-process way)."""
        self.asked = False
        try:
            msg = self._conn.recv()
        except (EOFError, OSError):
            return None
        if msg[0] != "ok":
            return None
        return msg[1], msg[2]

    def close(self) -> None:
        """Stop the child (it exits when its end of the pipe closes)."""
        try:
            self._conn.close()
        finally:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover - a child stuck in a call
                self._proc.kill()
                self._proc.wait()
