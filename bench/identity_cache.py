"""Benchmark: a SQLite ingest of ``bench/scale.py``'s statewide-shaped rows with the identity
cache as shipped (``CIVICVAULT_IDENTITY_CACHE_MB`` unset: 1 GiB, ~89M subjects) against a
cache small enough to spill early (``--cap-mb``, default 2 MiB: ~175k subjects), at several
file sizes, in interleaved rounds, each ingest in a fresh process:

    python bench/identity_cache.py [--rows 2000000,6000000] [--cap-mb 2] [--rounds 2] [--tmp DIR]
    python bench/identity_cache.py --search 50000000 [--rounds 5]

Past its limit the cache moves its prefixes to temporary files in ``TMPDIR`` and searches
them there (``vault.identity_cache``): memory stays bounded whatever the file's size. This
says what that costs (rows/s) and whether the peak then still grows with the file (peak RSS
per row between the sizes). The default run's figures are the ones files under ~89M
subjects get; the capped run's are what a larger file's rows past the limit get.

Per run (``bench/scale.py``'s ingest step): wall seconds, rows/s, user and system CPU
seconds and peak RSS (VmHWM). Prints one JSON line per run, then the medians per size and
cache as a Markdown table, and the peak's growth per row from the smallest size to the
largest. The files are generated once each (synthetic: counters and small pools) and
removed after.

``--search N``: only the search of a spilled run (``vault.identity_cache._SpilledRun``):
N random sorted prefixes spilled to a temporary file, then a batch's worth (100,000
random prefixes and 1,000 of the run's, sorted) searched ``--rounds`` times: the median
milliseconds and the hits found (must be 1,000), against the same search in memory
(``np.searchsorted`` on the run) as the baseline; then, with the in-memory copy freed and
the peak reset (``/proc/self/clear_refs``), how far the spilled searches raised the peak
RSS (VmHWM) above the RSS before them. The run was just written, so its pages are in the
page cache: a warm figure (a run evicted under memory pressure is read from disk).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scale import _run_child, write_file_apart  # imports no vault

SETTING = "CIVICVAULT_IDENTITY_CACHE_MB"


def ingest(cap: str, path: Path, home: Path) -> dict[str, Any]:
    """One ingest in a fresh process (``bench/scale.py``'s child); ``cap`` '' is the default."""
    env = {SETTING: cap} if cap else {}
    return _run_child("ingest", str(home), "", str(path), "100000", **env)


def search(n: int, rounds: int) -> None:
    """The ``--search`` benchmark (see the module's docstring)."""
    import gc
    import time

    import numpy as np

    from vault.identity_cache import _SpilledRun

    def status_mib(field: str) -> float:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(field)) / 1024

    rng = np.random.default_rng(17)
    run = np.sort(rng.integers(0, 2**63, n, dtype=np.uint64))
    spilled = _SpilledRun([run])
    known = run[rng.integers(0, n, 1_000)].copy()
    queries = [np.sort(np.concatenate([rng.integers(0, 2**63, 100_000, dtype=np.uint64),
                                       known])) for _ in range(rounds)]
    memory = []
    for q in queries:
        t0 = time.perf_counter()
        at = np.minimum(np.searchsorted(run, q), n - 1)
        found = int((run[at] == q).sum())
        memory.append(((time.perf_counter() - t0) * 1000, found))
    del run, at
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS
    before = status_mib("VmRSS")
    rows = []
    for q in queries:
        t0 = time.perf_counter()
        hits = int(spilled.hits(q).sum())
        rows.append(((time.perf_counter() - t0) * 1000, hits))
        print(json.dumps({"spilled_ms": round(rows[-1][0], 1), "hits": hits}), flush=True)
    peak = status_mib("VmHWM")
    spilled.close()
    print(f"\nrun of {n:,} prefixes, 100,000 + 1,000 searched, {rounds} rounds (median): "
          f"spilled {statistics.median(r[0] for r in rows):.1f} ms, in memory "
          f"{statistics.median(m[0] for m in memory):.1f} ms; hits spilled "
          f"{sorted({r[1] for r in rows})}, in memory {sorted({m[1] for m in memory})}; "
          f"peak RSS during the spilled searches {peak - before:+,.1f} MiB over the "
          f"{before:,.0f} MiB before them")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="2000000,6000000", help="file sizes, comma-separated")
    ap.add_argument("--cap-mb", type=int, default=2, help="the small cache, MiB")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tmp", default=None, help="folder for the files and the vault homes")
    ap.add_argument("--search", type=int, default=0, metavar="N",
                    help="only the search of a spilled run of N prefixes")
    args = ap.parse_args()
    if args.search:
        search(args.search, args.rounds)
        return
    sizes = sorted({int(r) for r in args.rows.split(",")})
    caps = ("", str(args.cap_mb))
    os.environ.pop(SETTING, None)
    runs: dict[tuple[int, str], list[dict[str, Any]]] = {(n, c): [] for n in sizes for c in caps}
    with tempfile.TemporaryDirectory(prefix="cvcache-", dir=args.tmp) as t:
        for n in sizes:
            path = Path(t) / f"statewide-{n}.csv"
            write_file_apart(path, n)
            for k in range(args.rounds):
                for cap in caps if k % 2 == 0 else caps[::-1]:
                    home = Path(t) / f"home-{n}-{cap or 'default'}-{k}"
                    r = ingest(cap, path, home)
                    runs[(n, cap)].append(r)
                    print(json.dumps({"rows_in_file": n, "round": k + 1,
                                      "cap_mb": cap or "default", **r}), flush=True)
                    shutil.rmtree(home)
            path.unlink()

    def med(rs: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(r[key] for r in rs))

    print(f"\ncolumns=70 rounds={args.rounds} cores={os.cpu_count()} batch=100,000 rows")
    print("| rows | identity cache | wall s | rows/s | user s | sys s | peak RSS MiB |\n"
          "|---:|---|---:|---:|---:|---:|---:|")
    for n in sizes:
        for cap in caps:
            rs = runs[(n, cap)]
            label = f"{cap} MiB (spills)" if cap else "default (1 GiB)"
            print(f"| {n:,} | {label} | {med(rs, 'seconds'):.1f} | "
                  f"{med(rs, 'rows_per_second'):,.0f} | {med(rs, 'user_s'):.1f} | "
                  f"{med(rs, 'sys_s'):.1f} | {med(rs, 'peak_rss_mib'):,.0f} |")
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        for cap in caps:
            grow = (med(runs[(hi, cap)], "peak_rss_mib") - med(runs[(lo, cap)], "peak_rss_mib"))
            print(f"peak growth {lo:,} -> {hi:,} rows, {cap + ' MiB' if cap else 'default'}: "
                  f"{grow * 2**20 / (hi - lo):.1f} bytes a row")


if __name__ == "__main__":
    main()
