"""Ingest on a real Dask cluster (issue 17): two worker processes prepare the batches,
one ordered writer stores them, and the vault is exactly the default runner's."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.test_ingest_streaming import BATCH, ROWS, TINY, _contents, _home, _voter_csv
from vault.errors import BadInput
from vault.ingest import ingest_path, plan_ingest, store_source
from vault.ingest_parallel import store_source_on
from vault.store import T_BATCH

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client() -> object:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        yield c


def test_two_dask_workers_store_exactly_what_the_default_runner_stores(
        tmp_path: Path, client: object) -> None:
    src = _voter_csv(tmp_path / "voters.csv")
    home, engine, who = _home(tmp_path / "default")
    default = ingest_path(engine, home, who, src, "nc", batch_rows=BATCH)
    want = (default.to_json(), _contents(home, engine, "nc"))
    engine.dispose()
    home, engine, who = _home(tmp_path / "dask")
    plan = plan_ingest(engine, home, who, src, "nc", batch_rows=BATCH, limits=TINY)
    dasked = store_source_on(client, engine, home, who, plan, limits=TINY, window=3)
    assert (dasked.to_json(), _contents(home, engine, "nc")) == want
    assert dasked.batches == ROWS // BATCH and dasked.duplicates_skipped > 0
    # idempotent per batch: a rerun, on either runner, stores nothing more
    again = store_source_on(client, engine, home, who, plan)
    assert again.batches == 0 and again.rows_added == 0
    assert store_source(engine, home, who, plan).batches == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(T_BATCH)).scalar_one() \
            == ROWS // BATCH
    engine.dispose()


@pytest.mark.postgres
def test_two_dask_workers_store_into_postgresql_what_the_default_runner_stores_in_sqlite(
        tmp_path: Path, client: object, pg_url: str) -> None:
    """The production shape: workers prepare, one ordered writer stores into PostgreSQL
    (its deferred blind-index key and all), and the vault holds what a default run on an
    embedded vault holds, row for row, with the ledger's non-random fields equal."""
    src = _voter_csv(tmp_path / "voters.csv")
    home, engine, who = _home(tmp_path / "default")
    default = ingest_path(engine, home, who, src, "nc", batch_rows=BATCH)
    want = (default.to_json(), _contents(home, engine, "nc"))
    engine.dispose()
    home, engine, who = _home(tmp_path / "dask", pg_url)
    assert engine.dialect.name == "postgresql"
    plan = plan_ingest(engine, home, who, src, "nc", batch_rows=BATCH)
    dasked = store_source_on(client, engine, home, who, plan, window=3)
    got = _contents(home, engine, "nc")
    # the one ledger field that names the store: vault.init's backend
    [init] = [e for e in got["ledger"] if e["action"] == "vault.init"]
    assert init["details"] == {"backend": "postgresql"}
    init["details"] = {"backend": "sqlite"}
    assert (dasked.to_json(), got) == want
    again = store_source_on(client, engine, home, who, plan)  # idempotent per batch
    assert again.batches == 0 and again.rows_added == 0
    engine.dispose()


def test_a_resumed_dask_ingest_stores_only_the_missing_batches(
        tmp_path: Path, client: object) -> None:
    from vault.ingest import ingest_batch

    src = _voter_csv(tmp_path / "voters.csv")
    home, engine, who = _home(tmp_path / "home")
    plan = plan_ingest(engine, home, who, src, "nc", batch_rows=BATCH)
    for i in (0, 1, 2):  # a run that died after three batches
        ingest_batch(engine, home, who, plan, i)
    report = store_source_on(client, engine, home, who, plan)
    assert report.batches == ROWS // BATCH - 3
    with engine.connect() as conn:
        assert sorted(conn.execute(select(T_BATCH.c.batch_index)).scalars()) \
            == list(range(ROWS // BATCH))
    engine.dispose()


def test_a_file_changed_under_the_workers_is_refused_without_its_values(
        tmp_path: Path, client: object) -> None:
    src = _voter_csv(tmp_path / "voters.csv")
    home, engine, who = _home(tmp_path / "home")
    plan = plan_ingest(engine, home, who, src, "nc", batch_rows=BATCH)
    _voter_csv(src, rows=ROWS - 700)  # shorter now: the last batches are not there
    with pytest.raises(BadInput) as info:
        store_source_on(client, engine, home, who, plan)
    assert "Quixley" not in str(info.value)
    engine.dispose()


def test_cli_ingest_on_the_cluster_at_civicvault_dask_address(
        tmp_path: Path, client: object, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from flows.cli import main

    def transitions() -> int:
        return int(client.run_on_scheduler(  # type: ignore[attr-defined]
            lambda dask_scheduler: dask_scheduler.transition_counter))

    src = _voter_csv(tmp_path / "voters.csv")
    before = transitions()
    for name in ("default", "dask"):
        monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / name))
        monkeypatch.delenv("CIVICVAULT_DB_URL", raising=False)
        monkeypatch.delenv("CIVICVAULT_TOKEN", raising=False)
        monkeypatch.delenv("PREFECT_API_URL", raising=False)
        if name == "dask":
            monkeypatch.setenv("CIVICVAULT_DASK_ADDRESS", client.scheduler.address)  # type: ignore[attr-defined]
        else:
            monkeypatch.delenv("CIVICVAULT_DASK_ADDRESS", raising=False)
        assert main(["init"]) == 0
        capsys.readouterr()
        assert main(["ingest", str(src), "--dataset", "nc", "--json"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["rows_added"] > 0
        if name == "default":
            want = got
    assert got == want
    assert transitions() > before  # the batches really went through the cluster
