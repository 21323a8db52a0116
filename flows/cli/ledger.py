"""``civicvault ledger ...``: annotate, verify, checkpoint, pubkey, export, prove, consistency.

A thin shell: every command calls one method of the vault service
(``vault.service.Vault``: it authorises, works and ledgers), or for an outsider's
``verify --export`` the pure ``ledger.verify``. Errors propagate to ``flows.cli``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from flows.output import console, emit_json
from flows.session import open_session
from ledger.checkpoint import open_checkpoint
from ledger.cosignature import CosignatureVerifier, parse_cosigner_vkey, require_quorum
from ledger.errors import BadInput, LedgerTampered, unreadable
from ledger.signer import parse_vkey
from ledger.verify import verify_against_checkpoint
from policies.validate import int_arg

app = typer.Typer(help="The verifiable audit ledger.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON value.")]
_JSONL_KEYS = frozenset({"action", "resource", "purpose"})
_MAX_SIZE = 2**63 - 1


# -- annotate --------------------------------------------------------------------------------


def _notes_from_jsonl(path: Path) -> list[tuple[str, str, str | None]]:
    """Every line a draft, or BadInput naming the first bad line (nothing is written).
    Errors name the option and a line number, never the path typed for it nor the line."""
    where = "--from-jsonl"
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise BadInput(f"{where}: cannot read the file ({unreadable(exc)})") from None
    notes: list[tuple[str, str, str | None]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise BadInput(f"{where} line {number}: not a JSON object") from None
        if not isinstance(obj, dict) or not set(obj) <= _JSONL_KEYS:
            raise BadInput(f"{where} line {number}: want an object with keys action, "
                           "resource and optionally purpose")
        fields: dict[str, Any] = obj  # the service validates the types
        note = (fields.get("action", ""), fields.get("resource", ""), fields.get("purpose"))
        try:  # the service's checks, here to name the line
            from vault.service import Vault

            Vault.check_note(*note)
        except BadInput as exc:
            raise BadInput(f"{where} line {number}: {exc}") from None
        notes.append(note)
    if not notes:
        raise BadInput(f"{where}: the file holds no annotation")
    return notes


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
    if from_jsonl is not None:
        seqs = session.vault.annotate(_notes_from_jsonl(from_jsonl), many=True)
    elif action is not None and resource is not None:
        seqs = session.vault.annotate([(action, resource, purpose)])
    else:
        raise BadInput("give --action and --resource, or --from-jsonl FILE")
    if json_out:
        emit_json({"count": len(seqs), "first_seq": seqs[0], "last_seq": seqs[-1]})
    elif len(seqs) == 1:
        console.print(f"annotated: ledger entry {seqs[0]}", soft_wrap=True)
    else:
        console.print(f"annotated: {len(seqs)} ledger entries {seqs[0]}..{seqs[-1]}",
                      soft_wrap=True)


# -- verify ----------------------------------------------------------------------------------


def read_vkeys(paths: list[Path], option: str) -> list[str]:
    """Verifier keys from the files given to ``option`` (one or more vkeys a file, one a
    line); an error names the option, not the path typed for it."""
    keys: list[str] = []
    for path in paths:
        try:
            keys += [line.strip() for line in path.read_text("utf-8").splitlines()
                     if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"{option}: cannot read the key file ({unreadable(exc)})") from None
    return keys


def witness_keys(paths: list[Path]) -> list[CosignatureVerifier]:
    return [parse_cosigner_vkey(v) for v in read_vkeys(paths, "--witness-vkey")]


def _read_text(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{option}: cannot read the file ({unreadable(exc)})") from None


def _verify_export(export: Path, checkpoint: Path, vkey: Path, wkeys: list[Path],
                   quorum: int | None, json_out: bool) -> None:
    """An outsider's check: export file + checkpoint + verifier key(s), no vault home."""
    from ledger.verify import verify_log

    keys = [parse_vkey(v) for v in read_vkeys([vkey], "--vkey")]
    if not keys:
        raise BadInput("--vkey: no verifier key in the file")
    witnesses = witness_keys(wkeys)
    need = quorum if quorum is not None else len({k.name for k in witnesses})
    note = _read_text(checkpoint, "--checkpoint")
    saved = open_checkpoint(note, keys)
    cosigned = require_quorum(note, witnesses, need)
    try:
        data = export.read_bytes()
    except OSError as exc:
        raise BadInput(f"--export: cannot read the file ({unreadable(exc)})") from None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    report: dict[str, Any] = {
        "verified": False, "size": None, "root_hash": None,
        # the --checkpoint file is the caller's: its path is not echoed (it may name a person)
        "checkpoint": {"origin": saved.origin, "size": saved.size,
                       "root_hash": saved.root.hex()},
        "witnesses": sorted(cosigned), "quorum": need}
    try:
        verdict = verify_log(lines, prefix_sizes={saved.size})
        report.update(size=verdict.size, root_hash=verdict.root.hex())
        verify_against_checkpoint(verdict, saved)
    except LedgerTampered as exc:
        if json_out:
            emit_json({**report, "first_failing_seq": exc.seq, "error": str(exc)})
        raise
    report["verified"] = True
    if json_out:
        emit_json(report)
        return
    console.print(f"export verified: {verdict.size} entries, root {verdict.root.hex()}; "
                  f"consistent with the checkpoint of size {saved.size} signed by "
                  f"'{saved.origin}'" + (f", cosigned by {', '.join(sorted(cosigned))}"
                                         if cosigned else ""), soft_wrap=True, markup=False)


