"""Benchmark: how long the ``civicvault`` command takes to answer, as a new process each run.

Times (median of ``--runs`` runs, wall clock of the whole process):

* ``python -c pass``: the interpreter alone (baseline);
* ``python -c "import typer"``: the CLI framework's floor (Typer parses arguments with
  pydantic adapters, so any command with arguments also pays for pydantic);
* ``civicvault --help``                         goal <= 0.5 s on a quiet machine;
* ``civicvault ingest missing.csv --dataset x`` (fails, exit 2)   goal <= 1 s;
* ``civicvault ledger verify`` on a vault with ``--entries`` (10k) ledger entries
                                                goal <= 1.5 s;
* ``civicvault release`` (count by party, as an analyst) on ``--rows`` (60k) ingested
  synthetic voters                              goal <= 3 s.

Setup (a vault home in a temporary folder, synthetic rows only) is not timed.

    python bench/cli.py [--runs 5] [--entries 10000] [--rows 60000]

Prints one line per command and one JSON line with every median.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
CLI = str(BIN / "civicvault")


def _env(home: Path, token: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIVICVAULT_", "PREFECT_"))}
    env["CIVICVAULT_HOME"] = str(home)
    if token:
        env["CIVICVAULT_TOKEN"] = token
    return env


CPU: dict[str, float] = {}
"""Median CPU seconds (user+sys of the command and its children) per command."""


def _cpu() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def _run(cmd: list[str], env: dict[str, str], cwd: Path, expect: int = 0) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), _cpu()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed, cpu = time.perf_counter() - t0, _cpu() - c0
    if proc.returncode != expect:
        raise SystemExit(f"{' '.join(cmd[:3])}: exit {proc.returncode}: {proc.stderr[-500:]}")
    return elapsed, cpu


def _median(cmd: list[str], env: dict[str, str], cwd: Path, runs: int, expect: int = 0) -> float:
    _run(cmd, env, cwd, expect)  # warm the file cache once
    done = [_run(cmd, env, cwd, expect) for _ in range(runs)]
    CPU[" ".join(cmd)] = statistics.median(c for _, c in done)
    return statistics.median(w for w, _ in done)


def _setup(root: Path, entries: int, rows: int) -> tuple[Path, str]:
    """A vault with ``rows`` ingested synthetic voters, ``entries``+ ledger entries, and an
    analyst with a budget; returns (home, analyst token)."""
    from flows import demo_data

    home = root / "home"
    env = _env(home)
    subprocess.run([CLI, "init"], env=env, check=True, capture_output=True)
    source = demo_data.write_csv(root / "voters.csv", rows, seed=7)
    subprocess.run([CLI, "ingest", str(source), "--dataset", "voters", "--no-prefect",
                    "--json"], env=env, check=True, capture_output=True)
    source.unlink()
    out = subprocess.run([CLI, "principals", "add", "bench-analyst", "--role", "analyst",
                          "--json"], env=env, check=True, capture_output=True, text=True)
    token = json.loads(out.stdout)["token"]
    subprocess.run([CLI, "budget", "set", "--analyst", "bench-analyst", "--dataset", "voters",
                    "--epsilon", "100"], env=env, check=True, capture_output=True)
    notes = root / "notes.jsonl"
    with notes.open("w") as fh:
        for i in range(entries):
            fh.write(json.dumps({"action": "bench.note", "resource": f"bench/{i}",
                                 "purpose": "benchmark"}) + "\n")
    subprocess.run([CLI, "ledger", "annotate", "--from-jsonl", str(notes)], env=env,
                   check=True, capture_output=True)
    return home, token


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--rows", type=int, default=60_000)
    args = ap.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cv-bench-cli-") as tmp:
        root = Path(tmp)
        home, token = _setup(root, args.entries, args.rows)
        env = _env(home)
        py = str(BIN / "python")
        results = {
            "python -c pass": _median([py, "-c", "pass"], env, root, args.runs),
            "python -c 'import typer'": _median([py, "-c", "import typer"], env, root,
                                                args.runs),
            "civicvault --help": _median([CLI, "--help"], env, root, args.runs),
            "civicvault ingest missing.csv": _median(
                [CLI, "ingest", "missing.csv", "--dataset", "voters"], env, root, args.runs,
                expect=2),
            f"civicvault ledger verify ({args.entries} entries)": _median(
                [CLI, "ledger", "verify", "--json"], env, root, args.runs),
            f"civicvault release ({args.rows} rows)": _median(
                [CLI, "release", "--dataset", "voters", "--by", "party_cd", "--measure",
                 "count", "--epsilon", "0.01", "--json", "--no-prefect"],
                _env(home, token), root, args.runs),
        }
    load_after = os.getloadavg()[0]
    cpus = list(CPU.values())
    print(f"median of {args.runs} runs; load average at start {load:.1f}, at end "
          f"{load_after:.1f} ({os.cpu_count()} cpus); wall s, and CPU s (user+sys)")
    for (name, seconds), cpu in zip(results.items(), cpus, strict=True):
        print(f"{name:<45} {seconds:6.3f} s   cpu {cpu:6.3f} s")
    print(json.dumps({"runs": args.runs, "load": round(load, 2), "load_after": round(load_after, 2),
                      "median_seconds": {k: round(v, 3) for k, v in results.items()},
                      "median_cpu_seconds": {k: round(c, 3) for k, c in zip(results, cpus,
                                                                             strict=True)}}))


if __name__ == "__main__":
    main()
