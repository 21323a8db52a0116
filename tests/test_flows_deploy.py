"""Deployments: what ``civicvault deploy`` serves, ``prefect.yaml``, and a real served run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.prefect


def test_deploy_dry_run_lists_the_scheduled_deployments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cli import main

    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    (tmp_path / "inbox").mkdir()
    code = main(["deploy", "--watch", str(tmp_path / "inbox"), "--dry-run", "--json"])
    assert code == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["deployments"]}
    assert rows["nightly-audit"]["cron"] == ["15 2 * * *"]
    assert rows["watch-folder-ingest"]["cron"] == ["*/5 * * * *"]
    assert rows["watch-folder-ingest"]["parameters"]["folder"] == str(tmp_path / "inbox")
    assert rows["monthly-key-rotation"]["cron"] == ["30 3 1 * *"]
    assert {"ingest", "release", "erasure"} <= set(rows)
    for r in rows.values():  # parameters are paths and ids only: no token, no database URL
        assert not any(k == "token" or "url" in k for k in r["parameters"])


def test_deploy_without_a_prefect_server_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cli import main

    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["deploy"]) == 2


def test_prefect_yaml_entrypoints_are_our_flows_with_cron_schedules() -> None:
    from prefect.flows import load_flow_from_entrypoint

    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in doc["deployments"]}
    expected = {
        "nightly-audit": "audit",
        "watch-folder-ingest": "watch-folder",
        "monthly-key-rotation": "rotate",
        "ingest": "ingest",
        "release": "release",
        "erasure": "erasure",
    }
    assert set(deployments) == set(expected)
    for name, flow_name in expected.items():
        entry = deployments[name]["entrypoint"]
        flow = load_flow_from_entrypoint(str(ROOT / entry))
        assert flow.name == flow_name, entry
    for name in ("nightly-audit", "watch-folder-ingest", "monthly-key-rotation"):
        assert deployments[name]["schedules"][0]["cron"]
        assert deployments[name]["work_pool"]["name"] == "civicvault"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[str]:
    """A real ``prefect server start`` on loopback with a fast scheduler; yields the API URL."""
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "server-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1",
    }
    env.pop("PREFECT_API_URL", None)
    prefect = str(Path(sys.executable).with_name("prefect"))
    proc = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "prefect server exited"
            time.sleep(0.3)
        else:
            pytest.fail("prefect server did not come up in 120 s")
        yield api
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.mark.slow
def test_served_deployment_runs_on_its_interval_on_a_real_server(
    prefect_server: str, tmp_path: Path
) -> None:
    from vault.home import VaultHome
    from vault.setup import init_home

    home = VaultHome(root=tmp_path / "vault")
    init_home(home)
    script = textwrap.dedent(f"""
        from flows.audit import audit
        audit.serve(name="audit-every-5s", interval=5, parameters={{"home": {str(home.root)!r}}},
                    print_starting_message=False)
    """)
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_HOME": str(tmp_path / "runner-home"),
    }
    runner = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        completed: list[dict[str, object]] = []
        while time.monotonic() < deadline and not completed:
            assert runner.poll() is None, "the serving process exited"
            resp = httpx.post(
                f"{prefect_server}/flow_runs/filter",
                json={"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "limit": 5},
                timeout=10,
            )
            completed = [r for r in resp.json() if r.get("deployment_id")]
            time.sleep(1)
        assert completed, "no scheduled run of the served deployment completed in 180 s"
        assert list(home.checkpoints_dir.glob("*.checkpoint")), "the audit wrote no checkpoint"
    finally:
        os.killpg(runner.pid, signal.SIGTERM)
        try:
            runner.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(timeout=10)
