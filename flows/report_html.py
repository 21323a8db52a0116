"""The compliance report as one self-contained HTML file (no scripts, no external assets).

Charts are the workbench's (``flows.web.charts``: Vega-Lite rendered to SVG in-process),
inlined as SVG markup. The saved checkpoint and this run's verification are shown as two
named things, each with its size and its root in hex and base64, so a reader never takes
one for the other.
"""

from __future__ import annotations

import base64
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from vault.audit import AuditSummary, AuditVerdict


def _checkpoint(note: str | None) -> dict[str, Any] | None:
    """Origin, size and root (hex and base64) of a checkpoint note's body."""
    if not note:
        return None
    lines = note.splitlines()
    try:
        root = base64.b64decode(lines[2], validate=True)
        return {"origin": lines[0], "size": int(lines[1]), "root_hex": root.hex(),
                "root_base64": lines[2]}
    except (IndexError, ValueError):
        return None


def _svg(text: str) -> Markup:
    """An SVG document made by Vega (``vl-convert``): data reaches it only as XML-escaped
    text of marks, and it holds no script; inlined as markup, not escaped again."""
    if not text.startswith("<svg") or "<script" in text:
        raise ValueError("not a chart SVG")
    return Markup(text)  # noqa: S704 (see above: generated, escaped, checked)


def _charts(summary: AuditSummary) -> dict[str, Markup]:
    from flows.web import charts

    out: dict[str, Markup] = {}
    if summary.by_action:
        out["by_action"] = _svg(charts.actions_chart(summary.by_action, "entries by action"))
    if summary.by_actor:
        out["by_actor"] = _svg(charts.actions_chart(summary.by_actor, "entries by principal"))
    days: Counter[tuple[str, str]] = Counter()
    for r in summary.denials:
        days[(str(r.get("time", ""))[:10], "denied")] += 1
    for r in summary.releases:
        days[(str(r.get("time", ""))[:10], "release")] += 1
    if days:
        out["timeline"] = _svg(charts.timeline_chart(
            [{"day": d, "action": a, "entries": n} for (d, a), n in sorted(days.items())],
            "action"))
    spend: dict[str, float] = {}
    rows = []
    for r in summary.releases:
        eps = r.get("epsilon")
        try:
            value = float(eps) if eps is not None else None
        except (TypeError, ValueError):
            value = None
        if value is None:
            continue
        key = f"{r.get('actor')}\t{r.get('resource')}"
        spend[key] = spend.get(key, 0.0) + value
        rows.append({"time": r.get("time"), "analyst": r.get("actor"),
                     "dataset": str(r.get("resource", "")).removeprefix("dataset/"),
                     "cumulative": spend[key]})
    if rows:
        out["spend"] = _svg(charts.spend_chart(rows))
    return out


def render_report(*, origin: str, vkey: str, verdict: AuditVerdict, summary: AuditSummary,
                  checkpoint: str | None, since: str | None) -> str:
    env = Environment(loader=PackageLoader("flows", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    root_b64 = (base64.b64encode(bytes.fromhex(verdict.root)).decode()
                if verdict.root else "")
    return env.get_template("report.html.j2").render(
        origin=origin, vkey=vkey, verdict=verdict, summary=summary, checkpoint=checkpoint,
        saved=_checkpoint(checkpoint), root_b64=root_b64, charts=_charts(summary),
        since=since, generated=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
