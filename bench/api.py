"""HTTP throughput of the public checkpoint endpoints (goal: >= 1,000 req/s on 2 cores).

    python bench/api.py prepare            # the fixture: a vault home (cached)
    python bench/api.py [--runs 5] [--seconds 5] [--connections 16]

The fixture (``/var/tmp/bench/http/home``, built once, reused) is an initialised vault
whose ledger holds ~1,000 entries. Each run starts ``civicvault serve`` (uvicorn, the
exact app ``serve`` runs) as a subprocess on loopback and drives it with a bounded load:
``wrk`` (Debian's, when installed: one thread, ``--connections`` open connections) or,
without it, a Python asyncio/httpx client with the same fixed concurrency. Each
endpoint is measured ``--runs`` times (interleaved) and the median req/s reported, with
the baseline ``/healthz`` (the cheapest route of the same app) in the same run, and the
CPU seconds per wall second of the server and of the load generator (on a 2-core
machine the client takes its share of the same cores: it is reported, not hidden).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path("/var/tmp/bench/http")
HOME = ROOT / "home"
ENTRIES = 1_000
PATHS = ("/healthz", "/api/ledger/checkpoint", "/log/checkpoint")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CIVICVAULT_DB_URL", "CIVICVAULT_TOKEN")}
    env["CIVICVAULT_HOME"] = str(HOME)
    return env


def _cli(*args: str, stdin: bytes | None = None) -> None:
    subprocess.run([sys.executable, "-m", "flows.cli", *args], env=_env(), check=True,
                   input=stdin, stdout=subprocess.DEVNULL)


def prepare() -> None:
    done = ROOT / "prepared"
    if done.exists():
        print(f"fixture: {HOME} (cached)")
        return
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    _cli("init")
    notes = ROOT / "notes.jsonl"
    notes.write_text("".join(json.dumps({"action": "bench.note", "resource": f"bench/{i}"})
                             + "\n" for i in range(ENTRIES)), encoding="utf-8")
    _cli("ledger", "annotate", "--from-jsonl", str(notes))
    done.write_text("ok\n")
    print(f"fixture: {HOME} (built)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(url: str, seconds: int, connections: int) -> tuple[float, float]:
    """(req/s, client CPU s) of one wrk run."""
    proc = subprocess.Popen(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url],
                            stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read() if proc.stdout else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"wrk failed: {out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} non-2xx answers")
    found = re.search(r"Requests/sec:\s*([\d.]+)", out)
    assert found, out
    return float(found.group(1)), usage.ru_utime + usage.ru_stime


def _python_client(url: str, seconds: int, connections: int) -> tuple[float, float]:
    """(req/s, client CPU s): asyncio + httpx, ``connections`` workers in a loop."""
    cpu0 = time.process_time()

    async def main() -> int:
        limits = httpx.Limits(max_connections=connections,
                              max_keepalive_connections=connections)
        done = 0
        async with httpx.AsyncClient(limits=limits) as client:
            stop = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < stop:
                    r = await client.get(url)
                    if r.status_code != 200:
                        raise SystemExit(f"{url}: HTTP {r.status_code}")
                    done += 1

            await asyncio.gather(*(worker() for _ in range(connections)))
        return done

    started = time.perf_counter()
    count = asyncio.run(main())
    return count / (time.perf_counter() - started), time.process_time() - cpu0


def bench(runs: int, seconds: int, connections: int) -> dict[str, dict[str, Any]]:
    prepare()
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--port", str(port)],
                              env=_env(), stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/api/ledger/checkpoint", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        load = _wrk if shutil.which("wrk") else _python_client
        results: dict[str, list[tuple[float, float, float]]] = {p: [] for p in PATHS}
        for _ in range(runs):
            for path in PATHS:  # interleaved: drift hits every endpoint alike
                cpu0, t0 = _cpu_seconds(server.pid), time.perf_counter()
                rate, client_cpu = load(base + path, seconds, connections)
                wall = time.perf_counter() - t0
                results[path].append((rate, (_cpu_seconds(server.pid) - cpu0) / wall,
                                      client_cpu / wall))
    finally:
        server.terminate()
        server.wait(timeout=30)
    summary: dict[str, dict[str, Any]] = {}
    for path, rows in results.items():
        summary[path] = {
            "req_per_s_median": round(statistics.median(r[0] for r in rows), 1),
            "req_per_s_runs": [round(r[0], 1) for r in rows],
            "server_cpu_per_wall_s": round(statistics.median(r[1] for r in rows), 2),
            "client_cpu_per_wall_s": round(statistics.median(r[2] for r in rows), 2),
        }
    print(json.dumps({"load_generator": "wrk" if shutil.which("wrk") else "python-httpx",
                      "connections": connections, "seconds": seconds, "runs": runs,
                      "cores": os.cpu_count(), "results": summary}, indent=2))
    goal = float(summary["/api/ledger/checkpoint"]["req_per_s_median"])
    print(f"checkpoint: {goal} req/s median (goal >= 1000: {'met' if goal >= 1000 else 'NOT met'})"
          f"; /healthz baseline {summary['/healthz']['req_per_s_median']} req/s")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("run", "prepare"), default="run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if args.what == "prepare":
        prepare()
    else:
        bench(args.runs, args.seconds, args.connections)


if __name__ == "__main__":
    main()
