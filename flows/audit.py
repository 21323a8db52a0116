"""Flow ``audit``: verify the ledger and the vault against it, then sign and keep a checkpoint.

1. verify the whole ledger (chain, sequence, Merkle tree) from its canonical bytes;
2. cross-check the vault: every stored batch still hashes to its ledger ``data_hash``;
3. sign a checkpoint of the current tree and save it in ``<home>/checkpoints/``;
4. prove the new tree consistent with the previous saved checkpoint (nothing
   edited, dropped or rolled back since the last audit);
5. publish the verdict (markdown artifact), the per-action counts (table
   artifact) and a Prefect event ``civicvault.audit.completed`` or ``.failed``.

Everything published is ids, counts and hashes: ledger entries hold no PII.
A failed audit still publishes its verdict and event, then fails the run with
the ledger's own error (which names the first failing entry, never a value).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from flows import prefect_env

prefect_env.configure()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.events import emit_event  # noqa: E402

from flows.flow_runtime import principal_for, scrubbed, vault_for, vault_home  # noqa: E402
from ledger.checkpoint import Checkpoint  # noqa: E402
from ledger.errors import CivicVaultError  # noqa: E402
from vault.home import VaultHome  # noqa: E402
from vault.service import Principal  # noqa: E402
from vault.transparency import checkpoint_store  # noqa: E402

EVENT_OK = "civicvault.audit.completed"
EVENT_FAILED = "civicvault.audit.failed"


def checkpoint_files(home: VaultHome) -> list[Path]:
    """Saved checkpoints, by tree size then age (the last is the newest): the one store's."""
    return checkpoint_store(home).files()


def previous_checkpoint(home: VaultHome) -> tuple[Path, Checkpoint] | None:
    """The newest saved checkpoint, its signature and origin verified."""
    latest = checkpoint_store(home).latest()
    return (latest.path, latest.checkpoint) if latest is not None else None


@task(name="verify-ledger-and-vault", cache_policy=NO_CACHE, persist_result=False)
def verify_ledger_and_vault(home: str, principal: Principal) -> dict[str, Any]:
    """Whole-log verification, held against the last checkpoint, plus the vault cross-check."""
    vh = vault_home(home)
    with scrubbed("audit-verify"):
        return vault_for(vh, principal).verify_for_audit()


@task(name="sign-checkpoint", cache_policy=NO_CACHE, persist_result=False)
def sign_consistent_checkpoint(home: str, principal: Principal) -> dict[str, Any]:
    """Sign the current tree, after proving it extends the last saved checkpoint; save it."""
    vh = vault_home(home)
    with scrubbed("audit-checkpoint"):
        # the decision is ledgered first, so the checkpoint covers that entry too; signed
        # only if the tree extends the last saved checkpoint (the one store's rule)
        published = vault_for(vh, principal).checkpoint(record=True)
        path, size = published.saved.path, published.saved.size
        published.require_quorum()
    return {"checkpoint": path.name, "checkpoint_size": size}


_LABELS = (
    ("size", "verified tree size (this run's verification)"),
    ("root", "verified root (hex)"),
    ("batches", "stored batches checked"),
    ("records", "records checked"),
    ("previous_size", "held against the saved signed checkpoint of size"),
    ("checkpoint", "checkpoint signed by this run (file)"),
    ("checkpoint_size", "checkpoint signed by this run: size"),
)


def publish(verdict: str, summary: dict[str, Any], failure: str | None) -> None:
    """Markdown verdict, table of per-action counts, and the Prefect event."""
    actions: dict[str, int] = summary.get("actions", {})
    lines = [f"# Ledger audit: **{verdict}**", ""]
    # each size and root says whose it is: this run's verification, the saved checkpoint
    # it was held against, or the checkpoint this run signed
    for key, label in _LABELS:
        if summary.get(key) is not None:
            lines.append(f"- {label}: `{summary[key]}`")
        if key == "root" and summary.get("root"):
            root_b64 = base64.b64encode(bytes.fromhex(str(summary["root"]))).decode()
            lines.append(f"- verified root (base64): `{root_b64}`")
    if "previous_size" in summary and summary["previous_size"] is None:
        lines.append("- held against: no saved checkpoint yet (first audit)")
    if failure:
        lines.append(f"- failure: {failure}")
    create_markdown_artifact("\n".join(lines), key="civicvault-audit-verdict",
                             description="civicvault ledger and vault audit verdict")
    if actions:
        create_table_artifact([{"action": a, "entries": n} for a, n in actions.items()],
                              key="civicvault-audit-actions",
                              description="ledger entries per action")
    resource = {"prefect.resource.id": "civicvault.ledger",
                "civicvault.ledger.size": str(summary.get("size", "")),
                "civicvault.ledger.root": str(summary.get("root", ""))}
    emit_event(EVENT_OK if failure is None else EVENT_FAILED, resource=resource,
               payload={"verdict": verdict, **{k: v for k, v in summary.items()
                                                if k != "actions"}})


@flow(name="audit", persist_result=False, log_prints=False)
def audit(home: str | None = None, token_file: str | None = None) -> dict[str, Any]:
    """Verify ledger and vault, checkpoint, check consistency, publish the verdict."""
    logger = get_run_logger()
    vh = vault_home(home)
    summary: dict[str, Any] = {}
    try:
        principal = principal_for(vh, token_file)
        summary.update(verify_ledger_and_vault(str(vh.root), principal))
        summary.update(sign_consistent_checkpoint(str(vh.root), principal))
    except CivicVaultError as exc:
        publish("FAILED", summary, exc.diagnostics().splitlines()[0])
        logger.error("audit failed: %s", exc.diagnostics().splitlines()[0])
        raise
    publish("OK", summary, None)
    logger.info("audit OK: %d entries, root %s", summary["size"], summary["root"])
    return {"verdict": "OK", **summary}
