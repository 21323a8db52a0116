"""Benchmark: the checks of a delimited file's chunks in C (vault/_textscan.c) against
the same checks in NumPy, on a statewide-shaped file (``bench/scale.py``'s rows, 70
columns), generated on the fly and removed after.

    python bench/scan.py [--rows 1000000] [--runs 5] [--ingest 3] [--tmp DIR] [--json]

Each round runs, in fresh processes, one after the other so a machine that slows down
slows both alike:
- the **scan** (``vault.ingest.scan_file``: every check, the sample, the content hash)
  with the C module and with NumPy, ``--runs`` rounds;
- with ``--ingest N``, N rounds of a whole **ingest** of the file into a new SQLite vault
  (``vault.ingest.ingest_path``: the scan, then the load, which checks each chunk again
  as it reads it), with and without the C module.

Prints medians (wall and CPU seconds, peak RSS of each process) and the C path's ratio
to NumPy's; ``--json`` prints one JSON object instead. Nothing it generates is real data.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scale import write_file


def _child(kind: str, native: bool, path: str, home: str) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    from vault.dp.release import peak_rss_kib
    from vault.pii import textchunks

    if native and not textchunks.NATIVE:
        raise SystemExit("vault._textscan is not built: pip install -e . builds it")
    textchunks.NATIVE = native
    c0, t0 = time.process_time(), time.perf_counter()
    if kind == "scan":
        from vault.ingest import scan_file

        info, _ = scan_file(Path(path))
        rows = info.rows
    else:
        from vault.access import authenticate
        from vault.db import make_engine
        from vault.home import VaultHome
        from vault.ingest import ingest_path
        from vault.setup import init_home

        vault_home = VaultHome(root=Path(home))
        init_home(vault_home)
        engine = make_engine(vault_home.db_url)
        who = authenticate(engine, vault_home, None)
        c0, t0 = time.process_time(), time.perf_counter()
        rows = ingest_path(engine, vault_home, who, Path(path), "statewide").rows_added
        engine.dispose()
    return {"seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "rows": rows, "peak_rss_mib": peak_rss_kib() / 1024}


def _run(kind: str, native: bool, path: Path, home: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(int(native)),
                          str(path), str(home)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the {kind} child failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _summary(kind: str, runs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    def med(i: int, key: str) -> float:
        return round(float(statistics.median(r[i][key] for r in runs)), 2)

    c, n = med(0, "seconds"), med(1, "seconds")
    return {"measurement": kind, "rounds": len(runs), "rows": runs[0][0]["rows"],
            "c_seconds": c, "numpy_seconds": n, "c_x_numpy": round(c / n, 2),
            "c_cpu_s": med(0, "cpu_s"), "numpy_cpu_s": med(1, "cpu_s"),
            "c_peak_rss_mib": round(med(0, "peak_rss_mib")),
            "numpy_peak_rss_mib": round(med(1, "peak_rss_mib")),
            "rounds_c_numpy_s": [[round(a["seconds"], 2), round(b["seconds"], 2)]
                                 for a, b in runs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5, help="rounds of the scan alone")
    ap.add_argument("--ingest", type=int, default=0, help="rounds of a whole ingest (0: none)")
    ap.add_argument("--tmp", default=None, help="folder for the file and the vaults")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, native, path, home = args.child
        print(json.dumps(_child(kind, native == "1", path, home)))
        return
    if args.rows < 1 or args.runs < 1 or args.ingest < 0:
        ap.error("--rows and --runs must be at least 1, --ingest at least 0")
    results = []
    with tempfile.TemporaryDirectory(prefix="cvscan-", dir=args.tmp) as t:
        path = Path(t) / "statewide.csv"
        write_file(path, args.rows)
        mib = path.stat().st_size / (1 << 20)
        for kind, rounds in (("scan", args.runs), ("ingest", args.ingest)):
            runs = []
            for _ in range(rounds):
                pair = []
                for native in (True, False):
                    home = Path(t) / "home"
                    pair.append(_run(kind, native, path, home))
                    shutil.rmtree(home, ignore_errors=True)
                runs.append((pair[0], pair[1]))
            if runs:
                results.append(_summary(kind, runs))
    if args.json:
        print(json.dumps({"rows": args.rows, "columns": 70, "file_mib": round(mib),
                          "results": results}))
        return
    print(f"{args.rows:,} rows x 70 columns, {mib:,.0f} MiB; medians, C first, then NumPy")
    for r in results:
        print(f"{r['measurement']:<7} {r['c_seconds']:>7.2f} s vs {r['numpy_seconds']:>7.2f} s "
              f"({r['c_x_numpy']:.2f}x); CPU {r['c_cpu_s']:.2f} vs {r['numpy_cpu_s']:.2f} s; "
              f"peak RSS {r['c_peak_rss_mib']} vs {r['numpy_peak_rss_mib']} MiB; "
              f"rounds {r['rounds_c_numpy_s']}")


if __name__ == "__main__":
    main()
