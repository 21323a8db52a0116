"""Real Prefect flows under ``prefect_test_harness`` on real vault homes (SQLite files).

One temporary Prefect server serves the whole module (it costs ~12 s to start on
this machine); each test makes its own vault home.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if "prefect" not in sys.modules:  # a private PREFECT_HOME for this test session
    _PREFECT_HOME = tempfile.mkdtemp(prefix="cv-prefect-home-")
    os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
    atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)  # not left in /tmp

from flows import prefect_env

prefect_env.configure()

import polars as pl  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402
from sqlalchemy import Engine, select, text, update  # noqa: E402

from flows import demo_data  # noqa: E402
from flows.flow_runtime import dispose_engines, engine_for  # noqa: E402
from vault.home import VaultHome  # noqa: E402

pytestmark = pytest.mark.prefect
ROOT = Path(__file__).resolve().parents[1]
DATASET = "voters"


@pytest.fixture(scope="module")
def harness() -> Iterator[dict[str, str]]:
    """One temporary Prefect server; yields its API URL and database file."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_DATABASE_CONNECTION_URL

    t = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=120):
        startup = time.perf_counter() - t
        db_url = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value())
        yield {
            "api_url": str(PREFECT_API_URL.value()),
            "db_file": db_url.split("///", 1)[-1],
            "startup_seconds": f"{startup:.1f}",
        }
    dispose_engines()


@pytest.fixture
def home(tmp_path: Path) -> VaultHome:
    from vault.setup import init_home

    vh = VaultHome(root=tmp_path / "vault")
    init_home(vh)
    return vh


@pytest.fixture
def voters_csv(tmp_path: Path) -> Path:
    return demo_data.write_csv(tmp_path / "in" / "voters.csv", 600, seed=11)


TYPED = "jane-doe-4417"  # in a typed path: must not reach Prefect's stored parameters


def _flow_runs() -> list[tuple[str, dict[str, Any]]]:
    """(flow name, parameters) of every run the Prefect API holds."""
    import asyncio

    from prefect.client.orchestration import get_client

    async def read() -> list[tuple[str, dict[str, Any]]]:
        async with get_client() as client:
            names = {f.id: f.name for f in await client.read_flows()}
            return [(names[r.flow_id], dict(r.parameters)) for r in await client.read_flow_runs()]

    return asyncio.run(read())


def _stored_runs(flow_name: str) -> list[dict[str, Any]]:
    """Every run of ``flow_name`` as the Prefect API holds it, as JSON: the flow run (with
    its parameters), its task runs (names, inputs, states) and its log lines. (Prefect 3.8
    keeps a task run's inputs by name, ``{"requests_file": []}``, not their values; one
    that kept them would show them here.)"""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    async def read() -> list[dict[str, Any]]:
        await APILogHandler.aflush()  # log lines reach the API in batches
        async with get_client() as client:
            out = []
            for run in await client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name]))):
                tasks = await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
                logs = await client.read_logs(
                    LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
                out.append({"flow_run": run.model_dump(mode="json"),
                            "task_runs": [t.model_dump(mode="json") for t in tasks],
                            "logs": [line.model_dump(mode="json") for line in logs]})
            return out

    return asyncio.run(read())


def _engine(vh: VaultHome) -> Engine:
    return engine_for(vh)


def _count(vh: VaultHome, table: str, where: str = "") -> int:
    # readonly: a DEFERRED snapshot read in WAL, never queued behind a writer's lock
    with _engine(vh).connect().execution_options(readonly=True) as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table} {where}")).scalar_one())


def _ledger_actions(vh: VaultHome) -> dict[str, int]:
    import orjson

    from ledger import store as ledger_store

    out: dict[str, int] = {}
    with _engine(vh).connect() as conn:
        for raw in ledger_store.iter_entries(conn):
            action = orjson.loads(raw)["action"]
            out[action] = out.get(action, 0) + 1
    return out


def _attributes(vh: VaultHome, columns: list[str]) -> pl.DataFrame:
    from vault.keyring import Keyring
    from vault.keys import provider_for
    from vault.store import read_attributes

    with _engine(vh).connect() as conn:
        frame = read_attributes(conn, Keyring(provider_for(vh)), DATASET, columns)
    return frame.sort(columns)


