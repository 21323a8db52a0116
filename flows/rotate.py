"""Flow ``rotate``: a new KEK version for every data key, then the re-encryption job.

``vault.rotate.rotate_keys`` makes a new KEK version current and rewraps every data
key in one transaction; ``vault.rotate.reencrypt`` then moves ciphertext off
retired data keys one batch at a time and destroys keys nothing needs any more.
The second step is resumable, so it retries on transient database errors; the
first never retries (a retry would make yet another KEK version).
"""

from __future__ import annotations

from typing import Any

from flows import prefect_env

prefect_env.configure()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402

from flows.flow_runtime import principal_for, scrubbed, vault_for, vault_home  # noqa: E402
from flows.ingest import retry_if_transient  # noqa: E402
from vault.service import Principal  # noqa: E402


@task(name="rotate-kek", cache_policy=NO_CACHE, persist_result=False, retries=0)
def rotate_kek(home: str, principal: Principal) -> dict[str, int]:
    vh = vault_home(home)
    with scrubbed("rotate"):
        return vault_for(vh, principal).keys_rotate()  # decision and rewrap: one transaction


@task(name="reencrypt", cache_policy=NO_CACHE, persist_result=False, retries=4,
      retry_delay_seconds=exponential_backoff(backoff_factor=0.5),
      retry_condition_fn=retry_if_transient)
def reencrypt_retired(home: str, principal: Principal) -> dict[str, int]:
    """Reseal data under retired keys (touches plaintext in memory; resumable)."""
    vh = vault_home(home)
    with scrubbed("reencrypt"):
        return vault_for(vh, principal).keys_reencrypt()


@flow(name="rotate", persist_result=False, log_prints=False)
def rotate(home: str | None = None, token_file: str | None = None,
           rewrap_only: bool = False) -> dict[str, Any]:
    """Rotate the KEK, then re-encrypt what is still under retired data keys."""
    vh = vault_home(home)
    principal = principal_for(vh, token_file)
    report: dict[str, Any] = dict(rotate_kek(str(vh.root), principal))
    if not rewrap_only:
        report.update(reencrypt_retired(str(vh.root), principal))
    get_run_logger().info("key rotation: %s", report)
    return report
