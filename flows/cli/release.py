"""``civicvault release``, ``budget set|show`` and ``segment``: thin shells over ``vault.dp``.

Errors propagate to ``flows.cli`` (exit codes live there): a bad request is exit 2,
a policy or budget refusal exit 1, each already on the ledger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from flows.output import console, emit_json, err_console
from flows.outputs import check_output, publish
from flows.purpose import PurposeOpt, checked_purpose
from flows.release_view import (
    check_columns,
    means_at_bound,
    show_released,
    sig,
)
from flows.session import Session, open_session
from policies.validate import int_arg, parse_float, parse_name
from vault.errors import BadInput

budget_app = typer.Typer(help="Privacy budgets per analyst and dataset.", no_args_is_help=True)

ForceOpt = Annotated[bool, typer.Option(
    "--force", help="Overwrite existing --out/--chart files (never allowed inside the vault "
    "home).")]


def _split(values: list[str]) -> list[str]:
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


def _delta(text: str | None) -> float | None:
    if text is None:
        return None
    return parse_float(text, what="delta", above=0, maximum=1)


def _release_flow(session: Any, ctx: typer.Context, dataset: str, by: list[str],
                  measures: list[str], epsilon: str, out: Path | None,
                  force: bool) -> dict[str, Any]:
    """The Prefect ``release`` flow; the token travels as a 0600 file path, never a
    parameter, and ``out`` as a reference (Prefect stores and shows parameters)."""
    from flows.ephemeral import prefect_api
    from flows.flow_runtime import path_ref_for, token_file_for

    with prefect_api(), \
            token_file_for(session.home, (ctx.find_root().obj or {}).get("token")) as token_file, \
            path_ref_for(session.home, out) as out_ref:
        from flows.release import release as release_flow

        document: dict[str, Any] = release_flow(
            dataset=dataset, by=by, measures=measures, epsilon=epsilon,
            home=str(session.home.root), token_file=token_file, out=out_ref, force=force)
    return document


def _receipt(session: Session, dataset: str, seq: int | None, out: Path | None) -> str | None:
    """The release entry's receipt; with ``out``, also ``out.tlog-proof`` for its exact bytes."""
    from flows.receipts import export_with_receipt, receipts

    if out is not None:
        return export_with_receipt(session.vault, dataset, seq, out)[0]
    return receipts(session.vault, [seq])[0] if seq is not None else None


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
    plot: Annotated[
        bool, typer.Option("--plot", help="Also draw a bar chart of the first measure here.")
    ] = False,
    purpose: PurposeOpt = None,
    preview: Annotated[
        bool, typer.Option("--preview", help="Accuracy only: no data read, no budget spent.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON value.")] = False,
    force: ForceOpt = False,
    prefect: Annotated[bool | None, typer.Option(
        "--prefect/--no-prefect", help="Run as the Prefect 'release' flow (default: when "
        "PREFECT_API_URL is set).")] = None,
    join: Annotated[str | None, typer.Option(
        "--join", help="A dataset linked to --dataset in the policy ([links]): join them "
        "inside the vault; --by/--measure columns from either side (DATASET.COL where both "
        "have it); measures count (linked rows), people (distinct persons), turnout (share "
        "of --dataset's people with a linked row), sum:COL, mean:COL; the person of "
        "--dataset is the privacy unit, charged on both datasets.")] = None,
    where: Annotated[list[str] | None, typer.Option(
        "--where", help="With --join: keep joined rows whose COL (of the joined dataset) is "
        "one of V1|V2 (e.g. election_desc='11/06/2018 GENERAL'); repeatable.")] = None,
) -> None:
    """Release differentially private aggregates by segment, charged to your budget."""
    if join is None and where:
        raise BadInput("--where filters the joined dataset: give --join")
    if join is not None and (plot or preview or zcdp):
        raise BadInput("--join releases take --json, --out and --chart (no --plot/--preview/"
                       "--zcdp yet)")
    if join is not None and prefect:
        raise BadInput("--join releases run in this process (no Prefect flow for them yet): "
                       "drop --prefect")
    from vault.budget import parse_epsilon
    from vault.dp import ReleaseRequest
    from vault.dp.export import CHART_FORMATS, OUT_FORMATS, write_chart, write_output

    # before anything is charged: a result that cannot be saved must cost nothing
    if out is not None:
        out = check_output(out, option="--out", force=force, suffixes=OUT_FORMATS)
    if chart is not None:
        chart = check_output(chart, option="--chart", force=force, suffixes=CHART_FORMATS)
    if out is not None and out == chart:
        raise BadInput("--out and --chart name the same file")
    if join is not None:
        from flows.cli.link import linked_release

        linked_release(ctx, dataset, join, _split(by), measure, epsilon, _delta(delta),
                       where or [], purpose, as_json, out=out, chart=chart, force=force)
        return
    request = ReleaseRequest.build(
        dataset, _split(by), measure, parse_epsilon(epsilon), delta=_delta(delta), zcdp=zcdp
    )
    why = checked_purpose(purpose)
    session = open_session(ctx)
    policy_rules = session.vault.column_rules(dataset)
    check_columns(session.vault.dataset_columns(dataset), policy_rules, request.by,
                  [m.column for m in request.measures if m.column is not None])
    from flows.ingest_runner import prefect_configured

    if not preview and (prefect if prefect is not None else prefect_configured()):
        if chart is not None or delta is not None or zcdp:
            raise BadInput("--prefect releases take --out/--json; drop --chart/--delta/--zcdp "
                           "or use --no-prefect")
        if out is not None and out.suffix.lower() != ".json":
            raise BadInput("--prefect releases write --out as FILE.json")
        doc_flow = _release_flow(session, ctx, dataset, _split(by), measure, epsilon, out, force)
        seq = doc_flow.get("ledger_seq")
        doc_flow["receipt"] = _receipt(session, dataset, seq if isinstance(seq, int) else None,
                                       out)
        if as_json:
            emit_json(doc_flow)
        else:
            console.print(f"released {len(doc_flow['rows'])} groups of '{dataset}' at epsilon "
                          f"{epsilon} (Prefect flow 'release')", markup=False)
            show_released(doc_flow)
        return
    if preview:
        accuracy = session.vault.preview(request)
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
                what = sig(acc["accuracy"]) if "accuracy" in acc else acc.get("derived")
                console.print(f"{label}: +-{what} (95% confidence)", markup=False)
        return
    result = session.vault.release(request, purpose=why)
    if out is not None:
        publish(out, lambda p: write_output(result, p), force=force)
    if chart is not None:
        publish(chart, lambda p: write_chart(result, p), force=force)
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
        what = sig(acc["accuracy"]) if "accuracy" in acc else acc.get("derived")
        console.print(f"  {label}: +-{what} (95%)", markup=False)
    show_released(doc, plot=plot)
    bounds = {c: (float(r.lower), float(r.upper)) for c, r in policy_rules.items()
              if getattr(r, "lower", None) is not None and getattr(r, "upper", None) is not None}
    for label, groups, edge in means_at_bound(doc, bounds):
        err_console.print(f"warning: {label} sits at the policy bound ({sig(edge)}) in {groups} "
                          "group(s): too few people there for a meaningful mean at this "
                          "epsilon (merge groups or spend more epsilon)", markup=False)
    if out is not None:
        # the paths are the caller's typing (a file name may name a person): not echoed
        console.print("wrote the --out file, and its receipt beside it (the same name + "
                      ".tlog-proof)", markup=False)


