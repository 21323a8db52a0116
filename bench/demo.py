"""Benchmark: a cold ``civicvault demo --rows N`` against the same work without Prefect.

* ``demo``: ``civicvault demo --rows N --json`` in a fresh process and a fresh vault
  home (cold: Python imports, Prefect's temporary server, spaCy model load, all
  included). Its own per-step timings come from the JSON summary.
* ``baseline``: the same steps called directly in a fresh process, no Prefect:
  ``init_home`` -> synthetic file -> ``ingest_path`` -> analyst + budget -> the two
  ``run_release`` calls -> ``verify_stored`` + ``verify_vault``. The difference is
  what orchestration costs.

    python bench/demo.py [--rows 100000] [--skip-baseline]

Prints one table row per variant and one JSON line. Goal: cold demo at 100,000 rows
<= 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

BASELINE = textwrap.dedent("""
    import json, sys, tempfile, time
    from fractions import Fraction
    from pathlib import Path
    t0 = time.perf_counter()
    from flows import demo_data
    from flows.demo import ANALYST, DATASET, RELEASES, _create_analyst
    from ledger.db_verify import verify_stored
    from ledger import store as ledger_store
    from vault.access import authenticate
    from vault.crosscheck import verify_vault
    from vault.db import make_engine
    from vault.dp.release import run_release
    from vault.dp.request import ReleaseRequest
    from vault.home import VaultHome
    from vault.ingest import ingest_path
    from vault.setup import init_home
    rows, home = int(sys.argv[1]), Path(sys.argv[2])
    steps = {}
    t = time.perf_counter(); steps["imports"] = t - t0
    vh = VaultHome(root=home); init_home(vh)
    engine = make_engine(vh.db_url); admin = authenticate(engine, vh, None)
    tmp = Path(tempfile.mkdtemp())
    src = demo_data.write_csv(tmp / "voters.csv", rows)
    steps["init+generate"] = time.perf_counter() - t; t = time.perf_counter()
    report = ingest_path(engine, vh, admin, src, DATASET)
    steps["ingest"] = time.perf_counter() - t; t = time.perf_counter()
    _create_analyst(vh, tmp / "analyst.token")
    analyst = authenticate(engine, vh, (tmp / "analyst.token").read_text().strip())
    for by, measures, eps in RELEASES:
        run_release(engine, vh, analyst, ReleaseRequest.build(DATASET, by, measures,
                                                             Fraction(eps)))
    steps["releases"] = time.perf_counter() - t; t = time.perf_counter()
    verdict = verify_stored(engine)
    with engine.connect() as conn:
        verify_vault(conn, ledger_store.iter_entries(conn))
    steps["audit"] = time.perf_counter() - t
    steps["total"] = time.perf_counter() - t0
    print(json.dumps({"rows_added": report.rows_added, "ledger_size": verdict.size,
                      "seconds": {k: round(v, 3) for k, v in steps.items()}}))
""")


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "CIVICVAULT_"))}
    env.update({"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "HOME": str(tmp)})  # no ~/.prefect state carried over: a cold start
    return env


def run_demo(rows: int, tmp: Path) -> dict[str, Any]:
    exe = Path(sys.executable).with_name("civicvault")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "flows.cli"]
    t = time.perf_counter()
    proc = subprocess.run([*cmd, "demo", "--rows", str(rows), "--home", str(tmp / "demo-home"),
                           "--json"], cwd=tmp, env=_clean_env(tmp), capture_output=True,
                          text=True, timeout=3600, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"demo failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall_s": round(wall, 2), "steps": summary["seconds"],
            "rows_added": summary["rows_added"], "verdict": summary["verdict"],
            "ledger_size": summary["ledger_size"]}


def run_baseline(rows: int, tmp: Path) -> dict[str, Any]:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", BASELINE, str(rows), str(tmp / "base-home")],
                          cwd=ROOT, env=_clean_env(tmp), capture_output=True, text=True,
                          timeout=3600, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"baseline failed: {proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall_s": round(wall, 2), "steps": out["seconds"], "rows_added": out["rows_added"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cv-bench-demo-") as d:
        tmp = Path(d)
        demo = run_demo(args.rows, tmp)
        base = None if args.skip_baseline else run_baseline(args.rows, tmp)
    print(f"{'variant':<10} {'rows':>9} {'wall s':>8}  steps (s)")
    print(f"{'demo':<10} {args.rows:>9,} {demo['wall_s']:>8.1f}  {demo['steps']}")
    if base is not None:
        print(f"{'baseline':<10} {args.rows:>9,} {base['wall_s']:>8.1f}  {base['steps']}")
    print(json.dumps({"rows": args.rows, "demo": demo, "baseline": base}), flush=True)


if __name__ == "__main__":
    main()
