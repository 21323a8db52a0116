"""``civicvault release``, ``budget set|show`` and ``segment``: thin shells over ``vault.dp``.

Errors propagate to ``flows.cli`` (exit codes live there): a bad request is exit 2,
a policy or budget refusal exit 1, each already on the ledger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from flows.output import console, emit_json
from flows.session import Session, open_session
from vault.errors import BadInput

budget_app = typer.Typer(help="Privacy budgets per analyst and dataset.", no_args_is_help=True)


def _split(values: list[str]) -> list[str]:
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


def _delta(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise BadInput("delta must be a number such as 1e-7") from None


def _release_flow(session: Any, ctx: typer.Context, dataset: str, by: list[str],
                  measures: list[str], epsilon: str, out: Path | None) -> dict[str, Any]:
    """The Prefect ``release`` flow; the token travels as a 0600 file path, never a parameter."""
    from flows.flow_runtime import token_file_for
    from flows.release import release as release_flow

    with token_file_for(session.home, (ctx.find_root().obj or {}).get("token")) as token_file:
        document: dict[str, Any] = release_flow(
            dataset=dataset, by=by, measures=measures, epsilon=epsilon,
            home=str(session.home.root), token_file=token_file,
            out=str(out.absolute()) if out is not None else None)
    return document


def _receipt(session: Session, dataset: str, seq: int | None, out: Path | None) -> str | None:
    """The release entry's receipt; with ``out``, also ``out.tlog-proof`` for its exact bytes."""
    from flows.receipts import export_with_receipt, receipts

    if out is not None:
        return export_with_receipt(session.engine, session.home, session.principal.id, dataset,
                                   seq, out)[0]
    return receipts(session.engine, session.home, [seq])[0] if seq is not None else None


def release(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset to release from.")],
    by: Annotated[list[str], typer.Option("--by", help="Group-by column(s), comma separated.")],
    measure: Annotated[
        list[str],
        typer.Option("--measure", help="count | sum:COL | mean:COL (repeatable)."),
    ],
    epsilon: Annotated[str, typer.Option("--epsilon", help="Privacy loss charged, e.g. 0.5.")],
    delta: Annotated[
        str | None,
        typer.Option("--delta", help="Approximate DP (needed to release keys not in the policy)."),
    ] = None,
    zcdp: Annotated[
        bool, typer.Option("--zcdp", help="Gaussian noise via zCDP (needs --delta).")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write FILE.csv, FILE.parquet or FILE.json.")
    ] = None,
    chart: Annotated[
        Path | None, typer.Option("--chart", help="Draw FILE.png or FILE.svg with error bars.")
    ] = None,
    preview: Annotated[
        bool, typer.Option("--preview", help="Accuracy only: no data read, no budget spent.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON value.")] = False,
    prefect: Annotated[bool | None, typer.Option(
        "--prefect/--no-prefect", help="Run as the Prefect 'release' flow (default: when "
        "PREFECT_API_URL is set).")] = None,
) -> None:
    """Release differentially private aggregates by segment, charged to your budget."""
    from vault.budget import parse_epsilon
    from vault.dp import ReleaseRequest, preview_release, run_release
    from vault.dp.export import CHART_FORMATS, OUT_FORMATS, write_chart, write_output

    if out is not None and out.suffix.lower() not in OUT_FORMATS:
        raise BadInput(f"--out must end in one of {', '.join(OUT_FORMATS)}")
    if chart is not None and chart.suffix.lower() not in CHART_FORMATS:
        raise BadInput(f"--chart must end in one of {', '.join(CHART_FORMATS)}")
    request = ReleaseRequest.build(
        dataset, _split(by), measure, parse_epsilon(epsilon), delta=_delta(delta), zcdp=zcdp
    )
    session = open_session(ctx)
    from flows.ingest_runner import prefect_configured

    if not preview and (prefect if prefect is not None else prefect_configured()):
        if chart is not None or delta is not None or zcdp:
            raise BadInput("--prefect releases take --out/--json; drop --chart/--delta/--zcdp "
                           "or use --no-prefect")
        doc_flow = _release_flow(session, ctx, dataset, _split(by), measure, epsilon, out)
        seq = doc_flow.get("ledger_seq")
        doc_flow["receipt"] = _receipt(session, dataset, seq if isinstance(seq, int) else None,
                                       out)
        if as_json:
            emit_json(doc_flow)
        else:
            console.print(f"released {len(doc_flow['rows'])} groups of '{dataset}' at epsilon "
                          f"{epsilon} (Prefect flow 'release')", markup=False)
        return
    if preview:
        accuracy = preview_release(session.engine, session.home, session.principal, request)
        doc: dict[str, Any] = {
            "dataset": dataset,
            "epsilon": float(request.epsilon),
            "preview": True,
            "accuracy": accuracy.to_json(),
        }
        if as_json:
            emit_json(doc)
        else:
            for label, acc in doc["accuracy"]["measures"].items():
                what = acc.get("accuracy", acc.get("derived"))
                console.print(f"{label}: +-{what} (95% confidence)", markup=False)
        return
    result = run_release(session.engine, session.home, session.principal, request)
    if out is not None:
        write_output(result, out)
    if chart is not None:
        write_chart(result, chart)
    receipt = _receipt(session, dataset, result.ledger_seq, out)
    if as_json:
        emit_json({**result.to_json(), "receipt": receipt})
        return
    doc = result.to_json()
    console.print(
        f"released {len(doc['rows'])} groups of '{dataset}' at epsilon {epsilon} "
        f"(ledger seq {doc.get('ledger_seq')}, data_hash {doc['data_hash'][:16]}...)",
        markup=False,
    )
    budget = doc.get("budget", {})
    if budget:
        console.print(
            f"budget left on '{dataset}': {budget['epsilon_remaining']:g} "
            f"of {budget['epsilon_total']:g}",
            markup=False,
        )
    for label, acc in doc["accuracy"]["measures"].items():
        what = acc.get("accuracy", acc.get("derived"))
        console.print(f"  {label}: +-{what} (95%)", markup=False)
    if out is not None:
        console.print(f"wrote {out} (receipt: {out.name}.tlog-proof)", markup=False)