def segment(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset to segment.")],
    features: Annotated[
        list[str], typer.Option("--features", help="Bounded numeric column(s), comma separated.")
    ],
    k: Annotated[int, typer.Option("--k", help="Number of segments.",
                                   parser=int_arg("--k", minimum=1, maximum=1_000))],
    epsilon: Annotated[str, typer.Option("--epsilon", help="Privacy loss charged.")],
    iterations: Annotated[
        int, typer.Option("--iterations", help="k-means rounds sharing epsilon.",
                          parser=int_arg("--iterations", minimum=1, maximum=1_000))
    ] = 5,
    chart: Annotated[
        Path | None, typer.Option("--chart", help="Draw segment sizes to FILE.png|.svg.")
    ] = None,
    purpose: PurposeOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the segments to FILE.csv, FILE.parquet "
                                  "or FILE.json.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON value.")] = False,
    force: ForceOpt = False,
    receipt_out: Annotated[Path | None, typer.Option(
        "--receipt", help="Write the release's receipt (C2SP tlog-proof) to FILE.")] = None,
) -> None:
    """DP k-means segments over bounded numeric features (noisy sizes and centroids)."""
    from vault.budget import parse_epsilon
    from vault.dp import SegmentRequest
    from vault.dp.export import CHART_FORMATS, OUT_FORMATS, write_chart, write_output

    if out is not None:
        out = check_output(out, option="--out", force=force, suffixes=OUT_FORMATS)
    if chart is not None:
        chart = check_output(chart, option="--chart", force=force, suffixes=CHART_FORMATS)
    if receipt_out is not None:
        receipt_out = check_output(receipt_out, option="--receipt", force=force)
    if out is not None and out == chart:
        raise BadInput("--out and --chart name the same file")
    request = SegmentRequest(
        dataset, tuple(_split(features)), k, parse_epsilon(epsilon), iterations=iterations
    )
    why = checked_purpose(purpose)
    session = open_session(ctx)
    check_columns(session.vault.dataset_columns(dataset), session.vault.column_rules(dataset),
                  [], request.features)
    result = session.vault.segment(request, purpose=why)
    if out is not None:
        publish(out, lambda p: write_output(result, p), force=force)
    if chart is not None:
        publish(chart, lambda p: write_chart(result, p), force=force)
    doc = {**result.to_json(), "receipt": _receipt(session, dataset, result.ledger_seq, None)}
    text = doc["receipt"]
    if receipt_out is not None and isinstance(text, str):
        publish(receipt_out, lambda p: p.write_text(text, encoding="utf-8"), force=force)
    if as_json:
        emit_json(doc)
        return
    for s in doc["segments"]:
        centroid = ", ".join(sig(c) for c in s["centroid"])
        console.print(
            f"segment {s['segment']}: size ~{s['size']}  centroid ({centroid})", markup=False
        )


