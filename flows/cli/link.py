"""``civicvault link build|report`` and ``release --join``: thin shells over ``vault.linkage``
and ``vault.dp.linked``.

Errors propagate to ``flows.cli`` (exit codes live there). Nothing typed by the
caller is echoed: unknown links, datasets and columns are named by their role only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.output import console, emit_json
from flows.purpose import PurposeOpt, checked_purpose
from flows.session import open_session
from vault.errors import BadInput

app = typer.Typer(help="Links between datasets, computed inside the vault (no plaintext "
                  "identifier is compared or stored).", no_args_is_help=True)


@app.command("build")
def build(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The link's name in the policy ([links.NAME]).")],
    purpose: PurposeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON value.")] = False,
) -> None:
    """Build or refresh a link (idempotent): digest new rows of both datasets under the
    link's own key, pair equal digests, ledger the counts and the pairs' hash."""
    why = checked_purpose(purpose)
    session = open_session(ctx)
    rule = session.vault.link_rule(name)
    doc = session.vault.link_build(name, purpose=why).to_json()
    if as_json:
        emit_json(doc)
        return
    console.print(
        f"link '{name}': {doc['pairs']} pairs; {doc['left_linked']} of {doc['left_subjects']} "
        f"'{rule.left}' subjects linked; '{rule.right}': {doc['right_matched']} matched, "
        f"{doc['right_ambiguous']} ambiguous, {doc['right_unmatched']} unmatched; "
        f"{doc['cut']} cut by erasure (pairs hash {doc['pairs_hash'][:16]}...)", markup=False)


@app.command("report")
def report(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The link's name in the policy.")],
    epsilon: Annotated[str, typer.Option("--epsilon", help="Privacy loss charged on both "
                                         "datasets, e.g. 0.2.")],
    by: Annotated[str | None, typer.Option(
        "--by", help="A public segment column of the right dataset (policy keys).")] = None,
    purpose: PurposeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON value.")] = False,
) -> None:
    """Match quality, privately: DP counts of matched, unmatched and ambiguous records of the
    link's right dataset by segment (costs budget on both datasets; never a list)."""
    from flows.release_view import show_released
    from vault.budget import parse_epsilon

    eps = parse_epsilon(epsilon)
    why = checked_purpose(purpose)
    session = open_session(ctx)
    result = session.vault.link_report(name, by.strip() if by else None, eps, purpose=why)
    doc = result.to_json()
    if as_json:
        emit_json(doc)
        return
    console.print(f"match report of link '{name}' at epsilon {epsilon} "
                  f"(ledger seq {doc.get('ledger_seq')})", markup=False)
    show_released(doc)


def parse_where(values: list[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``COL=V1|V2``: keep joined rows whose COL is one of the values (never echoed)."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for text in values:
        col, sep, rest = text.partition("=")
        vals = tuple(v for v in rest.split("|") if v.strip())
        if not sep or not col.strip() or not vals:
            raise BadInput("--where takes COLUMN=VALUE or COLUMN=V1|V2")
        out.append((col.strip(), vals))
    return tuple(out)


def linked_release(ctx: typer.Context, dataset: str, join: str, by: list[str],
                   measures: list[str], epsilon: str, delta: float | None,
                   where: list[str], purpose: str | None, as_json: bool, *,
                   out: Path | None = None, chart: Path | None = None,
                   force: bool = False) -> None:
    """``release --dataset LEFT --join RIGHT``: called by the ``release`` command, which
    has checked ``out`` and ``chart`` (before anything is charged)."""
    from flows.outputs import publish
    from flows.receipts import export_with_receipt
    from flows.release_view import show_released, sig
    from vault.budget import parse_epsilon
    from vault.dp.export import write_chart, write_output
    from vault.dp.linked import LinkedRequest

    request = LinkedRequest(left=dataset, right=join, by=tuple(by), measures=tuple(measures),
                            epsilon=parse_epsilon(epsilon), delta=delta,
                            where=parse_where(where))
    why = checked_purpose(purpose)
    session = open_session(ctx)
    result = session.vault.release_linked(request, purpose=why)
    if out is not None:
        publish(out, lambda p: write_output(result, p), force=force)
    if chart is not None:
        publish(chart, lambda p: write_chart(result, p), force=force)
    doc = result.to_json()
    if out is not None:  # the export is ledgered; its receipt goes beside the file
        doc["receipt"] = export_with_receipt(session.vault, dataset, result.ledger_seq, out)[0]
    if as_json:
        emit_json(doc)
        return
    unit = doc["accuracy"]["privacy_unit"]
    console.print(f"released {len(doc['rows'])} groups of '{dataset}' joined with '{join}' at "
                  f"epsilon {epsilon}, charged on both (ledger seq {doc.get('ledger_seq')}); "
                  f"at most {unit['rows_per_person']} linked row(s) per person", markup=False)
    for label, acc in doc["accuracy"]["measures"].items():
        what = sig(acc["accuracy"]) if "accuracy" in acc else acc.get("derived")
        console.print(f"  {label}: +-{what} (95%)", markup=False)
    show_released(doc)
    if out is not None:
        # the paths are the caller's typing (a file name may name a person): not echoed
        console.print("wrote the --out file, and its receipt beside it (the same name + "
                      ".tlog-proof)", markup=False)
    if chart is not None:
        console.print("drew the --chart file", markup=False)


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="link")