def segment(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset to segment.")],
    features: Annotated[
        list[str], typer.Option("--features", help="Bounded numeric column(s), comma separated.")
    ],
    k: Annotated[int, typer.Option("--k", help="Number of segments.")],
    epsilon: Annotated[str, typer.Option("--epsilon", help="Privacy loss charged.")],
    iterations: Annotated[
        int, typer.Option("--iterations", help="k-means rounds sharing epsilon.")
    ] = 5,
    chart: Annotated[
        Path | None, typer.Option("--chart", help="Draw segment sizes to FILE.png|.svg.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON value.")] = False,
    receipt_out: Annotated[Path | None, typer.Option(
        "--receipt", help="Write the release's receipt (C2SP tlog-proof) to FILE.")] = None,
) -> None:
    """DP k-means segments over bounded numeric features (noisy sizes and centroids)."""
    from vault.budget import parse_epsilon
    from vault.dp import SegmentRequest, run_segment
    from vault.dp.export import write_chart

    request = SegmentRequest(
        dataset, tuple(_split(features)), k, parse_epsilon(epsilon), iterations=iterations
    )
    session = open_session(ctx)
    result = run_segment(session.engine, session.home, session.principal, request)
    if chart is not None:
        write_chart(result, chart)
    doc = {**result.to_json(), "receipt": _receipt(session, dataset, result.ledger_seq, None)}
    if receipt_out is not None and doc["receipt"] is not None:
        receipt_out.write_text(doc["receipt"], encoding="utf-8")
    if as_json:
        emit_json(doc)
        return
    for s in doc["segments"]:
        centroid = ", ".join(f"{c:.3g}" for c in s["centroid"])
        console.print(
            f"segment {s['segment']}: size ~{s['size']}  centroid ({centroid})", markup=False
        )


@budget_app.command("set")
def budget_set(
    ctx: typer.Context,
    analyst: Annotated[str, typer.Option("--analyst", help="Analyst principal name.")],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name.")],
    epsilon: Annotated[str, typer.Option("--epsilon", help="Total epsilon for the analyst.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON value.")] = False,
) -> None:
    """Set an analyst's total privacy budget on a dataset (spending so far is kept)."""
    from vault.budget import parse_epsilon, set_budget
    from vault.principals import get_principal

    total = parse_epsilon(epsilon)
    session = open_session(ctx)
    with session.access("budget.set", f"budget:{analyst}/{dataset}") as conn:
        if get_principal(conn, analyst) is None:
            raise BadInput(f"unknown analyst '{analyst}' (add it with 'civicvault principals add')")
        b = set_budget(conn, analyst, dataset, total, actor=session.principal.id)
    if as_json:
        emit_json({"budgets": [b.to_json()]})
    else:
        console.print(
            f"budget of '{analyst}' on '{dataset}': epsilon {epsilon} "
            f"({float(b.epsilon_spent):g} spent)",
            markup=False,
        )


@budget_app.command("show")
def budget_show(
    ctx: typer.Context,
    analyst: Annotated[
        str | None, typer.Option("--analyst", help="Only this analyst's budgets.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON value.")] = False,
) -> None:
    """Show privacy budgets: total, spent and remaining epsilon per analyst and dataset."""
    from vault.budget import show_budgets

    session = open_session(ctx)
    if analyst is None and not _may_see_all(session):
        analyst = session.principal.id  # e.g. an analyst: their own budgets
    with session.access("budget.show", f"budget:{analyst}" if analyst else "budgets") as conn:
        rows = show_budgets(conn, analyst)
    if as_json:
        emit_json({"budgets": [b.to_json() for b in rows]})
        return
    if not rows:
        console.print("no budgets set", markup=False)
    for b in rows:
        console.print(
            f"{b.analyst}  {b.dataset}  total {float(b.epsilon_total):g}  "
            f"spent {float(b.epsilon_spent):g}  left {float(b.epsilon_remaining):g}",
            markup=False,
        )


def _may_see_all(session: Session) -> bool:
    """Whether the policy lets this principal see every analyst's budgets (pure check)."""
    from vault.access import installed_policy

    p = session.principal
    return (
        installed_policy(session.home).decide(p.role, "budget.show", "budgets", actor=p.id).allowed
    )


def register(app: typer.Typer) -> None:
    """Add ``release``, ``segment`` and ``budget`` to the main app."""
    app.command("release")(release)
    app.command("segment")(segment)
    app.add_typer(budget_app, name="budget")
