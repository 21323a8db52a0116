"""Witness, tiles and receipt benchmarks (issue 16), each with a baseline in the same run.

    python bench/witness.py                    # 5 runs of each; medians
    python bench/witness.py --runs 7 --entries 70000 --reads 4000

1. Cosigned checkpoint: ``vault.transparency.publish_checkpoint`` after one new entry,
   with 2 witnesses on loopback, each a separate ``civicvault witness serve`` process
   (sign, 2 add-checkpoint round trips with consistency proofs, verify the
   cosignatures, fsync the saved file). Baseline: the same with no witnesses.
2. Tile serving: ``civicvault serve`` (uvicorn, one process) on 127.0.0.1 serving a log
   of ``--entries`` entries; 2 client processes with keep-alive connections fetch
   ``--reads`` tiles each (level-0 tiles, level-1 tiles and entry bundles, full and
   partial, in random order): the first pass reads the database, later passes hit the
   tile cache. Server and clients share the machine's 2 cores. Bounded: a fixed
   number of requests, then everything stops.
3. Receipt verification: ``ledger.receipt.verify_receipt`` + ``check_file`` of a receipt
   with the log signature and 2 witness cosignatures (quorum 2). Baseline: the 3
   Ed25519 verifications alone (pyca).

Medians of ``--runs``; the machine may be shared (note its load with the figures).
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import median_time
from flows.cli import main as cli
from ledger import store as ledger_store
from ledger.entry import EntryDraft
from ledger.signer import Signer
from vault.db import make_engine
from vault.home import VaultHome


def _init(root: Path) -> VaultHome:
    os.environ["CIVICVAULT_HOME"] = str(root)
    os.environ.pop("CIVICVAULT_DB_URL", None)
    if cli(["init"]) != 0:
        raise SystemExit("init failed")
    return VaultHome.from_env()


@contextmanager
def witness_processes(tmp: Path, vkey: str,
                      count: int = 2) -> Iterator[list[tuple[str, str, int]]]:
    """``count`` ``civicvault witness serve --port 0`` processes; yields (url, vkey file, pid)."""
    procs, out = [], []
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "log.vkey").write_text(vkey + "\n")
    try:
        for i in range(count):
            home = tmp / f"witness{i}"
            base = [sys.executable, "-m", "flows.cli", "witness"]
            wkey = subprocess.run([*base, "init", "--name", f"bench.w{i}/x", "--home", str(home)],
                                  check=True, capture_output=True, text=True).stdout
            (tmp / f"w{i}.vkey").write_text(wkey)
            subprocess.run([*base, "trust", "--vkey", str(tmp / "log.vkey"), "--home", str(home)],
                           check=True, capture_output=True)
            proc = subprocess.Popen([*base, "serve", "--port", "0", "--home", str(home)],
                                    stdout=subprocess.PIPE, text=True)
            procs.append(proc)
            line = proc.stdout.readline() if proc.stdout else ""
            out.append((line.split()[-1], str(tmp / f"w{i}.vkey"), proc.pid))
        yield out
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def _fsync_once(folder: Path, n: int) -> None:
    path = folder / f"f{n}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"x" * 300)
        os.fsync(fd)
    finally:
        os.close(fd)


def bench_checkpoint(runs: int) -> dict[str, float]:
    from vault.transparency import publish_checkpoint

    results = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        counter = iter(range(10**6))
        results["floor: fsync of one small new file"] = median_time(
            lambda: _fsync_once(tmp, next(counter)), runs * 10)
        for label, witnesses in (("no witnesses (baseline)", 0), ("2 witnesses", 2)):
            home = _init(tmp / f"home{witnesses}")
            engine = make_engine(home.db_url)
            vkey = Signer.load(home.signing_key_path).vkey()
            with witness_processes(tmp / f"w{witnesses}", vkey, witnesses) as ws:
                for url, path, _ in ws:
                    cli(["ledger", "witnesses", "add", "--url", url, "--vkey", path])
                cli(["ledger", "witnesses", "quorum", str(witnesses)])
                publish_checkpoint(engine, home).require_quorum()  # warm: connections, state

                times: list[float] = []
                cpu: list[float] = []
                pids = [pid for _, _, pid in ws]
                w0 = sum(_cpu_seconds(pid) for pid in pids)
                for _ in range(runs * 10):  # a new entry, then a checkpoint of the new tree
                    with engine.begin() as conn:
                        ledger_store.append(conn, [EntryDraft(actor="bench", action="note.b",
                                                              resource="r")])
                    t0, c0 = time.perf_counter(), time.process_time()
                    publish_checkpoint(engine, home).require_quorum()
                    times.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
                results[label] = statistics.median(times)
                results[f"{label}: vault CPU"] = statistics.median(cpu)
                if pids:
                    per = (sum(_cpu_seconds(pid) for pid in pids) - w0) / (runs * 10 * len(pids))
                    results[f"{label}: CPU per witness (mean)"] = per
            engine.dispose()
    return results


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(port: int, paths: list[str], out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """A lean keep-alive HTTP/1.1 client (one request in flight): the load generator
    should cost little next to the server it measures."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    reader = sock.makefile("rb")
    bad = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for path in paths:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path.encode())
        status = int(reader.readline().split()[1])
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        reader.read(length)
        bad += status != 200
    out.put((time.perf_counter() - t0, bad, time.process_time() - c0))
    sock.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tile_paths(size: int) -> list[str]:
    from ledger.tiles import TileRef, tile_path

    paths = []
    for level, count in ((None, size), (0, size), (1, size >> 8)):
        full, width = divmod(count, 256)
        paths += ["/log/" + tile_path(TileRef(level, n, 256)) for n in range(full)]
        if width:
            paths.append("/log/" + tile_path(TileRef(level, full, width)))
    return paths


