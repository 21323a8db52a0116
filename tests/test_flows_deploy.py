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
TYPED = "jane-doe-4417"  # in a typed path: must not reach a deployment's parameters


def test_deploy_dry_run_lists_the_scheduled_deployments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cli import main

    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    inbox = tmp_path / f"canvass-{TYPED}"  # a folder named after a person
    inbox.mkdir()
    code = main(["deploy", "--watch-folder", str(inbox), "--dry-run", "--json"])
    assert code == 0
    out = capsys.readouterr().out
    rows = {r["name"]: r for r in json.loads(out)["deployments"]}
    assert rows["nightly-audit"]["cron"] == ["15 2 * * *"]
    # no schedule: deploy keeps one long-running watch run going instead of interval runs
    assert rows["watch-folder-ingest"]["cron"] == []
    assert "window_seconds" not in rows["watch-folder-ingest"]["parameters"]
    # Prefect keeps and shows a deployment's parameters: the folder is a reference, and a
    # dry run writes none (it shows where serving would put one)
    assert TYPED not in out
    assert rows["watch-folder-ingest"]["parameters"]["folder"].startswith("path-file:flow-paths/")
    assert not (tmp_path / "home").exists()
    assert rows["watch-folder-ingest"]["parameters"]["after_ingest"] == "delete"
    assert rows["monthly-key-rotation"]["cron"] == ["30 3 1 * *"]
    assert {"ingest", "release", "erasure"} <= set(rows)
    for r in rows.values():  # parameters are paths and ids only: no token, no database URL
        assert not any(k == "token" or "url" in k for k in r["parameters"])


def test_deploy_dry_run_shows_the_kept_reference_a_served_deploy_made_for_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once ``deploy`` has served a watch folder (its reference kept in the vault home), a
    dry run for the same folder shows that reference, in the listing and in ``--json``,
    and never the folder's path."""
    from flows.cli import main
    from flows.flow_runtime import kept_path_ref
    from vault.home import VaultHome

    home = VaultHome(root=tmp_path / "home")
    home.root.mkdir()
    monkeypatch.setenv("CIVICVAULT_HOME", str(home.root))
    inbox = tmp_path / f"canvass-{TYPED}"
    inbox.mkdir()
    ref = kept_path_ref(home, inbox)  # what a served deploy wrote
    assert main(["deploy", "--watch-folder", str(inbox), "--dry-run", "--json"]) == 0
    out = capsys.readouterr().out
    rows = {r["name"]: r for r in json.loads(out)["deployments"]}
    assert rows["watch-folder-ingest"]["parameters"]["folder"] == ref and TYPED not in out
    assert main(["deploy", "--watch-folder", str(inbox), "--dry-run"]) == 0
    listing = capsys.readouterr()
    assert "watch-folder/watch-folder-ingest  on demand" in listing.out
    assert TYPED not in listing.out + listing.err
    assert len(list((home.root / "flow-paths").iterdir())) == 1


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
        "linked-release": "linked-release",
        "erasure": "erasure",
    }
    assert set(deployments) == set(expected)
    for name, flow_name in expected.items():
        entry = deployments[name]["entrypoint"]
        flow = load_flow_from_entrypoint(str(ROOT / entry))
        assert flow.name == flow_name, entry
    for name in ("nightly-audit", "monthly-key-rotation"):
        assert deployments[name]["schedules"][0]["cron"]
        assert deployments[name]["work_pool"]["name"] == "civicvault"
    watch = deployments["watch-folder-ingest"]  # one long-running run, started once
    assert "schedules" not in watch and "window_seconds" not in watch["parameters"]
    assert watch["concurrency_limit"] == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process started in its own session, and its group; SIGKILL after 30 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``prefect server start`` on loopback with a fast scheduler; yields the API URL.

    One server for the module (it takes 10-20 s to come up): each served test starts its own
    serving process, vault home and runner home, and reads back only its own deployment's
    runs or its own vault."""
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-server") / "home"),
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
        _stop_group(proc)


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
            resp = httpx.post(  # this deployment's runs only: the server is the module's
                f"{prefect_server}/flow_runs/filter",
                json={"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
                      "deployments": {"name": {"any_": ["audit-every-5s"]}}, "limit": 5},
                timeout=10,
            )
            completed = [r for r in resp.json() if r.get("deployment_id")]
            time.sleep(0.5)
        assert completed, "no scheduled run of the served deployment completed in 180 s"
        assert list(home.checkpoints_dir.glob("*.checkpoint")), "the audit wrote no checkpoint"
    finally:
        _stop_group(runner)


def _ingested_sources(db: Path, since_seq: int) -> dict[int, str]:
    """``{source id: actor}`` of the vault.ingest.batch ledger entries after ``since_seq``."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute("SELECT entry FROM ledger_entries WHERE seq > ?", (since_seq,))
        out: dict[int, str] = {}
        for (raw,) in rows:
            entry = json.loads(raw)
            if entry["action"] == "vault.ingest.batch":
                out[int(entry["details"]["source"])] = entry["actor"]
        return out
    finally:
        conn.close()


