"""``civicvault principals ...`` and ``civicvault policy ...``: who may act, and the rules.

Every command here except ``policy check`` calls one method of the vault service
(``vault.service.Vault``), which asks the policy and leaves its decision on the
ledger. Tokens are printed once, by ``principals add``, and never again.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.output import console, emit_json, err_console
from flows.session import open_session
from ledger.errors import unreadable
from policies.load import parse_policy_bytes
from policies.model import ACTIONS, EVERYONE, Policy
from vault.errors import BadInput

principals_app = typer.Typer(help="Principals: who may act, holding which role.",
                             no_args_is_help=True)
policy_app = typer.Typer(help="The access, PII, segment and budget policy.",
                         no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON value.")]
# no dir_okay=False: Click's refusal would echo the path; a folder is "cannot read the file"
FileArg = Annotated[Path, typer.Argument(help="A policy file (TOML).")]


# -- principals ------------------------------------------------------------------------------


@principals_app.command("add")
def principals_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Principal name: a-z 0-9 _ . - (max 64).")],
    role: Annotated[str, typer.Option("--role", help="A role of the installed policy.")],
    json_out: JsonOpt = False,
) -> None:
    """Add a principal and print its token once (it is stored only as a hash)."""
    token = open_session(ctx).vault.principals_add(name, role)
    if json_out:
        emit_json({"name": name, "role": role, "token": token})
        return
    # the token alone on stdout (TOKEN=$(civicvault principals add ...)), the note on stderr
    err_console.print(f"principal '{name}' added with role '{role}'; its token (shown only "
                      "now, stored only as a hash):", markup=False)
    sys.stdout.write(token + "\n")
    sys.stdout.flush()


@principals_app.command("list")
def principals_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List principals, their roles and whether they are revoked (never tokens)."""
    principals = open_session(ctx).vault.principals_list()
    if json_out:
        emit_json({"principals": [p.to_json() for p in principals]})
        return
    table = Table("name", "role", "created", "revoked")
    for p in principals:
        table.add_row(p.name, p.role, p.created, p.revoked or "")
    console.print(table)


@principals_app.command("revoke")
def principals_revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The principal to revoke.")],
    json_out: JsonOpt = False,
) -> None:
    """Revoke a principal: its token stops working at once (the name is never reused)."""
    record = open_session(ctx).vault.principals_revoke(name)
    if json_out:
        emit_json(record.to_json())
        return
    console.print(f"principal '{name}' revoked", markup=False)


# -- policy ----------------------------------------------------------------------------------


def _read_policy_file(path: Path) -> tuple[bytes, Policy]:
    """The file's bytes and policy; errors say ``FILE`` (and a line), never the path typed
    for it (a file name may name a person)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"FILE: cannot read the file ({unreadable(exc)})") from None
    return data, parse_policy_bytes(data, "FILE")


def _matrix(policy: Policy) -> Table:
    roles = list(policy.roles)
    table = Table("action", *roles, title=f"policy {policy.sha256[:16]}")
    for action in sorted(ACTIONS):
        cells = []
        for role in roles:
            scopes = {g.scope for g in policy.roles_for(action) if g.role in (role, EVERYONE)}
            cells.append("yes" if "any" in scopes else "own" if scopes else "-")
        table.add_row(action, *cells)
    return table


@policy_app.command("show")
def policy_show(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Show the installed policy: role matrix, segment rules, budgets, reveal purposes."""
    policy = open_session(ctx).vault.policy_show()
    if json_out:
        emit_json(policy.summary())
        return
    console.print(_matrix(policy))
    for name in policy.datasets:
        cols = policy.columns_for(name)
        group = ", ".join(c for c, r in cols.items() if r.groupable)
        bounded = ", ".join(f"{c} [{r.lower}, {r.upper}]" for c, r in cols.items()
                            if r.measurable)
        console.print(f"dataset {name}: group by {group or '-'}; bounds {bounded or '-'}; "
                      f"epsilon per analyst {float(policy.budget_default(name)):g}, "
                      f"cap {float(policy.dataset_cap(name)):g}", markup=False)
    console.print(f"reveal purposes: {', '.join(sorted(policy.reveal_purposes)) or '-'} "
                  f"(at most {policy.reveal.limit} per {policy.reveal.window_seconds} s)",
                  markup=False)