def bench_tiles(entries: int, reads: int, runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmpdir:
        home = _init(Path(tmpdir) / "home")
        engine = make_engine(home.db_url)
        with engine.begin() as conn:
            ledger_store.append(conn, [EntryDraft(actor="bench", action="note.tile",
                                                  resource=f"r/{i}") for i in range(entries)])
            size = ledger_store.size(conn)
        engine.dispose()
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--port",
                                   str(port)], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.2)
            paths = _tile_paths(size)
            rates, server_cpu, client_cpu = [], [], []
            for run in range(runs + 1):
                if run == runs:  # the baseline: the same load on the API's /healthz
                    paths = ["/healthz"]
                queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
                jobs = []
                for c in range(2):
                    rnd = random.Random(c)
                    mine = [rnd.choice(paths) for _ in range(reads)]
                    jobs.append(multiprocessing.Process(target=_client,
                                                        args=(port, mine, queue)))
                t0, s0 = time.perf_counter(), _cpu_seconds(server.pid)
                for job in jobs:
                    job.start()
                got = [queue.get(timeout=300) for _ in jobs]
                wall = time.perf_counter() - t0
                server_cpu.append((_cpu_seconds(server.pid) - s0) / (2 * reads))
                client_cpu.append(sum(c for _, _, c in got) / (2 * reads))
                for job in jobs:
                    job.join()
                if any(bad for _, bad, _ in got):
                    raise SystemExit("a tile read failed")
                rates.append(2 * reads / wall)
        finally:
            server.terminate()
            server.wait(timeout=10)
    tiles_cpu = statistics.median(server_cpu[:runs]) + statistics.median(client_cpu[:runs])
    return {"first pass (database), wall": rates[0],
            "median of all passes, wall": statistics.median(rates[:runs]),
            "baseline /healthz, wall": rates[runs],
            "server CPU ms per tile read": 1000 * statistics.median(server_cpu[:runs]),
            "client CPU ms per tile read": 1000 * statistics.median(client_cpu[:runs]),
            "capacity on 2 idle cores (2 / CPU s per read)": 2 / tiles_cpu,
            "tiles in the log": float(len(_tile_paths(size)))}


def bench_receipt(runs: int) -> dict[str, float]:
    from ledger import merkle
    from ledger.checkpoint import sign_checkpoint
    from ledger.cosignature import Cosigner
    from ledger.receipt import check_file, format_receipt, verify_receipt
    from ledger.signer import Signer as LogSigner

    signer = LogSigner.generate("bench.log/x")
    entries = [b'{"seq":%d}' % i for i in range(100_000)]
    leaves = [merkle.leaf_hash(e) for e in entries]
    nodes = merkle.perfect_nodes(leaves)

    def reader(keys: object) -> dict[tuple[int, int], bytes]:
        return {k: nodes[k] for k in keys if k in nodes}  # type: ignore[attr-defined]

    size = len(entries)
    data = os.urandom(4096)
    index = 77_777
    entry = b'{"data_hash":"%s","seq":%d}' % (hashlib.sha256(data).hexdigest().encode(), index)
    entries[index] = entry
    leaves[index] = merkle.leaf_hash(entry)
    nodes = merkle.perfect_nodes(leaves)
    root = merkle.tree_root(size, reader)
    note = sign_checkpoint([signer], signer.name, size, root)
    witnesses = [Cosigner.generate(f"bench.w{i}/x") for i in range(2)]
    text = note[: note.rfind("\n\n") + 1]
    note += "".join(w.cosign(text) for w in witnesses)
    receipt = format_receipt(entry, index, merkle.inclusion_proof(index, size, reader), note)
    wkeys = [w.verifier() for w in witnesses]

    def full() -> None:
        check_file(verify_receipt(receipt, [signer.verifier()], witness_keys=wkeys, quorum=2),
                   data)

    full()
    sigs = [(signer.verifier(), b"m", signer.sign(b"m"))]

    def three_ed25519() -> None:
        for _ in range(3):
            for v, m, s in sigs:
                v.verify(m, s)

    return {"verify_receipt + check_file": median_time(full, runs * 40),
            "baseline: 3 Ed25519 verifications": median_time(three_ed25519, runs * 40)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--entries", type=int, default=70_000)
    parser.add_argument("--reads", type=int, default=3_000, help="tile reads per client")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for label, seconds in bench_checkpoint(args.runs).items():
        print(f"cosigned checkpoint, {label:34s} {seconds * 1000:8.2f} ms (median)")
    for label, value in bench_receipt(args.runs).items():
        print(f"receipt verification, {label:33s} {value * 1000:8.3f} ms (median)")
    for label, value in bench_tiles(args.entries, args.reads, args.runs).items():
        unit = "" if label.startswith("tiles") or "CPU ms" in label else " reads/s"
        digits = 3 if "CPU ms" in label else 0
        print(f"tile serving, {label:47s} {value:10.{digits}f}{unit}")


if __name__ == "__main__":
    main()