@app.command()
def verify(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="A signed checkpoint to hold the ledger against "
                     "(default: the newest saved in <home>/checkpoints/)."),
    ] = None,
    export: Annotated[Path | None, typer.Option(
        "--export", help="Verify an exported ledger (JSONL) instead of the vault's: needs "
        "--checkpoint and --vkey, no vault home.")] = None,
    vkey: Annotated[Path | None, typer.Option(
        "--vkey", help="With --export: the log's verifier key(s) file.")] = None,
    witness_vkey: Annotated[list[Path] | None, typer.Option(
        "--witness-vkey", help="A witness's verifier key(s) file (repeatable).")] = None,
    quorum: Annotated[int | None, typer.Option(
        "--quorum", min=0, help="Witness cosignatures the checkpoint needs (default: every "
        "--witness-vkey witness; in a vault home, the configured quorum for --checkpoint).")]
    = None,
    fast: Annotated[bool, typer.Option(
        "--fast", help="Routine audit: skip re-hashing the ciphertext, the per-subject key "
        "and blind-index digests and the stored tree nodes.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Verify every entry (seq, prev chain, leaf hashes, tree root and nodes), no truncation,
    rollback or fork, and that the vault's tables are what the ledger vouches for:
    principals, policy, budgets, keys, batches, erasures and every batch's ciphertext."""
    if export is not None:
        if checkpoint is None or vkey is None:
            raise BadInput("--export needs --checkpoint FILE and --vkey FILE")
        _verify_export(export, checkpoint, vkey, witness_vkey or [], quorum, json_out)
        return
    if vkey is not None:
        raise BadInput("--vkey is for --export; a vault verifies with its own keys")
    from vault.errors import StateMismatch, VaultMismatch
    from vault.service import VerifyReport

    session = open_session(ctx)
    found = VerifyReport(mode="fast" if fast else "full")
    try:
        session.vault.verify(found, checkpoint=checkpoint,
                             witness_keys=witness_keys(witness_vkey or []), quorum=quorum)
    except LedgerTampered as exc:
        if json_out:
            emit_json({**found.to_json(), "first_failing_seq": exc.seq, "error": str(exc)})
        raise
    except StateMismatch as exc:
        if json_out:
            emit_json({**found.to_json(), "vault_table": exc.table, "vault_row": exc.row,
                       "vouched_by_seq": exc.seq, "error": str(exc)})
        raise
    except VaultMismatch as exc:
        if json_out:
            emit_json({**found.to_json(), "vault_table": "vault_batches",
                       "vault_row": exc.batch, "vault_batch": exc.batch, "error": str(exc)})
        raise
    report: dict[str, Any] = found.to_json()
    state, folded = found.state, found.entries_folded
    saved_size, path = found.saved_size, (found.checkpoint or {}).get("file")
    report["vault"] = {"batches": state.batches, "records": state.records}
    report["state"] = {**state.to_json(), "entries_folded": folded,
                       "tree_nodes_checked": found.nodes_checked}
    report["verified"] = True
    if json_out:
        emit_json(report)
        return
    console.print(f"ledger verified: {found.size} entries, root {found.root_hash}"
                  + ("" if fast else ", every stored tree node re-folded"), soft_wrap=True)
    console.print(f"  vault matches the ledger: {state.principals} principals, {state.budgets} "
                  f"budgets, {state.data_keys} data keys, {state.batches} batches, "
                  f"{state.erased_subjects} erased subjects"
                  + ("" if fast else f", {state.subject_buckets} subject buckets, "
                     f"{state.records} records re-hashed"), soft_wrap=True)
    if saved_size is not None:  # the vault's own saved file, or the --checkpoint file (no path)
        console.print(f"  consistent with the signed checkpoint of size {saved_size} "
                      f"({path or 'the --checkpoint file'})", soft_wrap=True, markup=False)


# -- checkpoint, pubkey: public material, no token and no ledger entry -------------------------


@app.command("checkpoint")
def checkpoint_cmd(json_out: JsonOpt = False) -> None:
    """The newest checkpoint of the current tree (C2SP signed note, with the configured
    witnesses' cosignatures) to stdout; signed and saved in the home when the tree grew.
    Exit 1 if fewer witnesses than the quorum cosigned it."""
    from flows.session import open_public

    published = open_public().checkpoint()
    if json_out:
        emit_json({**published.to_json(), "note": published.note})
    else:
        sys.stdout.write(published.note)
        sys.stdout.flush()
    published.require_quorum()


@app.command()
def pubkey(
    all_keys: Annotated[bool, typer.Option(
        "--all", help="Also the retired log keys (to verify older checkpoints).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """The checkpoint verifier key (C2SP vkey: name+keyid+base64(0x01||ed25519 key))."""
    from flows.session import open_public

    vault = open_public()
    keys = vault.pubkey(include_retired=all_keys)
    if json_out:
        emit_json({"vkey": keys[0], "origin": vault.origin(), "retired": keys[1:]})
    else:
        sys.stdout.write("".join(k + "\n" for k in keys))


@app.command("rotate-key")
def rotate_key(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """New log signing key. The transition checkpoint is signed by the old and the new key;
    the old verifier key stays known (``pubkey --all``), so older checkpoints still verify."""
    old_vkey, new_vkey, transition = open_session(ctx).vault.rotate_log_key()
    if json_out:
        emit_json({"old_vkey": old_vkey, "vkey": new_vkey, "checkpoint": transition.to_json()})
        return
    console.print(f"log key rotated; transition checkpoint of size {transition.saved.size} "
                  "signed by both keys", markup=False, soft_wrap=True)
    sys.stdout.write(new_vkey + "\n")


# -- witnesses the vault asks for cosignatures -----------------------------------------------

witnesses_app = typer.Typer(help="Witnesses that cosign this vault's checkpoints.",
                            no_args_is_help=True)
app.add_typer(witnesses_app, name="witnesses")


@witnesses_app.command("add")
def witnesses_add(
    ctx: typer.Context,
    url: Annotated[str, typer.Option("--url", help="The witness's submission URL prefix.")],
    vkey: Annotated[Path, typer.Option("--vkey", help="File with the witness's vkey(s).")],
    json_out: JsonOpt = False,
) -> None:
    """Add a witness (or new keys of a known one) by URL and cosignature vkey(s)."""
    policy = open_session(ctx).vault.witnesses_add(url, read_vkeys([vkey], "--vkey"))
    if json_out:
        emit_json(policy.to_json())
    else:
        console.print(f"{len(policy.witnesses)} witness(es), quorum {policy.quorum}",
                      markup=False)


@witnesses_app.command("quorum")
def witnesses_quorum(
    ctx: typer.Context,
    count: Annotated[int, typer.Argument(help="Cosignatures every checkpoint needs.")],
    json_out: JsonOpt = False,
) -> None:
    """How many distinct witnesses must cosign each checkpoint."""
    policy = open_session(ctx).vault.witnesses_quorum(count)
    if json_out:
        emit_json(policy.to_json())
    else:
        console.print(f"quorum {count} of {len(policy.witnesses)} witness(es)", markup=False)


@witnesses_app.command("list")
def witnesses_list(json_out: JsonOpt = False) -> None:
    """The configured witnesses and quorum (public configuration)."""
    from flows.session import open_public

    policy = open_public().witnesses()
    if json_out:
        emit_json(policy.to_json())
        return
    for w in policy.witnesses:
        console.print(f"{w.name}  {w.url}  {len(w.keys)} key(s)", markup=False)
    console.print(f"quorum {policy.quorum}", markup=False)


# -- export, prove, consistency -------------------------------------------------------------


@app.command()
def export(ctx: typer.Context) -> None:
    """Every entry as JSONL: line i is entry i's canonical JSON, exactly its leaf bytes."""
    session = open_session(ctx)
    out = sys.stdout.buffer
    for chunk in session.vault.export():
        out.write(b"\n".join(chunk) + b"\n")
    out.flush()


@app.command()
def prove(
    ctx: typer.Context,
    index: Annotated[int, typer.Option("--index", help="Leaf index (entry seq).",
                                       parser=int_arg("--index", minimum=0, maximum=_MAX_SIZE))],
    size: Annotated[int | None, typer.Option(
        "--size", help="Tree size (default: now).",
        parser=int_arg("--size", minimum=1, maximum=_MAX_SIZE))] = None,
    json_out: JsonOpt = False,
) -> None:
    """RFC 9162 inclusion proof of entry INDEX in the tree of SIZE entries."""
    result = open_session(ctx).vault.prove(index, size)
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
    old: Annotated[int, typer.Option("--old", help="Older tree size (> 0).",
                                     parser=int_arg("--old", minimum=1, maximum=_MAX_SIZE))],
    new: Annotated[int | None, typer.Option(
        "--new", help="Newer tree size (default: now).",
        parser=int_arg("--new", minimum=1, maximum=_MAX_SIZE))] = None,
    json_out: JsonOpt = False,
) -> None:
    """RFC 9162 consistency proof from the tree of OLD entries to the tree of NEW."""
    result = open_session(ctx).vault.consistency(old, new)
    if json_out:
        emit_json(result)
        return
    console.print(f"tree {old} -> {result['new_size']}: {result['old_root']} -> "
                  f"{result['new_root']}", soft_wrap=True)
    for h in result["consistency_path"]:
        console.print(f"  {h}", soft_wrap=True)