@budget_app.command("set")
def budget_set(
    ctx: typer.Context,
    analyst: Annotated[str, typer.Option("--analyst", help="Analyst principal name.")],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name.")],
    epsilon: Annotated[str, typer.Option("--epsilon", help="Total epsilon for the analyst.")],
    delta: Annotated[
        str | None,
        typer.Option("--delta", help="Total delta for the analyst (default: kept, or the "
                     "policy's per_analyst_delta for a new account)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON value.")] = False,
) -> None:
    """Set an analyst's total privacy budget on a dataset (spending so far is kept)."""
    from vault.budget import parse_delta, parse_epsilon

    total = parse_epsilon(epsilon)
    delta_total = parse_delta(delta) if delta is not None else None
    b = open_session(ctx).vault.budget_set(analyst, dataset, total, delta=delta_total)
    if as_json:
        emit_json({"budgets": [b.to_json()]})
    else:
        console.print(
            f"budget of '{analyst}' on '{dataset}': epsilon {epsilon} "
            f"({float(b.epsilon_spent):g} spent), delta {float(b.delta_total):g} "
            f"({float(b.delta_spent):g} spent)",
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
    if analyst is not None:
        parse_name(analyst, "principal", what="analyst name")
    rows = open_session(ctx).vault.budget_show(analyst)
    if as_json:
        emit_json({"budgets": [b.to_json() for b in rows]})
        return
    if not rows:
        console.print("no budgets set", markup=False)
    for b in rows:
        console.print(
            f"{b.analyst}  {b.dataset}  total {float(b.epsilon_total):g}  "
            f"spent {float(b.epsilon_spent):g}  left {float(b.epsilon_remaining):g}  "
            f"delta left {float(b.delta_remaining):g} of {float(b.delta_total):g}",
            markup=False,
        )


def register(app: typer.Typer) -> None:
    """Add ``release``, ``segment`` and ``budget`` to the main app."""
    app.command("release")(release)
    app.command("segment")(segment)
    app.add_typer(budget_app, name="budget")
