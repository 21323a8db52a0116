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

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from flows import prefect_env

prefect_env.configure()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.events import emit_event  # noqa: E402

from flows.flow_runtime import engine_for, principal_for, scrubbed, vault_home  # noqa: E402
from ledger import checkpoint as ledger_checkpoint  # noqa: E402
from ledger import store as ledger_store  # noqa: E402
from ledger import verify as ledger_verify  # noqa: E402
from ledger.errors import CivicVaultError, VerificationFailed  # noqa: E402
from ledger.signer import Signer  # noqa: E402
from vault.access import Principal, access  # noqa: E402
from vault.home import VaultHome  # noqa: E402

EVENT_OK = "civicvault.audit.completed"
EVENT_FAILED = "civicvault.audit.failed"
CHECKPOINT_SUFFIX = ".checkpoint"


@dataclass(frozen=True)
class SavedCheckpoint:
    path: Path
    size: int
    root: bytes


def checkpoint_files(home: VaultHome) -> list[Path]:
    """Saved checkpoints, oldest first (names sort by tree size, then time)."""
    folder = home.checkpoints_dir
    return sorted(folder.glob(f"*{CHECKPOINT_SUFFIX}")) if folder.is_dir() else []


def save_checkpoint(home: VaultHome, note: str, size: int) -> Path:
    home.checkpoints_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = home.checkpoints_dir / f"{size:012d}-{stamp}{CHECKPOINT_SUFFIX}"
    path.write_text(note, encoding="utf-8")
    return path


@task(name="verify-ledger-and-vault", cache_policy=NO_CACHE, persist_result=False)
def verify_ledger_and_vault(home: str, principal: Principal) -> dict[str, Any]:
    """Whole-log verification plus the vault cross-check; returns size, root and counts."""
    from vault.crosscheck import verify_vault

    vh = vault_home(home)
    engine = engine_for(vh)
    with scrubbed("audit-verify"):
        with access(engine, vh, principal, "ledger.verify", "ledger"):
            pass  # the decision is ledgered; verification reads a snapshot below
        with engine.connect().execution_options(readonly=True) as conn, conn.begin():
            entries = list(ledger_store.iter_entries(conn))
            root = ledger_store.root(conn, len(entries))
            ledger_verify.verify_log(entries, expected_root=root)
            report = verify_vault(conn, entries)
    counts = Counter(str(orjson.loads(e).get("action", "?")) for e in entries)
    return {"size": len(entries), "root": root.hex(), "batches": report.batches,
            "records": report.records, "actions": dict(sorted(counts.items()))}


@task(name="checkpoint-and-consistency", cache_policy=NO_CACHE, persist_result=False)
def checkpoint_and_consistency(home: str, size: int, root_hex: str) -> dict[str, Any]:
    """Sign a checkpoint of (size, root); prove it consistent with the previous one; save it."""
    vh = vault_home(home)
    engine = engine_for(vh)
    signer = Signer.load(vh.signing_key_path)
    origin = vh.identity()
    root = bytes.fromhex(root_hex)
    previous = checkpoint_files(vh)
    checked_against: int | None = None
    with scrubbed("audit-checkpoint", size=size):
        if previous:
            old = ledger_verify.verify_checkpoint(previous[-1].read_text(encoding="utf-8"),
                                                  [signer.vkey()], origin=origin)
            if old.size > size:
                raise VerificationFailed(
                    f"ledger rolled back: size {size} is below the saved checkpoint's {old.size}")
            with engine.connect().execution_options(readonly=True) as conn, conn.begin():
                proof = ledger_store.consistency_proof(conn, old.size, size)
            ledger_verify.verify_consistency(old.size, size, old.root, root, proof)
            checked_against = old.size
        note = ledger_checkpoint.sign_checkpoint([signer], origin, size, root)
        path = save_checkpoint(vh, note, size)
    return {"checkpoint": path.name, "previous_size": checked_against}


def publish(verdict: str, summary: dict[str, Any], failure: str | None) -> None:
    """Markdown verdict, table of per-action counts, and the Prefect event."""
    actions: dict[str, int] = summary.get("actions", {})
    lines = [f"# Ledger audit: **{verdict}**", ""]
    for key in ("size", "root", "batches", "records", "checkpoint", "previous_size"):
        if key in summary:
            lines.append(f"- {key.replace('_', ' ')}: `{summary[key]}`")
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
        summary.update(checkpoint_and_consistency(str(vh.root), summary["size"],
                                                  summary["root"]))
    except CivicVaultError as exc:
        publish("FAILED", summary, exc.diagnostics().splitlines()[0])
        logger.error("audit failed: %s", exc.diagnostics().splitlines()[0])
        raise
    publish("OK", summary, None)
    logger.info("audit OK: %d entries, root %s", summary["size"], summary["root"])
    return {"verdict": "OK", **summary}
