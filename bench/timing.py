"""Shared timing for the bench scripts: the median wall (and CPU) time of several runs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_time(fn: Callable[[], object], runs: int,
                after: Callable[[], object] | None = None) -> float:
    """Median wall-clock seconds of ``runs`` calls of ``fn`` (``after``: see below)."""
    return median_wall_and_cpu(fn, runs, after)[0]


def median_wall_and_cpu(fn: Callable[[], object], runs: int,
                        after: Callable[[], object] | None = None) -> tuple[float, float]:
    """Median wall-clock seconds and median CPU seconds of this process (every thread,
    user + system; not a server's it talks to) of ``runs`` calls of ``fn``. ``after`` runs
    after each call, untimed: to clear away what a run left (an earlier run's database,
    kept on the server, slowed the next one)."""
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = timed(fn)
        walls.append(wall)
        cpus.append(cpu)
        if after is not None:
            after()
    return statistics.median(walls), statistics.median(cpus)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds (this process, every thread) of one call of ``fn``."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0
