"""Benchmark: an ingest with the allocator settings ``import vault`` applies
(``CIVICVAULT_ALLOCATORS=tuned``, see ``vault.allocators``) against the allocators as
they come (``default``), in interleaved rounds, each ingest in a fresh process:

    python bench/allocators.py [--shape statewide|vault] [--rows N] [--rounds 3] [--tmp DIR]

``--shape statewide`` (the default; ``--rows`` 2,000,000): ``bench/scale.py``'s
statewide-shaped CSV (70 columns) through its ingest step. ``--shape vault`` (``--rows``
1,000,000): ``bench/vault.py``'s 12-column rows, its SQLite seal + store (the issue-17
1M-row figure's load), timed alone. Per run: wall seconds, the process's user and system
CPU seconds, minor page faults and peak RSS (VmHWM). Prints one JSON line per run, then
the medians per setting as a Markdown table. The file is generated once (synthetic:
counters and small pools) and removed after. Allocator settings of the caller's own
(``_RJEM_MALLOC_CONF``, ``GLIBC_TUNABLES``, ``MALLOC_*``) are dropped for every setting.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scale import _run_child, write_file_apart  # imports no vault

MODES = ("default", "tuned")
ROOT = Path(__file__).resolve().parents[1]

# bench/vault.py's load in a process of its own (which imports vault before Polars, as
# the CLI does): one store of its fixture into a fresh SQLite file (timed), then what the
# process used
_VAULT_CHILD = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bench.vault import civicvault_store
from vault import allocators
from vault.dp.release import peak_rss_kib
tmp = Path(sys.argv[2])
store = civicvault_store(tmp / "voters.parquet", f"sqlite:///{sys.argv[3]}", tmp / "kek.json")
t0 = time.perf_counter()
store()
seconds = time.perf_counter() - t0
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mib": round(peak_rss_kib() / 1024),
                  "allocators": allocators.applied(), "user_s": round(usage.ru_utime, 1),
                  "sys_s": round(usage.ru_stime, 1), "minor_faults": usage.ru_minflt}))
"""


def ingest(mode: str, shape: str, path: Path, home: Path) -> dict[str, Any]:
    """One ingest in a fresh process with the setting ``mode``: ``bench/scale.py``'s
    child (statewide), or bench/vault.py's store (vault; ``path``: its fixture folder)."""
    if shape == "statewide":
        return _run_child("ingest", str(home), "", str(path), "100000",
                          CIVICVAULT_ALLOCATORS=mode)
    env = {**os.environ, "CIVICVAULT_ALLOCATORS": mode}
    out = subprocess.run([sys.executable, "-c", _VAULT_CHILD, str(ROOT), str(path),
                          str(home.with_suffix(".db"))], capture_output=True, text=True,
                         env=env, check=False)
    for f in home.parent.glob(home.name + ".db*"):
        f.unlink()
    if out.returncode != 0:
        raise SystemExit(f"the vault child failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _vault_fixture(folder: Path, rows: int) -> None:
    """bench/vault.py's Parquet file and KEK, written by a process of its own (this one
    stays free of vault, whose import would apply its allocator settings here)."""
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                    "sys.path.insert(0, sys.argv[1]); from bench.vault import write_fixture; "
                    "write_fixture(Path(sys.argv[2]), int(sys.argv[3]))", str(ROOT),
                    str(folder), str(rows)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=("statewide", "vault"), default="statewide")
    ap.add_argument("--rows", type=int, default=None,
                    help="rows (default: 2,000,000 statewide, 1,000,000 vault)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tmp", default=None, help="folder for the file and the vault homes")
    args = ap.parse_args()
    rows = args.rows if args.rows is not None else (
        2_000_000 if args.shape == "statewide" else 1_000_000)
    if rows < 1 or args.rounds < 1:
        ap.error("--rows and --rounds must be at least 1")
    for name in [k for k in os.environ if k.startswith(("_RJEM_", "_CIVICVAULT_", "MALLOC_"))
                 or k == "GLIBC_TUNABLES"]:
        del os.environ[name]  # before anything here imports vault (bench.scale, lazily)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="cvalloc-", dir=args.tmp) as t:
        if args.shape == "statewide":
            path = Path(t) / "statewide.csv"
            write_file_apart(path, rows)  # this process stays free of Polars
        else:
            path = Path(t)
            _vault_fixture(path, rows)
        for k in range(args.rounds):
            order = MODES if k % 2 == 0 else MODES[::-1]
            for mode in order:
                home = Path(t) / f"home-{mode}-{k}"
                r = ingest(mode, args.shape, path, home)
                runs[mode].append(r)
                print(json.dumps({"round": k + 1, "mode": mode, **r}), flush=True)
                shutil.rmtree(home, ignore_errors=True)
    columns = 70 if args.shape == "statewide" else 12
    print(f"\nshape={args.shape} rows={rows:,} columns={columns} rounds={args.rounds} "
          f"cores={os.cpu_count()}")
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
