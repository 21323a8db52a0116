"""Flow ``release``: an analyst's DP release request, run by ``Vault.release``.

Parameters are the request's shape (dataset, group-by column names, measure specs,
epsilon as a decimal string), the vault home's path and optionally the path of a
file holding the analyst's token (never the token itself). The budget is spent
atomically before any noise is drawn, inside ``run_release``; this flow only runs
it as one task (no retries: a release must never be charged twice) and, when
``out`` is given, writes the released document (noisy aggregates + accuracy) there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows import prefect_env

prefect_env.configure()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from flows.flow_runtime import (  # noqa: E402
    principal_for,
    scrubbed,
    typed_path,
    vault_for,
    vault_home,
)
from flows.outputs import check_output, publish_json  # noqa: E402
from vault.budget import parse_epsilon  # noqa: E402
from vault.dp.request import ReleaseRequest  # noqa: E402
from vault.home import VaultHome  # noqa: E402
from vault.service import Principal  # noqa: E402


@task(name="dp-release", cache_policy=NO_CACHE, persist_result=False, retries=0)
def release_aggregates(home: str, principal: Principal, dataset: str, by: list[str],
                       measures: list[str], epsilon: str) -> dict[str, Any]:
    """Spend the budget, read the attributes, add the noise (touches plaintext)."""
    vh = vault_home(home)
    request = ReleaseRequest.build(dataset, by, measures, parse_epsilon(epsilon))
    with scrubbed("release", dataset=dataset):
        result = vault_for(vh, principal).release(request)
        document: dict[str, Any] = result.to_json()
    return document


def release_setup(home: str | None, token_file: str | None, out: str | None,
                  force: bool) -> tuple[VaultHome, Path | None, Principal]:
    """A release flow's vault home, its checked ``--out`` target (before any budget is
    charged: a new ``.json`` file outside the vault home unless ``force``) and analyst."""
    vh = vault_home(home)
    target = check_output(typed_path(vh, out), option="out", force=force, home=vh,
                          suffixes=(".json",)) if out else None
    return vh, target, principal_for(vh, token_file)


@flow(name="release", persist_result=False, log_prints=False)
def release(dataset: str, by: list[str], measures: list[str], epsilon: str,
            home: str | None = None, token_file: str | None = None,
            out: str | None = None, force: bool = False) -> dict[str, Any]:
    """Release DP aggregates of ``dataset`` by ``by`` for the analyst named by the token.

    ``out`` (a ``.json`` file) is checked before the budget is charged: it must not
    exist (unless ``force``) nor point into the vault home."""
    vh, target, principal = release_setup(home, token_file, out, force)
    document = release_aggregates(str(vh.root), principal, dataset, by, measures, epsilon)
    if target is not None:
        publish_json(target, document, force=force)
    get_run_logger().info("release of dataset %s: %d groups, epsilon %s, ledger seq %s",
                          dataset, len(document.get("rows", [])), epsilon,
                          document.get("ledger_seq"))
    return document
