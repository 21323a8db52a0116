"""``civicvault receipt verify``: check a receipt offline, with no vault home.

A receipt (C2SP tlog-proof) proves one ledger entry is in a signed, cosigned
checkpoint. What it vouches for:

- ``FILE`` with a ``FILE.tlog-proof`` sidecar (``release --out``): the exact bytes of
  ``FILE`` (and of ``FILE.meta.json`` if the entry lists it) hash to the entry's data_hash;
- ``FILE.tlog-proof`` alone: the entry (and ``FILE`` if it exists beside it);
- a saved ``--json`` result with an embedded ``"receipt"``: the released part of the
  document hashes to the entry's data_hash, and its ``ledger_seq`` is the entry.

Exit 0 verified, 1 any mismatch (a changed byte anywhere), 2 unreadable input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.output import console, emit_json
from ledger.errors import BadInput, VerificationFailed, unreadable

app = typer.Typer(help="Offline receipts for releases, segments, erasures and reveals.",
                  no_args_is_help=True)


def _read(path: Path, what: str) -> bytes:
    """The file's bytes; an error names ``what`` it is (FILE, --receipt...), never its path
    (a file name typed by the caller may name a person)."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInput(f"{what}: cannot read the file ({unreadable(exc)})") from None


def _receipt_and_subject(file: Path, receipt: Path | None) -> tuple[str, Path | None, Any]:
    """(receipt text, file whose bytes it vouches for, or a JSON document with it embedded)."""
    from ledger.receipt import SUFFIX

    if receipt is not None:
        return _read(receipt, "--receipt").decode("utf-8", "replace"), file, None
    if file.name.endswith(SUFFIX):
        subject = file.with_name(file.name[: -len(SUFFIX)])
        return (_read(file, "FILE").decode("utf-8", "replace"),
                subject if subject.exists() else None, None)
    sidecar = file.with_name(file.name + SUFFIX)
    if sidecar.exists():
        return _read(sidecar, f"FILE{SUFFIX}").decode("utf-8", "replace"), file, None
    data = _read(file, "FILE")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("receipt"), str):
        return doc["receipt"], None, doc
    raise BadInput(f"no receipt: FILE has no {SUFFIX} sidecar and no embedded receipt")


@app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="A result file (with its .tlog-proof sidecar), "
                                         "a .tlog-proof, or a --json result.")],
    vkey: Annotated[Path, typer.Option("--vkey", help="The log's verifier key(s) file.")],
    witness_vkey: Annotated[list[Path] | None, typer.Option(
        "--witness-vkey", help="A witness's verifier key(s) file (repeatable).")] = None,
    quorum: Annotated[int | None, typer.Option(
        "--quorum", min=0, help="Witness cosignatures needed (default: every witness "
        "given with --witness-vkey).")] = None,
    receipt: Annotated[Path | None, typer.Option(
        "--receipt", help="The receipt file, if not FILE.tlog-proof.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON value.")] = False,
) -> None:
    """Verify a receipt offline: the entry is in the log's signed, witnessed checkpoint and
    vouches for exactly this file."""
    from flows.cli.ledger import read_vkeys, witness_keys
    from ledger.receipt import check_document, check_file, verify_receipt
    from ledger.signer import parse_vkey

    keys = [parse_vkey(v) for v in read_vkeys([vkey], "--vkey")]
    if not keys:
        raise BadInput("--vkey: no verifier key in the file")
    witnesses = witness_keys(witness_vkey or [])
    need = quorum if quorum is not None else len({k.name for k in witnesses})
    text, subject, doc = _receipt_and_subject(file, receipt)
    try:
        verdict = verify_receipt(text, keys, witness_keys=witnesses, quorum=need)
        if subject is not None:
            meta = subject.with_name(subject.name + ".meta.json")
            what = "FILE" if subject == file else "the result file beside FILE"
            check_file(verdict, _read(subject, what),
                       _read(meta, f"the .meta.json sidecar of {what}") if meta.exists()
                       else None)
        elif doc is not None:
            check_document(verdict, doc)
    except VerificationFailed as exc:
        if json_out:
            emit_json({"verified": False, "error": str(exc)})
        raise
    # "file": whether a file's bytes were checked; its path (the caller's typing) is not echoed
    report = {**verdict.to_json(), "quorum": need, "file": subject is not None}
    if json_out:
        emit_json(report)
        return
    console.print(f"receipt verified: ledger entry {verdict.index} ({report['action']}) is in "
                  f"the checkpoint of size {verdict.checkpoint.size} of "
                  f"'{verdict.checkpoint.origin}'"
                  + (f", cosigned by {', '.join(report['witnesses'])}"
                     if report["witnesses"] else "")
                  + ("; the file matches its data_hash" if subject is not None else ""),
                  markup=False, soft_wrap=True)
