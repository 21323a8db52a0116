"""The Dask cluster an ingest prepares its batches on (``CIVICVAULT_DASK_ADDRESS``).

``tcp://scheduler:8786`` for a user's cluster, ``local`` or ``local:N`` for N worker
processes on this machine. Used by ``civicvault ingest`` (``flows.ingest_runner``) and
by the ingest flow's store task (``flows.ingest``); its own module so that neither of
those imports the other.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vault.errors import BadInput

DASK_ADDRESS_ENV = "CIVICVAULT_DASK_ADDRESS"


def dask_address() -> str | None:
    return os.environ.get(DASK_ADDRESS_ENV) or None


@contextmanager
def dask_client(address: str) -> Iterator[Any]:
    """A ``distributed.Client`` for ``address``: a scheduler's address, or ``local[:N]``
    for a cluster of N worker processes (default 2) that lives as long as the block.
    Inside a Dask task, the worker's own client (the task secedes while it waits)."""
    import distributed

    try:
        distributed.get_worker()
    except ValueError:
        pass
    else:
        with distributed.worker_client() as client:
            yield client
        return
    kind, _, count = address.partition(":")
    if kind == "local":
        if count and not count.isdigit():
            raise BadInput(f"{DASK_ADDRESS_ENV}: 'local' or 'local:N' (N worker processes)")
        cluster = distributed.LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=int(count or 2), threads_per_worker=1, processes=True,
            dashboard_address=":0")
        with cluster, distributed.Client(cluster) as client:  # type: ignore[no-untyped-call]
            yield client
        return
    with distributed.Client(address) as client:  # type: ignore[no-untyped-call]
        yield client
