"""Racing releases never overspend: 10 concurrent threads or processes, budget for 3."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
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


CHILD = """
import sys, time
from fractions import Fraction
from pathlib import Path
from dp_helpers import ALICE, policy, source
from policies.errors import BudgetExhausted
from vault.db import make_engine
from vault.dp import ReleaseRequest, run_release
from vault.home import VaultHome

url, root, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
engine, src = make_engine(url), source()
request = ReleaseRequest.build("voters", ["county"], ["count"], Fraction(3, 10))
while not go.exists():
    time.sleep(0.01)
try:
    run_release(engine, VaultHome(root), ALICE, request, source=src,
                policy=policy(default=Fraction(1)))
    print("ok")
except BudgetExhausted:
    print("exhausted")
"""


@pytest.mark.slow
def test_ten_racing_processes_on_budget_for_three(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    home = vault_home(engine, tmp_path / "home")
    go = tmp_path / "go"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
        ),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, db_url, str(home.root), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(10)
    ]
    time.sleep(1.0)
    go.touch()  # all ten start together (as far as the OS lets them)
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        outcomes.append(out.strip())
    successes = outcomes.count("ok")
    assert 1 <= successes <= 3 and outcomes.count("exhausted") == 10 - successes
    with engine.connect() as conn:
        spent = budget.get_budget(conn, "alice", "voters", default_total=Fraction(1)).epsilon_spent
    assert spent == Fraction(3, 10) * successes
    logged = actions(engine)
    assert logged.count("release.dp") == successes
    assert logged.count("budget.denied") == 10 - successes
