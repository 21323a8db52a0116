"""``civicvault witness ...``: run a C2SP tlog-witness for one or more logs.

The witness lives in its own folder (``--home``, default ``CIVICVAULT_WITNESS_HOME`` or
``./.civicvault-witness``): its cosigning key(s), the logs it trusts and, per log,
the last checkpoint it cosigned. It needs no vault: any C2SP log can use it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from flows.output import console, emit_json
from ledger.errors import BadInput

app = typer.Typer(help="A C2SP tlog-witness that cosigns other logs' checkpoints.",
                  no_args_is_help=True)

HOME_ENV = "CIVICVAULT_WITNESS_HOME"
HomeOpt = Annotated[Path | None, typer.Option(
    "--home", help=f"Witness folder (default ${HOME_ENV} or ./.civicvault-witness).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON value.")]


def _home(home: Path | None) -> Path:
    return (home or Path(os.environ.get(HOME_ENV) or "./.civicvault-witness")).absolute()


@app.command("init")
def init(
    name: Annotated[str, typer.Option("--name", help="Witness name, e.g. witness.example/w1.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a witness: a new Ed25519 cosigning key; prints its vkey."""
    from ledger.witness import init_witness_home

    cosigner = init_witness_home(_home(home), name)
    if json_out:
        # not the witness home's path: the caller typed it (--home), and it may name a person
        emit_json({"name": name, "vkey": cosigner.vkey()})
    else:
        sys.stdout.write(cosigner.vkey() + "\n")


@app.command("trust")
def trust(
    vkey: Annotated[Path, typer.Option("--vkey", help="File with the log's verifier key(s).")],
    origin: Annotated[str | None, typer.Option(
        "--origin", help="The log's checkpoint origin (default: the key name).")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Trust a log: cosign its checkpoints when signed by one of these keys."""
    from flows.cli.ledger import read_vkeys
    from ledger.witness import trust_log

    logs = trust_log(_home(home), read_vkeys([vkey], "--vkey"), origin)
    if json_out:
        emit_json({"logs": logs})
    else:
        console.print(f"trusting {len(logs)} log(s)", markup=False)


@app.command("pubkey")
def pubkey(home: HomeOpt = None) -> None:
    """The witness's cosignature verifier key(s) (vkey type 0x04), one a line."""
    from ledger.witness import witness_cosigners

    sys.stdout.write("".join(c.vkey() + "\n" for c in witness_cosigners(_home(home))))


@app.command("rotate-key")
def rotate_key(home: HomeOpt = None) -> None:
    """Add a new cosigning key; both keys cosign until the old one is retired."""
    from ledger.witness import rotate_witness_key

    sys.stdout.write(rotate_witness_key(_home(home)).vkey() + "\n")


@app.command("retire-key")
def retire_key(key_id: Annotated[str, typer.Argument(help="Hex key ID to stop using.")],
               home: HomeOpt = None) -> None:
    """Stop cosigning with one key (its vkey still verifies what it cosigned)."""
    from ledger.witness import retire_witness_key

    retired = retire_witness_key(_home(home), key_id)  # checked: 8 hex digits
    console.print(f"retired witness key {retired}", markup=False)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free port).")] = 7380,
    home: HomeOpt = None,
) -> None:
    """Serve POST /add-checkpoint and GET /<origin hash>/checkpoint until interrupted."""
    from ledger.witness import load_witness
    from ledger.witness_http import WitnessServer

    if not 0 <= port < 65536:
        raise BadInput("--port must be 0-65535")
    witness = load_witness(_home(home))
    if not witness.logs:
        raise BadInput("the witness trusts no log yet (run 'civicvault witness trust')")
    try:
        server = WitnessServer(witness, host, port)
    except OSError as exc:
        raise BadInput(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    console.print(f"civicvault witness on {server.url}", markup=False, highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
