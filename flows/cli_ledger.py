"""``civicvault ledger ...``: annotate, verify, checkpoint, pubkey, export, prove, consistency.

A thin shell: every command asks ``session.access`` (which ledgers the decision),
then calls ``ledger.store`` (reading), ``ledger.db_verify`` / ``ledger.verify``
(deciding) and ``ledger.checkpoint`` (signing). Errors propagate to ``flows.cli``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from flows.output import console, emit_json
from flows.session import Session, open_session
from ledger import store
from ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.entry import EntryDraft
from ledger.errors import BadInput, LedgerTampered
from ledger.signer import Signer
from ledger.verify import (
    LogVerdict,
    verify_against_checkpoint,
    verify_checkpoint_consistency,
)
from vault.home import VaultHome

app = typer.Typer(help="The verifiable audit ledger.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON value.")]
SUFFIX = ".checkpoint"
_JSONL_KEYS = frozenset({"action", "resource", "purpose"})


# -- saved checkpoints ---------------------------------------------------------------------


def _size_of(path: Path) -> int:
    head = path.name.split("-", 1)[0].removesuffix(SUFFIX)
    return int(head) if head.isdigit() else -1


def newest_checkpoint(home: VaultHome) -> Path | None:
    """The saved checkpoint with the largest tree size (newest file among equals)."""
    folder = home.checkpoints_dir
    files = list(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []
    return max(files, key=lambda p: (_size_of(p), p.stat().st_mtime_ns), default=None)


def _save_checkpoint(home: VaultHome, note: str, size: int) -> Path:
    home.checkpoints_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for n in range(1000):
        name = f"{size}{SUFFIX}" if n == 0 else f"{size}-{n}{SUFFIX}"
        path = home.checkpoints_dir / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue  # never overwrite a signed checkpoint: it may be evidence
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(note)
        return path
    raise BadInput(f"too many checkpoints saved for size {size}")


def _open_saved(session: Session, path: Path) -> Checkpoint:
    try:
        note = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise BadInput(f"cannot read checkpoint file {path}") from None
    vkey = Signer.load(session.home.signing_key_path).vkey()
    return open_checkpoint(note, [vkey], origin=session.home.identity())


# -- annotate --------------------------------------------------------------------------------


def _drafts_from_jsonl(path: Path, actor: str) -> list[EntryDraft]:
    """Every line a draft, or BadInput naming the first bad line (nothing is written)."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        raise BadInput(f"cannot read {path}") from None
    drafts: list[EntryDraft] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise BadInput(f"{path}:{number}: not a JSON object") from None
        if not isinstance(obj, dict) or not set(obj) <= _JSONL_KEYS:
            raise BadInput(f"{path}:{number}: want an object with keys action, resource "
                           "and optionally purpose")
        fields: dict[str, Any] = obj  # EntryDraft validates the types
        try:
            drafts.append(EntryDraft(actor=actor, action=fields.get("action", ""),
                                     resource=fields.get("resource", ""),
                                     purpose=fields.get("purpose")))
        except BadInput as exc:
            raise BadInput(f"{path}:{number}: {exc}") from None
    if not drafts:
        raise BadInput(f"{path}: no annotations")
    return drafts


