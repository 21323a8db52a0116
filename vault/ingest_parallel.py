"""Ingest on a Dask cluster: workers prepare batches in parallel, one ordered writer.

The driver (the process that called :func:`store_source_on`) plans nothing new: it
takes a planned source (``vault.ingest.plan_ingest``), resolves its people once
(keyed digests, ``vault.ingest.resolve_people``) and hands the workers one task per
batch not stored yet. A worker reads its batch from the planned byte offset, applies
each column's handling (generalisation, free-text redaction, the batch's person
pseudonyms: the CPU-heavy part of a batch) and returns the prepared batch **sealed**
with AES-256-GCM under a random key of this ingest, bound to (source, batch): what
Dask holds in memory, sends over its comms or spills to a worker's disk is
ciphertext. The driver opens the batches in batch order and feeds them to the
pipelined writer (``vault.store.write_batches``: the vault's own sealing of batch
k+1 under the dataset's keys overlaps the single writer's transaction for batch k),
so ids, duplicate decisions and ledger entries are exactly the default runner's.
At most ``window`` batches are in flight, so the driver's memory does not grow with
the file either.

Idempotent per batch, like the default runner: batches already stored (a resumed
run) are not submitted, and a batch stored meanwhile by someone else is recognised
by the writer and adds nothing. Workers need the file at the same path (a shared
volume) and no vault secret: the ingest key is the only key they see.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Iterator
from typing import Any

import polars as pl
from sqlalchemy import Engine

from vault import _aead
from vault import access as _access
from vault.home import VaultHome
from vault.identity import PersonDigests
from vault.ingest import IngestPlan, IngestReport, Progress, StoreJob, _plan_batches, prepare_batch
from vault.pii.classifier import ColumnClass
from vault.pii.limits import ReaderLimits, limits_from_env


def _context(source_id: int, batch_index: int) -> bytes:
    return _aead.associated_data("ingest-transport", source_id, batch_index)


def prepare_sealed(plan: IngestPlan, batch_index: int, classes: list[ColumnClass],
                   originals: dict[str, str], declared: tuple[str, ...],
                   people: PersonDigests, key: bytes, chunk_bytes: int) -> bytes:
    """On a worker: batch ``batch_index`` read from its planned offset, prepared, sealed
    under the ingest's ``key`` (Arrow IPC inside)."""
    limits = ReaderLimits(chunk_bytes=chunk_bytes)
    _, frame = next(_plan_batches(plan, batch_index, limits))
    prepared = prepare_batch(frame, classes, originals, people.batch(0, len(people)), declared)
    del frame
    buf = io.BytesIO()
    prepared.write_ipc(buf)
    return _aead.seal(key, buf.getvalue(), _context(plan.source_id, batch_index))


def _open(key: bytes, plan: IngestPlan, batch_index: int, sealed: bytes) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(_aead.open_(key, sealed, _context(plan.source_id,
                                                                     batch_index))))


def store_source_on(client: Any, engine: Engine, home: VaultHome,
                    principal: _access.Principal, plan: IngestPlan, *,
                    progress: Progress | None = None, limits: ReaderLimits | None = None,
                    window: int | None = None) -> IngestReport:
    """``vault.ingest.store_source`` with the batches prepared on the Dask cluster of
    ``client`` (a ``distributed.Client``); same result, same report."""
    limits = limits or limits_from_env()
    job = StoreJob.start(engine, home, plan, limits)
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    window = window or 2 * workers
    key = _aead.random_key()
    rows = plan.batch_rows
    todo = deque(job.missing())

    def submit(i: int) -> Any:
        return client.submit(prepare_sealed, plan, i, job.classes, job.originals, job.declared,
                             job.people.part(i * rows, rows), key, limits.chunk_bytes,
                             pure=False, key=f"civicvault-prepare-{plan.source_id}-{i}")

    def frames() -> Iterator[tuple[int, pl.DataFrame]]:
        inflight: deque[tuple[int, Any]] = deque()
        try:
            while todo or inflight:
                while todo and len(inflight) < window:
                    i = todo.popleft()
                    inflight.append((i, submit(i)))
                i, future = inflight.popleft()
                sealed = future.result()
                future.release()
                yield i, _open(key, plan, i, sealed)
        finally:
            for _, future in inflight:
                future.cancel()

    return job.write(engine, home, principal, frames(), progress)
