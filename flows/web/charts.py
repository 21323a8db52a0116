"""Charts as Vega-Lite specs rendered to SVG on the server (``vl-convert-python``).

Vega-Lite is the well-kept declarative grammar; ``vl-convert`` bundles Vega and renders
in-process, with no browser, no network and no font download: the page receives an SVG
(text drawn with the system's generic ``sans-serif``) and needs no chart script at all.
Every spec carries its data inline (``values``), never a URL.

Error bars: each released value +- its accuracy at the stated confidence (OpenDP's
``summarize``); a mean's is propagated from its sum's and count's, as in
``vault.dp.export.write_chart``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MAX_BARS = 40
_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"  # an id: vl-convert bundles it
_FONT = "sans-serif"


def svg(spec: Mapping[str, Any]) -> str:
    """Render a Vega-Lite spec (inline data only) to an SVG document."""
    import vl_convert

    doc = {"$schema": _SCHEMA, "config": {"font": _FONT, "view": {"stroke": None}},
           "background": "white", **spec}
    out: str = vl_convert.vegalite_to_svg(vl_spec=doc)
    return out


def value_text(value: float) -> str:
    """How a released value is printed on the chart and in the table (the same text)."""
    return f"{value:,.1f}"


def error_of(doc: Mapping[str, Any], label: str, row: Mapping[str, Any]) -> float | None:
    """The +- of ``row[label]`` at the release's confidence (None if not stated)."""
    measures = doc.get("accuracy", {}).get("measures", {})
    acc = measures.get(label, {})
    if "accuracy" in acc:
        return float(acc["accuracy"])
    if "from" in acc:  # a mean: noisy sum over noisy count
        num, den = acc["from"]
        a_num = float(measures.get(num, {}).get("accuracy", 0.0))
        a_den = float(measures.get(den, {}).get("accuracy", 0.0))
        value = float(row.get(label) or 0.0)
        count = max(1.0, float(row.get(den) or row.get("count") or 1.0))
        return (a_num + abs(value) * a_den) / count
    return None