def _source_ids(db: Path) -> dict[str, int]:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return {h: int(i) for i, h in conn.execute("SELECT id, content_hash FROM vault_sources")}
    finally:
        conn.close()


@pytest.mark.slow
def test_served_watch_folder_ingests_every_file_dropped_at_random_within_5_s(
    prefect_server: str, tmp_path: Path
) -> None:
    """``civicvault deploy --watch-folder``: 13 files dropped at random moments over ~45 s (some
    renamed into place, some written in place) are each in the vault and on the ledger, as
    the ingestor principal, within 5 s; nothing is left under the watch folder.

    The gaps between drops are random, 0.3-5 s, so the drops fall at random phases of the
    watcher's 0.25 s poll, its 1 s settle time and the serving process's 10 s runner loop,
    and some land while the previous file is still settling or being ingested; one gap, at a
    random place, is an idle 12 s, longer than any periodic work of the serving process. (The
    gaps were 0.5-16 s, ~107 s in all, for the same 13 drops: measured latencies stay near
    1 s whatever the gap, so the count of drops and their random phases carry the test.)"""
    import hashlib
    import random
    import threading

    from flows import demo_data
    from vault.home import VaultHome
    from vault.setup import init_home

    home = VaultHome(root=tmp_path / "vault")
    init_home(home)
    inbox = tmp_path / f"inbox-{TYPED}"  # named after a person: a reference to Prefect
    inbox.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICVAULT_")}
    env.update({"PREFECT_API_URL": prefect_server, "CIVICVAULT_HOME": str(home.root),
                "PREFECT_HOME": str(tmp_path / "runner-home"), "DO_NOT_TRACK": "1"})
    cli = str(Path(sys.executable).with_name("civicvault"))
    deployer = subprocess.Popen([cli, "deploy", "--watch-folder", str(inbox)], cwd=tmp_path,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    rng = random.Random(18)
    frames = demo_data.generate(20 * 14, seed=18)
    contents = [frames.slice(20 * i, 20).write_csv().encode() for i in range(14)]
    digests = [hashlib.sha256(b"civicvault/source/v1" + c).hexdigest() for c in contents]
    dropped: dict[int, float] = {}

    def drop(i: int) -> None:
        name = f"extract-{i:02d}.csv"
        if i % 3 == 2:  # written in place, in two parts: must wait until it settles
            half = len(contents[i]) // 2
            with (inbox / name).open("wb") as fh:
                fh.write(contents[i][:half])
                fh.flush()
                dropped[i] = time.monotonic()
                time.sleep(0.3)
                fh.write(contents[i][half:])
        else:
            (inbox / f"{name}.part").write_bytes(contents[i])
            os.replace(inbox / f"{name}.part", inbox / name)
            dropped[i] = time.monotonic()

    gaps = [rng.uniform(0.3, 5.0) for _ in range(1, len(contents))]
    gaps[rng.randrange(len(gaps))] = 12.0  # one idle stretch

    def dropper() -> None:
        for i, gap in enumerate(gaps, start=1):
            time.sleep(gap)
            drop(i)

    latencies: dict[int, float] = {}
    actors: dict[int, str] = {}
    try:
        drop(0)  # the warm-up file: the watcher is live once it is stored
        deadline = time.monotonic() + 240
        while 0 not in latencies and time.monotonic() < deadline:
            assert deployer.poll() is None, "civicvault deploy exited"
            ids = _source_ids(home.db_path)
            done = _ingested_sources(home.db_path, -1)
            if digests[0] in ids and ids[digests[0]] in done:
                latencies[0] = time.monotonic() - dropped[0]
                actors[0] = done[ids[digests[0]]]
            time.sleep(0.2)
        assert 0 in latencies, "the watcher did not ingest the first file in 240 s"
        thread = threading.Thread(target=dropper)
        thread.start()
        deadline = time.monotonic() + 300
        while len(latencies) < len(contents) and time.monotonic() < deadline:
            assert deployer.poll() is None, "civicvault deploy exited"
            pending = [i for i in dropped if i not in latencies]
            if pending:
                ids = _source_ids(home.db_path)
                done = _ingested_sources(home.db_path, -1)
                now = time.monotonic()
                for i in pending:
                    if digests[i] in ids and ids[digests[i]] in done:
                        latencies[i] = now - dropped[i]
                        actors[i] = done[ids[digests[i]]]
            time.sleep(0.05)
        thread.join(timeout=60)
        deadline = time.monotonic() + 30  # an ingested file is shredded right after
        while (leftovers := [p for p in inbox.rglob("*") if p.is_file()]) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        deployment = httpx.get(f"{prefect_server}/deployments/name/watch-folder/"
                               "watch-folder-ingest", timeout=10).json()
        runs = httpx.post(f"{prefect_server}/flow_runs/filter", timeout=10,
                          json={"flows": {"name": {"any_": ["watch-folder"]}}}).json()
    finally:
        _stop_group(deployer)
    # Prefect keeps (and shows) the deployment and its runs: the folder is a reference to a
    # file the vault home keeps, and the run kept going by deploy resolved it
    ref = deployment["parameters"]["folder"]
    assert ref.startswith("path-file:flow-paths/") and TYPED not in json.dumps(deployment)
    assert runs and {r["parameters"]["folder"] for r in runs} == {ref}
    assert TYPED not in json.dumps(runs)
    assert len(list((home.root / "flow-paths").iterdir())) == 1
    measured = sorted((i, round(s, 2)) for i, s in latencies.items() if i > 0)
    print("watch-folder latencies (file, s):", measured)
    assert len(measured) == len(contents) - 1, f"not all files were ingested: {measured}"
    assert max(s for _, s in measured) <= 5.0, measured
    assert set(actors.values()) == {"svc-ingestor"}  # never admin
    assert leftovers == []  # no plaintext source file under the watch folder


@pytest.mark.slow
def test_a_served_run_that_fails_is_logged_without_a_traceback_or_the_value(
    prefect_server: str, tmp_path: Path
) -> None:
    """``civicvault deploy``'s log is an operator's: a served ingest run given a ragged file
    fails, and the log says so (Prefect's ERROR lines stay) without any traceback, in the
    serving process or in the flow-run process it spawned, and without the cell typed."""
    from vault.home import VaultHome
    from vault.setup import init_home

    home = VaultHome(root=tmp_path / "vault")
    init_home(home)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("voter_id,last_name\nA1,Quixleyson\nA2,Quixleyson,Zarbrook\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICVAULT_")}
    env.update({"PREFECT_API_URL": prefect_server, "CIVICVAULT_HOME": str(home.root),
                "PREFECT_HOME": str(tmp_path / "runner-home"), "DO_NOT_TRACK": "1",
                "PREFECT_RUNNER_POLL_FREQUENCY": "1"})
    cli = str(Path(sys.executable).with_name("civicvault"))
    log = tmp_path / "deploy.log"
    with log.open("wb") as out:
        deployer = subprocess.Popen([cli, "deploy"], cwd=tmp_path, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
    state = None
    try:
        deadline = time.monotonic() + 180
        run_id = None
        while state not in ("FAILED", "CRASHED", "COMPLETED") and time.monotonic() < deadline:
            assert deployer.poll() is None, "civicvault deploy exited: " + log.read_text()[-2000:]
            if run_id is None:
                dep = httpx.get(f"{prefect_server}/deployments/name/ingest/ingest", timeout=5)
                if dep.status_code == 200:
                    run = httpx.post(
                        f"{prefect_server}/deployments/{dep.json()['id']}/create_flow_run",
                        json={"parameters": {"path": str(ragged), "dataset": "nc"}}, timeout=5)
                    if run.status_code < 500:  # a busy server answers 503: ask again
                        run.raise_for_status()
                        run_id = run.json()["id"]
            else:
                got = httpx.get(f"{prefect_server}/flow_runs/{run_id}", timeout=5)
                if got.status_code == 200:
                    state = (got.json().get("state") or {}).get("type")
            time.sleep(0.5)
        time.sleep(2)  # the run's last lines reach the log
    finally:
        _stop_group(deployer)
    text = log.read_text()
    assert state == "FAILED", (state, text[-2000:])
    assert "Finished in state Failed" in text  # the failure is in the service's log
    assert "Traceback" not in text and 'File "' not in text, text
    assert "never awaited" not in text  # nor Prefect's warning when SIGTERM stops it
    assert "Quixleyson" not in text and "Zarbrook" not in text
