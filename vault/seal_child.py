"""The sealing child of ``vault.seal_worker``: its entry point and its loop.

Started as ``python -c "from vault.seal_child import main; main(FD)"`` with one end of a
socket pair; it decides and seals the batches the parent sends, one at a time, with the
write path's own functions (``vault.store``), and exits when the parent's end closes.
"""

from __future__ import annotations

import io
import signal
from multiprocessing.connection import Connection
from typing import Any

import polars as pl

from vault import arenas, store


def main(fd: int) -> None:
    """The child's entry point: serve the parent on the socket ``fd`` until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    with arenas.retained():  # as the parent's ingest: every batch's objects, again
        _serve(Connection(fd))


def _serve(conn: Connection) -> None:
    """Decide and seal the batches the parent sends, one at a time."""
    layout: Any = None
    cache: Any = None
    erased: set[bytes] = set()
    ds_id, dialect, key_deferred = 0, "", False
    try:
        while True:
            msg = conn.recv()
            if msg[0] == "setup":
                _, layout, ds_id, dialect, erased, cache, key_deferred = msg
                continue
            _, raw, keys, ids = msg
            try:
                frame = pl.read_ipc(io.BytesIO(raw))
                del raw, msg
                d, needs_db = store._decide_cached(frame, layout, keys, cache, erased.__and__)
                if d.upd_rows or not d.new_rows or needs_db:
                    conn.send(("declined",))
                    continue
                s = store._seal(frame, layout, keys, ds_id, d, ids, {}, dialect, key_deferred)
                store._remember(cache, ds_id, ids.watermark, keys, d, s)
                conn.send(("ok", *store._portable(d, s)))
            except Exception as exc:  # the parent seals this batch in-process
                conn.send(("error", type(exc).__name__))  # a type, never a value
    except (EOFError, OSError):  # the parent closed its end (or died): nothing to keep
        return
