"""Benchmark: a SQLite ingest of ``bench/scale.py``'s statewide-shaped rows with the
allocator settings ``import vault`` applies (``CIVICVAULT_ALLOCATORS=tuned``, see
``vault.allocators``) against the allocators as they come (``default``), in
interleaved rounds, each ingest in a fresh process:

    python bench/allocators.py [--rows 2000000] [--rounds 3] [--tmp DIR]

Per run (``bench/scale.py``'s ingest step): wall seconds, the process's user and system
CPU seconds, minor page faults and peak RSS (VmHWM). Prints one JSON line per run, then
the medians per setting as a Markdown table. The file is generated once (synthetic:
counters and small pools) and removed after. Allocator settings of the caller's own
(``_RJEM_MALLOC_CONF``, ``GLIBC_TUNABLES``, ``MALLOC_*``) are dropped for both.
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

MODES = ("default", "tuned")


def ingest(mode: str, path: Path, home: Path) -> dict[str, Any]:
    """One ingest in a fresh process (``bench/scale.py``'s child), with ``mode``."""
    return _run_child("ingest", str(home), "", str(path), "100000",
                      CIVICVAULT_ALLOCATORS=mode)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tmp", default=None, help="folder for the file and the vault homes")
    args = ap.parse_args()
    for name in [k for k in os.environ if k.startswith(("_RJEM_", "_CIVICVAULT_", "MALLOC_"))
                 or k == "GLIBC_TUNABLES"]:
        del os.environ[name]  # before anything here imports vault (bench.scale, lazily)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="cvalloc-", dir=args.tmp) as t:
        path = Path(t) / "statewide.csv"
        write_file_apart(path, args.rows)  # this process stays free of Polars
        for k in range(args.rounds):
            order = MODES if k % 2 == 0 else MODES[::-1]
            for mode in order:
                home = Path(t) / f"home-{mode}-{k}"
                r = ingest(mode, path, home)
                runs[mode].append(r)
                print(json.dumps({"round": k + 1, "mode": mode, **r}), flush=True)
                shutil.rmtree(home)
    print(f"\nrows={args.rows:,} columns=70 rounds={args.rounds} cores={os.cpu_count()}")
    print("| allocators | wall s | user s | sys s | minor faults | peak RSS MiB |\n"
          "|---|---:|---:|---:|---:|---:|")
    for mode in MODES:
        rs = runs[mode]

        def med(key: str, rs: list[dict[str, Any]] = rs) -> float:
            return float(statistics.median(r[key] for r in rs))

        print(f"| {mode} | {med('seconds'):.2f} | {med('user_s'):.1f} | {med('sys_s'):.1f} | "
              f"{med('minor_faults'):,.0f} | {med('peak_rss_mib'):,.0f} |")


if __name__ == "__main__":
    main()
