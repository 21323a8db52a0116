"""schemathesis over the published OpenAPI, with each role's token (and none), on a real
SQLite vault through the real app (ASGI): no server error, no undocumented status code,
no undocumented content type, and responses (problem details included) fit their schema.

Both schemathesis generation modes run: positive (data that fits the schema) and negative
(data that does not: it must be refused with a documented status, never a 5xx).
Examples are limited per operation and mode (``CIVICVAULT_SCHEMA_EXAMPLES``, default 10;
derandomized, so a run is reproducible); they are drawn once and sent with each role's token
(and none), so every role meets the same requests.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from flows.api import create_app
from flows.cli import main
from vault.db import make_engine
from vault.home import VaultHome
from vault.service import Vault

ROLES = ("admin", "analyst", "steward", "ingestor", "compliance")
EXAMPLES = int(os.environ.get("CIVICVAULT_SCHEMA_EXAMPLES", "10"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("schema")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIVICVAULT_HOME", str(tmp / "home"))
        for var in ("CIVICVAULT_DB_URL", "CIVICVAULT_TOKEN"):
            mp.delenv(var, raising=False)
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["init"]) == 0
        home = VaultHome.from_env()
        csv = tmp / "voters.csv"
        csv.write_text("voter_reg_num,county_desc,party_cd,birth_age\n"
                       + "".join(f"{8_200_000 + i},WAKE,{'DEM' if i % 2 else 'REP'},{30 + i}\n"
                                 for i in range(40)), encoding="utf-8")
        with Vault.open(home) as admin:
            tokens = {role: admin.principals_add(f"{role}-s", role) for role in ROLES}
            admin.ingest(csv, "seed")
        engine = make_engine(home.db_url)
        app = create_app(home, engine)
        with TestClient(app):  # lifespan: the app runs as served
            yield app, tokens
        engine.dispose()


@pytest.fixture(scope="module")
def cases(served: tuple[Any, dict[str, str]]) -> tuple[int, list[tuple[str, list[Any]]]]:
    """The requests to send: ``EXAMPLES`` per operation and mode, drawn once (derandomized)
    and sent with every role's token. Drawing them is most of a role's run (~2/3), and every
    role used to draw these very cases again. Returns the operation count and
    ``[("<operation> (<mode>)", cases)]``."""
    app, _ = served
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    drawn = [(f"{op.label} ({mode})", _draw(op, mode))
             for op in operations for mode in GenerationMode]
    return len(operations), drawn


def _draw(operation: Any, mode: GenerationMode) -> list[Any]:
    batch: list[Any] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def draw(case: Any) -> None:
        batch.append(case)

    try:
        draw()
    except Unsatisfiable:  # nothing to make invalid: an operation without parameters
        assert mode is GenerationMode.NEGATIVE, operation.label
    if mode is GenerationMode.POSITIVE:
        assert batch, operation.label
    return batch


@pytest.mark.slow
@pytest.mark.parametrize("role", [*ROLES, None])
def test_openapi_holds_for_every_role(served: tuple[Any, dict[str, str]],
                                      cases: tuple[int, list[tuple[str, list[Any]]]],
                                      role: str | None) -> None:
    _, tokens = served
    n_operations, drawn = cases
    headers = {"Authorization": f"Bearer {tokens[role]}"} if role else {}
    assert n_operations >= 25
    failures: list[str] = []
    statuses: dict[int, int] = {}
    for label, batch in drawn:
        for case in batch:
            try:
                response = case.call_and_validate(headers=headers, checks=CHECKS)
            except Exception as exc:  # the first failing case of each; all are reported
                failures.append(f"{label} {case.method} {case.formatted_path}: "
                                f"{type(exc).__name__}: {str(exc)[:600]}")
                break
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    assert not failures, "\n".join(failures)
    print(f"role {role}: statuses {sorted(statuses.items())}")
    assert sum(statuses.values()) >= n_operations  # every operation was called