def release_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per group and measure: group label, measure, value, +-, low, high, text."""
    by = list(doc.get("by") or [])
    out = []
    for row in doc.get("rows") or []:
        group = " / ".join(str(row.get(c)) for c in by) or "all"
        for label in doc.get("measures_out") or _labels(doc):
            value = row.get(label)
            if value is None:
                continue
            err = error_of(doc, label, row) or 0.0
            v = float(value)
            out.append({"group": group, "measure": label, "value": v, "error": err,
                        "low": v - err, "high": v + err, "text": value_text(v)})
    return out


def _labels(doc: Mapping[str, Any]) -> list[str]:
    labels = []
    for spec in doc.get("measures") or []:
        kind, _, column = str(spec).partition(":")
        labels.append(kind if not column else f"{kind}_{column}")
    return labels


def release_chart(doc: Mapping[str, Any]) -> str:
    """Bars per group with error bars and the value printed: one panel per measure (each
    with its own scale), groups ordered by the first measure, the top ``MAX_BARS``."""
    rows = release_rows(doc)
    if not rows:
        return svg({"title": "nothing released", "mark": "text", "data": {"values": [{}]}})
    measures = list(dict.fromkeys(r["measure"] for r in rows))
    first = sorted((r for r in rows if r["measure"] == measures[0]),
                   key=lambda r: -r["value"])
    order = [r["group"] for r in first][:MAX_BARS]
    more = len(first) > MAX_BARS
    keep = set(order)
    shown = [r for r in rows if r["group"] in keep]
    conf = doc.get("accuracy", {}).get("confidence", 0.95)
    by = ", ".join(doc.get("by", []))
    x = {"field": "group", "type": "nominal", "sort": order, "title": by}
    layer = [
        {"mark": {"type": "bar", "color": "#4c72b0"},
         "encoding": {"x": x, "y": {"field": "value", "type": "quantitative", "title": None}}},
        {"mark": {"type": "rule", "color": "#222"},
         "encoding": {"x": x, "y": {"field": "low", "type": "quantitative"},
                      "y2": {"field": "high"}}},
        {"mark": {"type": "text", "dy": -8, "fontSize": 9, "color": "#222"},
         "encoding": {"x": x, "y": {"field": "high", "type": "quantitative"},
                      "text": {"field": "text"}}},
    ]
    title = {"text": f"{doc.get('dataset')}: {', '.join(measures)} by {by}"
                     + (f" (top {MAX_BARS} by {measures[0]})" if more else ""),
             "subtitle": f"epsilon {doc.get('epsilon')}; error bars: +- accuracy at "
                         f"{100 * float(conf):.0f}% confidence"}
    inner = {"width": max(240, 28 * len(order)), "height": 220, "layer": layer}
    if len(measures) == 1:
        return svg({"title": title, "data": {"values": shown}, **inner})
    return svg({"title": title, "data": {"values": shown},
                "facet": {"row": {"field": "measure", "type": "nominal", "title": None,
                                  "sort": measures}},
                "spec": inner, "resolve": {"scale": {"y": "independent"}}})


def budget_chart(budgets: Sequence[Mapping[str, Any]]) -> str:
    """Epsilon spent and left per (analyst, dataset), stacked."""
    values = []
    for b in budgets:
        name = f"{b.get('analyst')} / {b.get('dataset')}"
        spent = float(b.get("epsilon_spent") or 0)
        total = float(b.get("epsilon_total") or 0)
        values += [{"budget": name, "part": "spent", "epsilon": spent},
                   {"budget": name, "part": "left", "epsilon": max(0.0, total - spent)}]
    return svg({
        "title": "privacy budget (epsilon) per dataset", "data": {"values": values},
        "width": 420, "height": {"step": 22},
        "mark": "bar",
        "encoding": {"y": {"field": "budget", "type": "nominal", "title": None},
                     "x": {"field": "epsilon", "type": "quantitative", "stack": True},
                     "color": {"field": "part", "type": "nominal",
                               "scale": {"domain": ["spent", "left"],
                                         "range": ["#c44e52", "#9bd3a8"]}}},
    })


def segment_charts(doc: Mapping[str, Any]) -> dict[str, str]:
    """Centroids (feature x segment) and segment sizes (profiles)."""
    features = list(doc.get("features") or [])
    segs = list(doc.get("segments") or [])
    cent = [{"segment": f"segment {s['segment']}", "feature": f, "value": float(v)}
            for s in segs for f, v in zip(features, s.get("centroid", []), strict=False)]
    sizes = [{"segment": f"segment {s['segment']}", "size": float(s.get("size") or 0),
              "text": value_text(float(s.get("size") or 0))} for s in segs]
    return {
        "centroids": svg({
            "title": "segment centroids (DP)", "data": {"values": cent},
            "width": {"step": 14}, "height": 220, "mark": "bar",
            "encoding": {"x": {"field": "feature", "type": "nominal", "title": None},
                         "xOffset": {"field": "segment"},
                         "y": {"field": "value", "type": "quantitative"},
                         "color": {"field": "segment", "type": "nominal"}}}),
        "sizes": svg({
            "title": "segment sizes (DP)", "data": {"values": sizes}, "width": 320,
            "height": 200,
            "layer": [{"mark": "bar", "encoding": {
                "x": {"field": "segment", "type": "nominal", "title": None},
                "y": {"field": "size", "type": "quantitative"}}},
                {"mark": {"type": "text", "dy": -6, "fontSize": 9}, "encoding": {
                    "x": {"field": "segment", "type": "nominal"},
                    "y": {"field": "size", "type": "quantitative"},
                    "text": {"field": "text"}}}]}),
    }


def timeline_chart(rows: Sequence[Mapping[str, Any]], by: str) -> str:
    """Ledger entries per day, stacked by principal or action."""
    title = {"actor": "principal", "action": "action"}.get(by, by)
    return svg({
        "title": f"access timeline by {title}", "data": {"values": list(rows)},
        "width": 560, "height": 200, "mark": "bar",
        "encoding": {"x": {"field": "day", "type": "ordinal", "title": None},
                     "y": {"field": "entries", "type": "quantitative", "stack": True},
                     "color": {"field": by, "type": "nominal", "title": title,
                               "legend": {"limit": 240}}}})


def spend_chart(rows: Sequence[Mapping[str, Any]]) -> str:
    """Cumulative epsilon charged by analyst / dataset over time."""
    values = [{"time": r["time"], "series": f"{r['analyst']} / {r['dataset']}",
               "epsilon": r["cumulative"]} for r in rows]
    return svg({
        "title": "budget spend over time (cumulative epsilon)", "data": {"values": values},
        "width": 560, "height": 200,
        "mark": {"type": "line", "point": True, "interpolate": "step-after"},
        "encoding": {"x": {"field": "time", "type": "temporal", "title": None,
                           "axis": {"format": "%Y-%m-%d %H:%M", "labelAngle": -30,
                                    "tickCount": 6}},
                     "y": {"field": "epsilon", "type": "quantitative"},
                     "color": {"field": "series", "type": "nominal",
                               "title": "analyst / dataset"}}})


def actions_chart(counts: Mapping[str, int], title: str) -> str:
    """Horizontal bars of a count per name (audit report)."""
    values = [{"name": k, "entries": int(v)} for k, v in counts.items()]
    return svg({"title": title, "data": {"values": values}, "width": 420,
                "height": {"step": 18}, "mark": "bar",
                "encoding": {"y": {"field": "name", "type": "nominal", "sort": "-x",
                                   "title": None},
                             "x": {"field": "entries", "type": "quantitative"}}})
