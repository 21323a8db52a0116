"""Where a pipelined ingest spends its time: one line per decide / seal / write call of
``vault.store.write_batches`` (and the sealing child's requests), with its start, wall
seconds and the calling thread's CPU seconds, then the process's and its children's CPU.

    python bench/ingest_timeline.py [--rows 1000000] [--pg URL]

Same synthetic rows and layout as ``bench/vault.py``; set ``CIVICVAULT_SEAL_PROCESS`` to
compare the two sealing modes. It wraps the write path's functions to time them, so
run it for where the time goes, and ``bench/vault.py`` for the figures.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import vault.seal_worker as seal_worker
import vault.store as store
from bench.pgdb import drop_pg, fresh_pg
from bench.vault import civicvault_store, write_fixture

LOG: list[tuple[str, float, float, float]] = []
T0 = time.perf_counter()


def _timed(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return f(*args, **kwargs)
        finally:
            LOG.append((name, start - T0, time.perf_counter() - start, time.thread_time() - cpu))
    return timed


def main() -> None:
    global T0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pg", default="", help="PostgreSQL admin URL (default: SQLite)")
    args = ap.parse_args()
    for name in ("_decide_cached", "_seal", "_store_predicted", "_build_subject_index"):
        setattr(store, name, _timed(name.strip("_"), getattr(store, name)))
    seal_worker.SealWorker.result = _timed(  # type: ignore[method-assign]
        "child result", seal_worker.SealWorker.result)
    with tempfile.TemporaryDirectory(prefix="cvtimeline-") as t:
        tmp = Path(t)
        parquet, kek = write_fixture(tmp, args.rows)
        url = fresh_pg(args.pg) if args.pg else f"sqlite:///{tmp / 'v.db'}"
        try:
            T0 = time.perf_counter()
            civicvault_store(parquet, url, kek)()
            wall = time.perf_counter() - T0
        finally:
            if args.pg:
                drop_pg(args.pg, url)
    print(f"rows={args.rows:,} {seal_worker.SETTING}={seal_worker.mode()} wall {wall:.2f} s")
    print(f"{'call':<22} {'start':>7} {'wall':>6} {'cpu':>6}")
    for name, start, secs, cpu in sorted(LOG, key=lambda e: e[1]):
        print(f"{name:<22} {start:7.2f} {secs:6.2f} {cpu:6.2f}")
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"CPU: this process {me.ru_utime + me.ru_stime:.2f} s, "
          f"children {kids.ru_utime + kids.ru_stime:.2f} s")


if __name__ == "__main__":
    main()
