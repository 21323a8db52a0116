"""Racing releases never overspend: 10 concurrent threads or processes, budget for 3."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import pytest
from dp_helpers import ALICE, actions, policy, source, vault_home
from sqlalchemy import Engine

from policies.errors import BudgetExhausted
from vault import budget
from vault.dp import ReleaseRequest, run_release


def test_ten_racing_releases_on_budget_for_three(engine: Engine, tmp_path: Path) -> None:
    pol = policy(default=Fraction(1))  # 0.3 x 3 = 0.9 <= 1 < 1.2
    src = source()
    home = vault_home(engine, tmp_path)
    request = ReleaseRequest.build("voters", ["county"], ["count"], Fraction(3, 10))
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(10)

    def one() -> None:
        start.wait()
        try:
            run_release(engine, home, ALICE, request, source=src, policy=pol)
            result = "ok"
        except BudgetExhausted:
            result = "exhausted"
        except Exception as exc:  # any other outcome fails the test below, by name
            result = f"error: {type(exc).__name__}"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(outcomes) == 10
    successes = outcomes.count("ok")
    assert 1 <= successes <= 3
    assert outcomes.count("exhausted") == 10 - successes
    with engine.connect() as conn:
        spent = budget.get_budget(conn, "alice", "voters", default_total=Fraction(1)).epsilon_spent
        assert spent == Fraction(3, 10) * successes
        assert budget.dataset_spent(conn, "voters") == spent
    logged = actions(engine)
    assert logged.count("release.dp") == successes
    assert logged.count("budget.denied") == 10 - successes


RACERS = """
import os, sys, time, traceback
from fractions import Fraction
from pathlib import Path
from dp_helpers import ALICE, policy, source
from policies.errors import BudgetExhausted
from vault.db import make_engine
from vault.dp import ReleaseRequest, run_release
from vault.dp.plan import opendp
from vault.home import VaultHome

# Imported once, here; the racers are forked from this process (which has run no query and
# opened no connection), and each opens its own engine. Each racer reports "ready", then
# waits for the go file, then writes its outcome on its pipe.
url, root, go, n = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
opendp()


def race(report):
    # one racer, in a forked child: returns its exit code
    try:
        engine, src = make_engine(url), source()
        request = ReleaseRequest.build("voters", ["county"], ["count"], Fraction(3, 10))
        os.write(report, b"ready\\n")
        while not go.exists():
            time.sleep(0.01)
        try:
            run_release(engine, VaultHome(root), ALICE, request, source=src,
                        policy=policy(default=Fraction(1)))
            outcome = "ok"
        except BudgetExhausted:
            outcome = "exhausted"
        os.write(report, outcome.encode())
        return 0
    except BaseException:
        traceback.print_exc()
        return 1


racers = []
for _ in range(n):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # never returns to the loop
        code = 1
        try:
            os.close(read)
            code = race(write)
        finally:
            try:
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(write)
    racers.append((pid, os.fdopen(read, "rb")))
for _, pipe in racers:  # every racer is waiting for the go file
    assert pipe.readline() == b"ready\\n"
print("ready", flush=True)
failed = False
for pid, pipe in racers:
    outcome = pipe.read().decode()
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    failed = failed or status != 0
    print(outcome if status == 0 else f"racer exited {status}: {outcome}", flush=True)
sys.exit(1 if failed else 0)
"""


@pytest.mark.slow
def test_ten_racing_processes_on_budget_for_three(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """Ten OS processes, each with its own engine and connection, race for a budget for
    three. The libraries are imported once, in the process the racers are forked from (ten
    interpreters importing Polars, OpenDP and SQLAlchemy each took ~15 s of a 2-core run)."""
    home = vault_home(engine, tmp_path / "home")
    go = tmp_path / "go"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
        ),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", RACERS, db_url, str(home.root), str(go), "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline()  # all ten are waiting: they start together
    go.touch()
    out, err = proc.communicate(timeout=300)
    assert ready == "ready\n" and proc.returncode == 0, err[-2000:]
    outcomes = out.splitlines()
    assert len(outcomes) == 10, outcomes
    successes = outcomes.count("ok")
    assert 1 <= successes <= 3 and outcomes.count("exhausted") == 10 - successes
    with engine.connect() as conn:
        spent = budget.get_budget(conn, "alice", "voters", default_total=Fraction(1)).epsilon_spent
    assert spent == Fraction(3, 10) * successes
    logged = actions(engine)
    assert logged.count("release.dp") == successes
    assert logged.count("budget.denied") == 10 - successes