def _analyst_token(vh: VaultHome, tmp_path: Path) -> Path:
    from flows.demo import _create_analyst

    token_file = tmp_path / "analyst.token"
    _create_analyst(vh, token_file)
    return token_file


# --- ingest ---------------------------------------------------------------------------


def test_ingest_flow_stores_every_batch_and_reingest_adds_nothing(
    harness: dict[str, str], home: VaultHome, voters_csv: Path
) -> None:
    from flows.ingest import ingest

    first = ingest(path=str(voters_csv), dataset=DATASET, home=str(home.root), batch_rows=200)
    assert first["rows_added"] == 600 and first["batches"] == 3
    assert {c["name"] for c in first["columns"]} >= {"ncid", "canvass_notes"}
    again = ingest(path=str(voters_csv), dataset=DATASET, home=str(home.root), batch_rows=200)
    assert again["rows_added"] == 0 and again["rows_updated"] == 0
    assert again["batches"] == 0
    assert _count(home, "vault_batches") == 3
    assert _ledger_actions(home)["vault.ingest.batch"] == 3


def test_cli_ingest_runs_the_ingest_flow(
    harness: dict[str, str], home: VaultHome, voters_csv: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from flows.cli import main

    monkeypatch.setenv("CIVICVAULT_HOME", str(home.root))
    monkeypatch.delenv("CIVICVAULT_DB_URL", raising=False)
    typed = voters_csv.with_name(f"canvass-{TYPED}.csv")  # a file name naming a person
    voters_csv.rename(typed)
    capsys.readouterr()
    assert main(["ingest", str(typed), "--dataset", DATASET, "--prefect", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["rows_added"] == 600
    # Prefect stores and shows a run's parameters: the path went as a reference to a
    # 0600 file in the vault home, removed once the run was over
    stored = json.dumps(_flow_runs())
    assert '"path": "path-file:.flow-path-' in stored and TYPED not in stored
    # nor its task runs or log lines: the plan-source task is handed the resolved path,
    # which Prefect 3.8 does not keep (a task run's inputs are kept by name only)
    assert TYPED not in json.dumps(_stored_runs("ingest"))
    assert not list(home.root.glob(".flow-path-*"))


def test_ingest_flow_takes_a_folder_of_files(
    harness: dict[str, str], home: VaultHome, tmp_path: Path
) -> None:
    from flows.ingest import ingest

    folder = tmp_path / "drop"
    full = demo_data.generate(300, seed=5)
    folder.mkdir()
    full.slice(0, 150).write_csv(folder / "part-1.csv")
    full.slice(150, 150).write_csv(folder / "part-2.csv")
    (folder / ".hidden.csv").write_text("ignored\n")
    report = ingest(path=str(folder), dataset=DATASET, home=str(home.root))
    assert report["files"] == 2 and report["rows_added"] == 300


def test_transient_database_error_is_retried_with_backoff(
    harness: dict[str, str], home: VaultHome, voters_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection at the vault seam: the first store of the source hits a locked
    database; the task is retried (with backoff) and stores every batch once."""
    from sqlalchemy.exc import OperationalError

    import flows.ingest as flow_module
    from vault.service import Vault

    real = Vault.ingest_planned
    failures: list[str] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append("locked")
            raise OperationalError(
                "INSERT ...", {"v": "SECRET-PLAINTEXT"}, Exception("database is locked")
            )
        return real(*args, **kwargs)

    monkeypatch.setattr(Vault, "ingest_planned", flaky)  # the service's store step
    report = flow_module.ingest(
        path=str(voters_csv), dataset=DATASET, home=str(home.root), batch_rows=200
    )
    assert failures == ["locked"]
    assert report["rows_added"] == 600 and report["batches"] == 3
    assert _count(home, "vault_batches") == 3


def test_ingest_flow_pipelines_the_batches_of_a_source(
    harness: dict[str, str], home: VaultHome, voters_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a cluster, one task stores the whole source through the pipelined writer."""
    import flows.ingest as flow_module
    import vault.store

    pipelined: list[int] = []
    real = vault.store._store_predicted

    def spy(*args: Any, **kwargs: Any) -> Any:
        pipelined.append(int(kwargs["batch_index"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(vault.store, "_store_predicted", spy)
    report = flow_module.ingest(
        path=str(voters_csv), dataset=DATASET, home=str(home.root), batch_rows=200
    )
    assert report["rows_added"] == 600 and report["batches"] == 3
    assert pipelined == [0, 1, 2]


def test_bad_input_is_not_retried(harness: dict[str, str], home: VaultHome, tmp_path: Path) -> None:
    from flows.ingest import ingest
    from vault.errors import BadInput

    with pytest.raises(BadInput):
        ingest(path=str(tmp_path / "missing.csv"), dataset=DATASET, home=str(home.root))


def test_flow_killed_mid_ingest_then_rerun_stores_every_row_once(
    harness: dict[str, str], home: VaultHome, tmp_path: Path
) -> None:
    rows, batch_rows = 1_500, 100
    source = demo_data.write_csv(tmp_path / "big.csv", rows, seed=3)
    script = textwrap.dedent(f"""
        from flows.ingest import ingest
        ingest(path={str(source)!r}, dataset={DATASET!r}, home={str(home.root)!r},
               batch_rows={batch_rows})
    """)
    env = {**os.environ, "PREFECT_API_URL": harness["api_url"]}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if _count(home, "vault_batches") >= 3:
                    break
            except Exception:  # schema busy while the first batch commits
                pass
            time.sleep(0.05)
        assert proc.poll() is None, "the ingest finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    stored = _count(home, "vault_batches")
    assert 0 < stored < rows // batch_rows, "the kill did not land mid-ingest"

    from flows.ingest import ingest

    report = ingest(path=str(source), dataset=DATASET, home=str(home.root), batch_rows=batch_rows)
    assert report["rows_added"] == rows - stored * batch_rows
    assert _count(home, "vault_batches") == rows // batch_rows
    assert _count(home, "vault_records") == rows
    assert _count(home, "vault_subjects") == rows
    with _engine(home).connect() as conn:
        dup = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT batch_index FROM vault_batches "
                "GROUP BY source_id, batch_index HAVING count(*) > 1)"
            )
        ).scalar()
    assert dup == 0
    assert _ledger_actions(home)["vault.ingest.batch"] == rows // batch_rows
    from flows.audit import audit

    assert audit(home=str(home.root))["verdict"] == "OK"


# --- audit ----------------------------------------------------------------------------


def _events(name: str, timeout: float = 20.0) -> list[Any]:
    """Events of ``name`` the server has stored (persisted asynchronously: poll)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            page = client.read_events(EventFilter(event=EventNameFilter(name=[name])), limit=50)
        if page.events or time.monotonic() > deadline:
            return list(page.events)
        time.sleep(0.5)


def _artifact(key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=50
        )
    return found


def test_audit_checkpoints_and_checks_consistency_with_the_previous_one(
    harness: dict[str, str], home: VaultHome, voters_csv: Path
) -> None:
    from flows.audit import audit, checkpoint_files
    from flows.ingest import ingest

    ingest(path=str(voters_csv), dataset=DATASET, home=str(home.root))
    first = audit(home=str(home.root))
    assert first["verdict"] == "OK" and first["previous_size"] is None
    assert first["actions"]["vault.ingest.batch"] == 1
    second = audit(home=str(home.root))
    assert second["previous_size"] == first["checkpoint_size"]
    assert second["size"] > first["checkpoint_size"]
    saved = checkpoint_files(home)
    assert len(saved) == 2
    assert saved[-1].read_text().startswith(home.identity() + "\n")
    verdicts = _artifact("civicvault-audit-verdict")
    assert any("OK" in (a.data or "") for a in verdicts)
    # sizes and roots say whose they are: this run's verification, the checkpoint it was
    # held against, the checkpoint it signed
    assert any(f"held against the saved signed checkpoint of size: `{first['checkpoint_size']}`"
               in (a.data or "") for a in verdicts)
    assert any("verified root (base64)" in (a.data or "") for a in verdicts)
    assert _artifact("civicvault-audit-actions")
    events = _events("civicvault.audit.completed")
    assert events and events[0].resource.id == "civicvault.ledger"


def test_audit_fails_on_tampered_vault_ciphertext_and_says_so(
    harness: dict[str, str], home: VaultHome, voters_csv: Path
) -> None:
    from flows.audit import audit
    from flows.ingest import ingest
    from vault.errors import VaultMismatch
    from vault.store import T_COLUMN

    ingest(path=str(voters_csv), dataset=DATASET, home=str(home.root))
    with _engine(home).begin() as conn:
        row = conn.execute(
            select(T_COLUMN.c.batch_id, T_COLUMN.c.column, T_COLUMN.c.sealed).limit(1)
        ).one()
        flipped = bytes(row.sealed[:-1]) + bytes([row.sealed[-1] ^ 1])
        conn.execute(
            update(T_COLUMN)
            .where(T_COLUMN.c.batch_id == row.batch_id, T_COLUMN.c.column == row.column)
            .values(sealed=flipped)
        )
    with pytest.raises(VaultMismatch):
        audit(home=str(home.root))
    assert any("FAILED" in (a.data or "") for a in _artifact("civicvault-audit-verdict"))
    assert _events("civicvault.audit.failed")


# --- release, erasure, rotation ---------------------------------------------------------


def test_release_flow_spends_the_analysts_budget(
    harness: dict[str, str], home: VaultHome, voters_csv: Path, tmp_path: Path
) -> None:
    from flows.demo import RELEASES
    from flows.ingest import ingest
    from flows.release import release

    ingest(path=str(voters_csv), dataset=DATASET, home=str(home.root))
    token_file = _analyst_token(home, tmp_path)
    by, measures, epsilon = RELEASES[0]
    out = tmp_path / "release.json"
    doc = release(
        dataset=DATASET,
        by=by,
        measures=measures,
        epsilon=epsilon,
        home=str(home.root),
        token_file=str(token_file),
        out=str(out),
    )
    assert doc["rows"] and "accuracy" in doc and out.exists()
    assert doc["budget"]["epsilon_spent"] == pytest.approx(float(epsilon))
    assert _ledger_actions(home).get("release.dp", 0) == 1


def test_linked_release_flow_charges_both_datasets_of_the_link(
    harness: dict[str, str], home: VaultHome, tmp_path: Path
) -> None:
    """``linked-release``: turnout by party across the voter file and its vote history,
    person-level, charged on both datasets; one release entry. ``out``, named after a
    person, goes as a path reference (as ``release``'s does from the CLI): it is written,
    and Prefect's runs hold no trace of its name."""
    import json

    from link_helpers import (
        GENERAL,
        HISTORY_LAYOUT,
        LINK_POLICY,
        VOTER_LAYOUT,
        history,
        put,
        voter_file,
    )

    from flows.flow_runtime import path_ref_for
    from flows.linked_release import linked_release
    from vault.access import installed_policy
    from vault.keyring import Keyring
    from vault.keys import provider_for
    from vault.linkage import build_link

    home.policy_path.write_text(home.policy_path.read_text() + LINK_POLICY, encoding="utf-8")
    engine, keyring = _engine(home), Keyring(provider_for(home))
    voters = voter_file(40)
    put(engine, keyring, voters, "nc_voters", VOTER_LAYOUT)
    ids = voters.get_column("ncid").to_list()
    put(engine, keyring, history(ids[:30], [2] * 30), "nc_history", HISTORY_LAYOUT)
    with engine.begin() as conn:
        build_link(conn, keyring, installed_policy(home).links["nc_voter_history"], "admin")
    from vault.service import Vault

    token_file = tmp_path / "analyst.token"
    with Vault.open(home) as admin:  # an analyst (the default budget holds one release)
        token_file.write_text(admin.principals_add("ana", "analyst") + "\n")
    token_file.chmod(0o600)
    out = tmp_path / f"linked-{TYPED}.json"
    with path_ref_for(home, out) as out_ref:
        doc = linked_release(dataset="nc_voters", join="nc_history", by=["party_cd"],
                             measures=["turnout"], epsilon="0.5",
                             where=[f"election_desc={GENERAL}"], home=str(home.root),
                             token_file=str(token_file), out=out_ref)
    assert doc["rows"] and doc["accuracy"]["privacy_unit"]["unit"] == "person"
    assert json.loads(out.read_text())["rows"] == doc["rows"]
    runs = _stored_runs("linked-release")
    assert [r["flow_run"]["parameters"]["out"] for r in runs] == [out_ref]
    assert TYPED not in json.dumps(runs)
    assert _ledger_actions(home).get("release.charge", 0) == 2
    assert _ledger_actions(home).get("release.dp", 0) == 1


def test_cli_release_runs_the_release_flow(
    harness: dict[str, str], home: VaultHome, voters_csv: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from flows.cli import main
    from flows.demo import RELEASES
    from flows.ingest import ingest

    ingest(path=str(voters_csv), dataset=DATASET, home=str(home.root))
    token = _analyst_token(home, tmp_path).read_text().strip()
    monkeypatch.setenv("CIVICVAULT_HOME", str(home.root))
    monkeypatch.setenv("CIVICVAULT_TOKEN", token)
    by, measures, epsilon = RELEASES[0]
    args = ["release", "--dataset", DATASET, "--by", ",".join(by), "--epsilon", epsilon,
            "--prefect", "--json"]
    for m in measures:
        args += ["--measure", m]
    out = tmp_path / f"turnout-{TYPED}.json"  # a typed --out path: a reference to the flow
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["rows"] and doc["budget"]["epsilon_spent"] == pytest.approx(float(epsilon))
    assert _ledger_actions(home).get("release.dp", 0) == 1
    assert json.loads(out.read_text())["rows"] == doc["rows"]
    stored = json.dumps(_flow_runs())
    assert '"out": "path-file:.flow-path-' in stored and TYPED not in stored
    assert TYPED not in json.dumps(_stored_runs("release"))  # task runs, log lines
    assert not list(home.root.glob(".flow-token-*"))  # the token file is gone
    assert not list(home.root.glob(".flow-path-*"))  # and the path's


def _cli_with(harness: dict[str, str], home: VaultHome, tmp_path: Path,
              *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process against the harness's Prefect API, clean environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CIVICVAULT_"))}
    clean.update({"PREFECT_API_URL": harness["api_url"], "CIVICVAULT_HOME": str(home.root),
                  "PREFECT_HOME": str(tmp_path / "prefect-home"), "DO_NOT_TRACK": "1", **env})
    return subprocess.run([sys.executable, "-c", "from flows.cli import run; run()", *args],
                          capture_output=True, text=True, env=clean, timeout=300, check=False)


def _one_failure_line(run: subprocess.CompletedProcess[str]) -> str:
    """The failure is the command's one ``error:`` line: no traceback, no Prefect ERROR."""
    assert "Traceback" not in run.stderr and "| ERROR" not in run.stderr, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr[-3000:]
    return errors[0]


def test_a_failing_flow_run_from_the_cli_is_one_line_without_a_traceback(
    harness: dict[str, str], home: VaultHome, voters_csv: Path, tmp_path: Path,
) -> None:
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("first_name,age\nZelphina,31\nQuorvath,44,extra\n", encoding="utf-8")
    bad = _cli_with(harness, home, tmp_path, "ingest", str(ragged), "--dataset", DATASET,
                    "--prefect")
    assert bad.returncode == 2
    line = _one_failure_line(bad)
    assert "row 2" in line and "Quorvath" not in bad.stderr + bad.stdout
    assert "Flow run" in bad.stderr  # Prefect's progress lines still show

    from flows.ingest import ingest

    ingest(path=str(voters_csv), dataset=DATASET, home=str(home.root))
    token = _analyst_token(home, tmp_path).read_text().strip()
    over = _cli_with(harness, home, tmp_path, "release", "--dataset", DATASET,
                     "--by", "county_desc", "--measure", "count", "--epsilon", "5",
                     "--prefect", CIVICVAULT_TOKEN=token)
    assert over.returncode == 1  # a denial: the analyst's budget is smaller
    assert "budget" in _one_failure_line(over)


def test_erasure_flow_shreds_each_requested_subject_once(
    harness: dict[str, str], home: VaultHome, voters_csv: Path, tmp_path: Path
) -> None:
    import json

    from flows.erasure import erasure
    from flows.ingest import ingest

    ingest(path=str(voters_csv), dataset=DATASET, home=str(home.root))
    ids = pl.read_csv(voters_csv)["ncid"].to_list()[:2]
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        "".join(
            json.dumps({"id": f"REQ-{i}", "dataset": DATASET, "match": {"ncid": v}}) + "\n"
            for i, v in enumerate(ids)
        )
    )
    first = erasure(requests_file=str(requests), home=str(home.root))
    assert first["requests"] == 2 and first["subjects_erased"] == 2
    again = erasure(requests_file=str(requests), home=str(home.root))
    assert again["subjects_erased"] == 0
    assert _count(home, "vault_subjects", "WHERE erased_at IS NOT NULL") == 2


def test_erasure_flow_given_a_path_reference_stores_no_path_in_flow_or_task_runs(
    harness: dict[str, str], home: VaultHome, voters_csv: Path, tmp_path: Path
) -> None:
    """A requests file named after a person reaches the ``erasure`` flow as a reference
    (``path_ref_for``, held for the whole run), which the flow and each ``erase-request``
    task resolve: the requests are carried out, and Prefect's flow run, task runs and log
    lines hold no trace of the name."""
    import json

    from flows.erasure import erasure
    from flows.flow_runtime import PATH_REF, path_ref_for
    from flows.ingest import ingest

    ingest(path=str(voters_csv), dataset=DATASET, home=str(home.root))
    ids = pl.read_csv(voters_csv)["ncid"].to_list()[:3]
    requests = tmp_path / f"erasures-{TYPED}.jsonl"
    requests.write_text("".join(
        json.dumps({"id": f"REQ-{i}", "dataset": DATASET, "match": {"ncid": v}}) + "\n"
        for i, v in enumerate(ids)))
    with path_ref_for(home, requests) as ref:
        assert ref is not None
        report = erasure(requests_file=ref, home=str(home.root))
    assert report["requests"] == 3 and report["subjects_erased"] == 3
    assert _count(home, "vault_subjects", "WHERE erased_at IS NOT NULL") == 3
    runs = _stored_runs("erasure")  # the module's server: other tests' runs are there too
    [run] = [r for r in runs if r["flow_run"]["parameters"]["requests_file"] == ref]
    assert sorted(t["name"] for t in run["task_runs"]) == [
        "erase-line-1", "erase-line-2", "erase-line-3"]
    assert all("requests_file" in t["task_inputs"] for t in run["task_runs"])
    assert ref.startswith(PATH_REF) and TYPED not in json.dumps(runs)
    assert not list(home.root.glob(".flow-path-*"))


def test_rotate_flow_rewraps_and_reencrypts_and_data_stays_readable(
    harness: dict[str, str], home: VaultHome, voters_csv: Path
) -> None:
    from flows.audit import audit
    from flows.ingest import ingest
    from flows.rotate import rotate

    ingest(path=str(voters_csv), dataset=DATASET, home=str(home.root))
    before = _attributes(home, ["county_desc", "party_cd"])
    report = rotate(home=str(home.root))
    assert report["kek_version"] == 2 and report["batches_resealed"] >= 1
    assert _attributes(home, ["county_desc", "party_cd"]).equals(before)
    # the monthly deployment runs again and again (issue 21: the second run failed)
    again = [rotate(home=str(home.root)) for _ in range(2)]
    assert [r["kek_version"] for r in again] == [3, 4]
    assert all(r["batches_resealed"] == report["batches_resealed"] for r in again)
    assert _attributes(home, ["county_desc", "party_cd"]).equals(before)
    assert audit(home=str(home.root))["verdict"] == "OK"


# --- watch folder ---------------------------------------------------------------------


def _drop(folder: Path, name: str, frame: pl.DataFrame) -> float:
    """Write like a careful producer (temp name, then rename); return the arrival time."""
    part = folder / (name + ".part")
    frame.write_csv(part)
    os.replace(part, folder / name)
    return time.monotonic()


def _wait_for_batches(vh: VaultHome, n: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (
                _count(vh, "vault_batches") >= n
                and _ledger_actions(vh).get("vault.ingest.batch", 0) >= n
            ):
                return time.monotonic()
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{n} batches not stored within {timeout} s")


def test_watch_folder_has_a_new_small_file_in_vault_and_ledger_within_5_s(
    harness: dict[str, str], home: VaultHome, tmp_path: Path
) -> None:
    from flows.watch import watch_folder

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    frames = demo_data.generate(40, seed=21)
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(
            watch_folder(
                folder=str(inbox),
                dataset=DATASET,
                home=str(home.root),
                window_seconds=90,
                poll_seconds=0.2,
                max_files=2,
            )
        )

    watcher = threading.Thread(target=run)
    watcher.start()
    try:
        _drop(inbox, "warm-up.csv", frames.slice(0, 20))  # the watcher is live once this lands
        _wait_for_batches(home, 1, timeout=60)
        arrived = _drop(inbox, "new.csv", frames.slice(20, 20))
        stored = _wait_for_batches(home, 2, timeout=30)
    finally:
        watcher.join(timeout=120)
    latency = stored - arrived
    print(f"watch-folder latency: {latency:.2f} s")
    assert latency <= 5.0, f"new file took {latency:.2f} s to reach vault and ledger"
    assert result["files"] == 2
    assert [p for p in inbox.rglob("*") if p.is_file()] == []  # shredded, not set aside


def test_watch_deployment_keeps_a_reference_to_the_folder_that_its_run_resolves(
    harness: dict[str, str], home: VaultHome, tmp_path: Path
) -> None:
    """``civicvault deploy --watch-folder`` on a folder named after a person: the
    deployment Prefect keeps (and its UI shows) holds a reference to the folder, kept in
    the vault home (a redeploy reuses it); a run with the stored parameters watches that
    folder and ingests what lands in it; no run, task run or log line names it."""
    import asyncio
    import json

    from prefect.client.orchestration import get_client

    from flows.deploy import DeployConfig, build_deployments
    from flows.flow_runtime import kept_path_ref, typed_path
    from flows.watch import watch_folder

    inbox = tmp_path / f"canvass-{TYPED}"
    inbox.mkdir()
    ref = kept_path_ref(home, inbox)  # what deploy gives DeployConfig
    assert kept_path_ref(home, inbox) == ref  # deploying again: the same reference
    assert len(list((home.root / "flow-paths").iterdir())) == 1
    [deployment] = [d for d in build_deployments(DeployConfig(home=str(home.root),
                                                               watch_folder=ref))
                    if d.name == "watch-folder-ingest"]
    deployment.apply()

    async def stored() -> dict[str, Any]:
        async with get_client() as client:
            found = await client.read_deployment_by_name("watch-folder/watch-folder-ingest")
            return found.model_dump(mode="json")

    kept = asyncio.run(stored())
    assert kept["parameters"]["folder"] == ref and TYPED not in json.dumps(kept)
    frames = demo_data.generate(20, seed=23)
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(watch_folder(**kept["parameters"], window_seconds=90, poll_seconds=0.2,
                                   max_files=1))

    watcher = threading.Thread(target=run)
    watcher.start()
    try:
        _drop(inbox, f"walk-list-{TYPED}.csv", frames)
        _wait_for_batches(home, 1, timeout=60)
    finally:
        watcher.join(timeout=120)
    assert result["files"] == 1 and _count(home, "vault_records") == 20
    runs = _stored_runs("watch-folder")
    assert [r["flow_run"]["parameters"]["folder"] for r in runs
            if r["flow_run"]["parameters"]["folder"].startswith("path-file:")] == [ref]
    assert TYPED not in json.dumps(runs)
    assert typed_path(home, ref) == inbox


# --- Dask -----------------------------------------------------------------------------


def test_dask_two_worker_cluster_gives_the_same_vault_contents(
    harness: dict[str, str], tmp_path: Path
) -> None:
    from distributed import LocalCluster

    from flows.ingest import ingest, ingest_flow
    from vault.setup import init_home

    source = demo_data.write_csv(tmp_path / "v.csv", 800, seed=9)
    local, dasked = VaultHome(root=tmp_path / "local"), VaultHome(root=tmp_path / "dask")
    init_home(local)
    init_home(dasked)
    ingest(path=str(source), dataset=DATASET, home=str(local.root), batch_rows=200)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        flow = ingest_flow(cluster.scheduler_address)
        report = flow(path=str(source), dataset=DATASET, home=str(dasked.root), batch_rows=200)
    assert report["rows_added"] == 800 and report["batches"] == 4
    cols = ["county_desc", "party_cd", "race_code", "gender_code", "voted_2024"]
    assert _attributes(dasked, cols).equals(_attributes(local, cols))
    for table in ("vault_batches", "vault_records", "vault_subjects", "vault_blind_index"):
        assert _count(dasked, table) == _count(local, table), table
    assert (
        _ledger_actions(dasked).get("vault.ingest.batch")
        == _ledger_actions(local).get("vault.ingest.batch")
        == 4
    )


# --- no plaintext in Prefect ------------------------------------------------------------


def _plaintext_needles(frame: pl.DataFrame) -> set[bytes]:
    needles: set[bytes] = set()
    for col in ("ncid", "full_phone_number", "email_address", "res_street_address",
                "canvass_notes"):
        for v in frame[col].drop_nulls().to_list():
            if len(str(v)) >= 8:
                needles.add(str(v).encode())
    for first, last in zip(frame["first_name"], frame["last_name"], strict=True):
        needles.add(f"{first.title()} {last.title()}".encode())
    return needles


def _files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def test_no_plaintext_reaches_prefect_home_or_database(
    harness: dict[str, str], home: VaultHome, tmp_path: Path
) -> None:
    import json

    from prefect.settings import PREFECT_HOME

    from flows.audit import audit
    from flows.erasure import erasure
    from flows.ingest import ingest
    from flows.release import release

    frame = demo_data.generate(400, seed=99)
    source = tmp_path / "secret.csv"
    frame.write_csv(source)
    ingest(path=str(source), dataset=DATASET, home=str(home.root), batch_rows=150)
    token_file = _analyst_token(home, tmp_path)
    release(
        dataset=DATASET,
        by=["county_desc"],
        measures=["count"],
        epsilon="0.3",
        home=str(home.root),
        token_file=str(token_file),
    )
    requests = tmp_path / "erase.jsonl"
    requests.write_text(
        json.dumps({"dataset": DATASET, "match": {"ncid": frame["ncid"][0]}})
        + "\n"
        + json.dumps(
            {"dataset": DATASET, "match": {"county_desc": frame["full_phone_number"][1]}}
        )
        + "\n"
    )
    with pytest.raises(Exception):  # noqa: B017 - the second request is refused (not a lookup)
        erasure(requests_file=str(requests), home=str(home.root))
    # a file that breaks the reader, with plaintext next to the break
    broken = tmp_path / "broken.csv"
    broken.write_text(source.read_text() + f'{frame["email_address"][2]},"unterminated\n')
    with pytest.raises(Exception):  # noqa: B017
        ingest(path=str(broken), dataset=DATASET, home=str(home.root))
    audit(home=str(home.root))

    needles = _plaintext_needles(frame)
    assert len(needles) > 1_000
    db = Path(harness["db_file"])
    files = _files_under(Path(str(PREFECT_HOME.value()))) + [
        p for p in db.parent.glob(db.name + "*") if p.is_file()
    ]
    assert any(p.name.startswith(db.name) for p in files)
    hits = []
    for path in files:
        data = path.read_bytes()
        hits += [f"{path.name}: {n[:3]!r}..." for n in needles if n in data]
    assert hits == [], f"{len(hits)} plaintext values found in Prefect state: {hits[:5]}"


# --- the demo ---------------------------------------------------------------------------


def test_demo_command_runs_the_main_job_end_to_end(
    harness: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from flows.cli import main

    code = main(["demo", "--rows", "1500", "--home", str(tmp_path / "demo"), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["rows_added"] == 1500 and summary["verdict"] == "OK"
    assert summary["columns_protected"] >= 10
    assert [r["by"] for r in summary["releases"]] == [
        ["county_desc", "age_band", "party_cd"], ["party_cd", "gender_code"]]
    assert all(r["accuracy"]["count"] > 0 for r in summary["releases"])
    assert summary["ledger_size"] > 5 and len(summary["ledger_root"]) == 64
    assert list((tmp_path / "demo" / "checkpoints").glob("*.checkpoint"))