@app.command()
def annotate(
    ctx: typer.Context,
    action: Annotated[str | None, typer.Option("--action", help="Dotted action name.")] = None,
    resource: Annotated[str | None, typer.Option("--resource", help="What it is about.")] = None,
    purpose: Annotated[str | None, typer.Option("--purpose", help="Why (no PII).")] = None,
    from_jsonl: Annotated[
        Path | None,
        typer.Option("--from-jsonl", help='Many at once, atomically: one {"action","resource",'
                     '"purpose"} object a line.'),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Add an annotation entry (or many, all or nothing) to the ledger."""
    if from_jsonl is not None and (action or resource or purpose):
        raise BadInput("use either --from-jsonl or --action/--resource/--purpose")
    session = open_session(ctx)
    actor = session.principal.id
    if from_jsonl is not None:
        drafts = _drafts_from_jsonl(from_jsonl, actor)
        target = "ledger"
    elif action is not None and resource is not None:
        drafts = [EntryDraft(actor=actor, action=action, resource=resource, purpose=purpose)]
        target = resource
    else:
        raise BadInput("give --action and --resource, or --from-jsonl FILE")
    with session.access("ledger.annotate", target, purpose=purpose) as conn:
        entries = store.append(conn, drafts)
    seqs = [e.seq for e in entries]
    if json_out:
        emit_json({"count": len(seqs), "first_seq": seqs[0], "last_seq": seqs[-1]})
    elif len(seqs) == 1:
        console.print(f"annotated: ledger entry {seqs[0]}", soft_wrap=True)
    else:
        console.print(f"annotated: {len(seqs)} ledger entries {seqs[0]}..{seqs[-1]}",
                      soft_wrap=True)


# -- verify ----------------------------------------------------------------------------------


@app.command()
def verify(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="A signed checkpoint to hold the ledger against "
                     "(default: the newest saved in <home>/checkpoints/)."),
    ] = None,
    fast: Annotated[bool, typer.Option(
        "--fast", help="Routine audit: skip re-hashing the ciphertext, the per-subject key "
        "and blind-index digests and the stored tree nodes.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Verify every entry (seq, prev chain, leaf hashes, tree root and nodes), no truncation,
    rollback or fork, and that the vault's tables are what the ledger vouches for:
    principals, policy, budgets, keys, batches, erasures and every batch's ciphertext."""
    from vault.access import installed_policy
    from vault.errors import StateMismatch, VaultMismatch
    from vault.verify_all import verify_everything

    session = open_session(ctx)
    principal = session.principal
    if not installed_policy(session.home).decide(principal.role, "ledger.verify", "ledger",
                                                 None, actor=principal.id).allowed:
        with session.access("ledger.verify", "ledger"):
            pass  # ledgers the denial and raises
    path = checkpoint if checkpoint is not None else newest_checkpoint(session.home)
    saved = _open_saved(session, path) if path is not None else None
    report: dict[str, Any] = {"verified": False, "mode": "fast" if fast else "full",
                              "size": None, "root_hash": None, "checkpoint": None}
    if saved is not None:
        report["checkpoint"] = {"file": str(path), "origin": saved.origin, "size": saved.size,
                                "root_hash": saved.root.hex()}
    policy = session.home.policy_path

    def against_checkpoint(verdict: LogVerdict) -> None:
        report.update(size=verdict.size, root_hash=verdict.root.hex())
        if saved is not None:
            verify_against_checkpoint(verdict, saved)

    try:
        done = verify_everything(
            session.engine, policy_bytes=policy.read_bytes() if policy.exists() else None,
            full=not fast, prefix_sizes={saved.size} if saved is not None else (),
            after_ledger=against_checkpoint)
    except LedgerTampered as exc:
        if json_out:
            emit_json({**report, "first_failing_seq": exc.seq, "error": str(exc)})
        raise
    except StateMismatch as exc:
        if json_out:
            emit_json({**report, "vault_table": exc.table, "vault_row": exc.row,
                       "vouched_by_seq": exc.seq, "error": str(exc)})
        raise
    except VaultMismatch as exc:
        if json_out:
            emit_json({**report, "vault_table": "vault_batches", "vault_row": exc.batch,
                       "vault_batch": exc.batch, "error": str(exc)})
        raise
    verdict, state, folded = done.ledger, done.state, done.entries_folded
    # The verification goes on the ledger once it passed: appending to a log that failed
    # would fill a deleted tail and destroy the evidence the next run needs.
    with session.access("ledger.verify", "ledger"):
        pass
    report["vault"] = {"batches": state.batches, "records": state.records}
    report["state"] = {**state.to_json(), "entries_folded": folded,
                       "tree_nodes_checked": done.nodes_checked}
    report["verified"] = True
    if json_out:
        emit_json(report)
        return
    console.print(f"ledger verified: {verdict.size} entries, root {verdict.root.hex()}"
                  + ("" if fast else ", every stored tree node re-folded"), soft_wrap=True)
    console.print(f"  vault matches the ledger: {state.principals} principals, {state.budgets} "
                  f"budgets, {state.data_keys} data keys, {state.batches} batches, "
                  f"{state.erased_subjects} erased subjects"
                  + ("" if fast else f", {state.subject_buckets} subject buckets, "
                     f"{state.records} records re-hashed"), soft_wrap=True)
    if saved is not None:
        console.print(f"  consistent with the signed checkpoint of size {saved.size} ({path})",
                      soft_wrap=True)


# -- checkpoint, pubkey ---------------------------------------------------------------------


@app.command("checkpoint")
def checkpoint_cmd(ctx: typer.Context) -> None:
    """Sign a checkpoint of the current tree (C2SP signed note) to stdout; save it in the home."""
    session = open_session(ctx)
    signer = Signer.load(session.home.signing_key_path)
    origin = session.home.identity()
    previous_path = newest_checkpoint(session.home)
    previous = _open_saved(session, previous_path) if previous_path is not None else None
    with session.access("ledger.checkpoint", "ledger") as conn:
        size = store.size(conn)
        root = store.root(conn, size)
        if previous is not None and previous.size > 0:  # only sign trees extending the last
            proof = (store.consistency_proof(conn, previous.size, size)
                     if previous.size <= size else [])
            verify_checkpoint_consistency(previous, size, root, proof)
        note = sign_checkpoint([signer], origin, size, root)
        _save_checkpoint(session.home, note, size)
    sys.stdout.write(note)
    sys.stdout.flush()


@app.command()
def pubkey(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The checkpoint verifier key (C2SP vkey: name+keyid+base64(0x01||ed25519 key))."""
    session = open_session(ctx)
    with session.access("ledger.pubkey", "ledger"):
        vkey = Signer.load(session.home.signing_key_path).vkey()
    if json_out:
        emit_json({"vkey": vkey, "origin": session.home.identity()})
    else:
        sys.stdout.write(vkey + "\n")


# -- export, prove, consistency -------------------------------------------------------------


@app.command()
def export(ctx: typer.Context) -> None:
    """Every entry as JSONL: line i is entry i's canonical JSON, exactly its leaf bytes."""
    session = open_session(ctx)
    out = sys.stdout.buffer
    with session.access("ledger.export", "ledger") as conn:
        for chunk, _ in store.iter_chunks(conn):
            out.write(b"\n".join(chunk) + b"\n")
    out.flush()


@app.command()
def prove(
    ctx: typer.Context,
    index: Annotated[int, typer.Option("--index", help="Leaf index (entry seq).")],
    size: Annotated[int | None, typer.Option("--size", help="Tree size (default: now).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """RFC 9162 inclusion proof of entry INDEX in the tree of SIZE entries."""
    session = open_session(ctx)
    with session.access("ledger.prove", "ledger") as conn:
        result = store.inclusion_document(conn, index, size)
    if json_out:
        emit_json(result)
        return
    console.print(f"entry {index} in tree of size {result['tree_size']}, "
                  f"root {result['root_hash']}", soft_wrap=True)
    for h in result["inclusion_path"]:
        console.print(f"  {h}", soft_wrap=True)


@app.command()
def consistency(
    ctx: typer.Context,
    old: Annotated[int, typer.Option("--old", help="Older tree size (> 0).")],
    new: Annotated[int | None, typer.Option("--new", help="Newer tree size (default: now).")]
    = None,
    json_out: JsonOpt = False,
) -> None:
    """RFC 9162 consistency proof from the tree of OLD entries to the tree of NEW."""
    session = open_session(ctx)
    with session.access("ledger.consistency", "ledger") as conn:
        result = store.consistency_document(conn, old, new)
    if json_out:
        emit_json(result)
        return
    console.print(f"tree {old} -> {result['new_size']}: {result['old_root']} -> "
                  f"{result['new_root']}", soft_wrap=True)
    for h in result["consistency_path"]:
        console.print(f"  {h}", soft_wrap=True)