@policy_app.command("check")
def policy_check(file: FileArg, json_out: JsonOpt = False) -> None:
    """Validate a policy file (no token needed); errors name the line, exit 2."""
    _, policy = _read_policy_file(file)
    if json_out:
        emit_json({"ok": True, "sha256": policy.sha256,
                   "roles": list(policy.roles), "datasets": list(policy.datasets)})
        return
    console.print(f"ok: FILE is a valid policy ({len(policy.roles)} roles, "
                  f"{len(policy.datasets)} dataset sections, sha256 {policy.sha256})",
                  markup=False)


@policy_app.command("apply")
def policy_apply(ctx: typer.Context, file: FileArg, json_out: JsonOpt = False) -> None:
    """Install a policy file into the vault home (admin); ledgered with the file's SHA-256."""
    policy, previous = open_session(ctx).vault.policy_apply(file, source="FILE")
    if json_out:
        emit_json({"applied": True, "sha256": policy.sha256, "previous": previous})
        return
    console.print(f"policy {policy.sha256} applied (was {previous or 'none'})", markup=False)


# -- break-glass reveal -----------------------------------------------------------------------


def reveal(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name.")],
    match: Annotated[list[str], typer.Option(
        "--match", help="COL=VALUE on a lookup column; repeat to require several.")],
    purpose: Annotated[str, typer.Option(
        "--purpose", help="One of the policy's reveal purposes (see 'policy show').")],
    json_out: JsonOpt = False,
    receipt_out: Annotated[Path | None, typer.Option(
        "--receipt", help="Write the reveal's receipt (C2SP tlog-proof) to FILE.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the opened records to FILE as JSON (mode 0600): the only place "
        "the values go. The terminal (and --json) shows which subjects and fields were "
        "opened, never the values nor this path (--json: out is true).")] = None,
) -> None:
    """Break glass: open the records of the matching subject(s) (steward; purpose; rate-limited).

    The reveal is ledgered with its purpose and the subject ids, never the values. The
    values go only to a new 0600 file (``--out``); standard output, plain or ``--json``
    (scrollback, screen shares, CI logs, a caller's log capture), never carries them."""
    from flows.outputs import check_output
    from flows.receipts import receipts, write_receipt

    criteria: dict[str, str] = {}
    for item in match:
        col, sep, value = item.partition("=")
        if not sep or not col.strip():
            raise BadInput("--match takes COL=VALUE")
        criteria[col.strip()] = value
    session = open_session(ctx)
    target = None if out is None else check_output(out, option="--out", force=False,
                                                   home=session.home)  # before breaking glass
    done = session.vault.reveal(dataset, criteria, purpose)
    [receipt] = receipts(session.vault, [done.ledger_seq])
    if receipt_out is not None:
        write_receipt(receipt_out, receipt)
    doc = {"dataset": dataset, "purpose": purpose, "ledger_seq": done.ledger_seq,
           "receipt": receipt}
    if target is not None:  # the one place the opened records go
        _write_private(target, {**doc, "subjects": [{"subject": sid, "records": recs}
                                                   for sid, recs in done.subjects]})
    # standard output is not a private place: ids, counts and column names from here on
    if json_out:
        # "out": whether the records went to the --out file; its path is not echoed (below)
        emit_json({**doc, "out": target is not None,
                   "subjects": [o.as_json() for o in done.opened()]})
        return
    n_subjects, n_opened = done.opened_counts()  # two numbers; --json lists them per subject
    if not n_subjects:
        console.print("no live subject matched (the reveal is ledgered)", markup=False)
        return
    # the path is the caller's own typing (it may name a person): not echoed
    where = "written to the --out file (mode 0600)" if target is not None else \
        "not shown here: rerun with --out FILE (written 0600)"
    console.print(f"{n_subjects} subject(s), {n_opened} record(s) opened; contents {where}; "
                  f"ledger entry {done.ledger_seq}", markup=False)


def _write_private(target: Path, doc: dict[str, object]) -> None:
    """The opened records as JSON in a new file only the owner can read (never clobbers)."""
    import json

    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def register(app: typer.Typer) -> None:
    """Add ``principals``, ``policy`` and ``reveal`` to the main app."""
    app.add_typer(principals_app, name="principals")
    app.add_typer(policy_app, name="policy")
    app.command("reveal")(reveal)
