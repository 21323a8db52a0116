"""Flow ``linked-release``: a DP release across two linked datasets, run by
``Vault.release_linked`` (``civicvault release --dataset LEFT --join RIGHT``).

Parameters are the request's shape (left and joined dataset, group-by columns, measures,
``where`` filters on the joined side as ``COLUMN=V1|V2``, epsilon as a decimal string,
optional delta), the vault home's path and optionally the path of a file holding the
analyst's token (never the token itself). The link must be current (a steward's
``link build``, or the refresh every ingest runs); the budget is spent on both datasets
atomically before any noise is drawn, inside ``run_linked_release``. One task, no
retries (a release must never be charged twice); with ``out``, the released document
(noisy aggregates + accuracy, its privacy unit and bound) is written there.
"""

from __future__ import annotations

from typing import Any

from flows import prefect_env

prefect_env.configure()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from flows.cli.link import parse_where  # noqa: E402
from flows.flow_runtime import scrubbed, vault_for, vault_home  # noqa: E402
from flows.outputs import publish_json  # noqa: E402
from flows.purpose import checked_purpose  # noqa: E402
from flows.release import release_setup  # noqa: E402
from vault.budget import parse_epsilon  # noqa: E402
from vault.dp.linked import LinkedRequest  # noqa: E402
from vault.service import Principal  # noqa: E402


@task(name="dp-linked-release", cache_policy=NO_CACHE, persist_result=False, retries=0)
def release_linked_aggregates(home: str, principal: Principal, dataset: str, join: str,
                              by: list[str], measures: list[str], where: list[str],
                              epsilon: str, delta: float | None,
                              purpose: str | None) -> dict[str, Any]:
    """Spend on both datasets, join through the link, add the noise (touches plaintext)."""
    vh = vault_home(home)
    request = LinkedRequest(left=dataset, right=join, by=tuple(by), measures=tuple(measures),
                            epsilon=parse_epsilon(epsilon), delta=delta,
                            where=parse_where(where))
    with scrubbed("release", dataset=dataset):
        result = vault_for(vh, principal).release_linked(request, purpose=purpose)
        document: dict[str, Any] = result.to_json()
    return document


@flow(name="linked-release", persist_result=False, log_prints=False)
def linked_release(dataset: str, join: str, by: list[str], measures: list[str],
                   epsilon: str, where: list[str] | None = None, delta: float | None = None,
                   purpose: str | None = None, home: str | None = None,
                   token_file: str | None = None, out: str | None = None,
                   force: bool = False) -> dict[str, Any]:
    """Release DP aggregates of ``dataset`` joined with ``join`` through their declared
    link, for the analyst named by the token (person-level: the left dataset's person).

    ``out`` (a ``.json`` file) is checked before the budget is charged: it must not
    exist (unless ``force``) nor point into the vault home."""
    vh, target, principal = release_setup(home, token_file, out, force)
    document = release_linked_aggregates(str(vh.root), principal, dataset, join, by,
                                         measures, list(where or []), epsilon, delta,
                                         checked_purpose(purpose))
    if target is not None:
        publish_json(target, document, force=force)
    get_run_logger().info("linked release of %s joined with %s: %d groups, epsilon %s, "
                          "ledger seq %s", dataset, join, len(document.get("rows", [])),
                          epsilon, document.get("ledger_seq"))
    return document
