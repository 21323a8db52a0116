"""Write a released result to a file (by extension) and draw it with error bars.

Only released, noisy values are written: the same document whose SHA-256 is the
ledger entry's ``data_hash``.

* ``.json``: the whole document (rows, accuracy, ...), plus ``data_hash``;
* ``.csv``: the rows, and the accuracy metadata in a sidecar ``FILE.csv.meta.json``
  (a CSV has no place for it that every reader would skip);
* ``.parquet``: the rows, with the metadata as JSON in the file's key-value metadata
  under ``civicvault.release``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from vault.dp.release import ReleaseResult
from vault.errors import BadInput

OUT_FORMATS = (".json", ".csv", ".parquet")
CHART_FORMATS = (".png", ".svg")
MAX_BARS = 40


def _published(result: ReleaseResult) -> dict[str, Any]:
    """``to_json()`` without how this process ran it (``resources``: not for a file)."""
    doc = result.to_json()
    doc.pop("resources", None)
    return doc


def _meta(result: ReleaseResult) -> dict[str, Any]:
    doc = _published(result)
    doc.pop("rows", None)
    return doc


def _rows_frame(result: ReleaseResult) -> pl.DataFrame:
    doc = result.document()
    rows = doc.get("rows")
    if rows is None:  # segments
        rows = [
            {
                **{f: c for f, c in zip(doc["features"], s["centroid"], strict=True)},
                "segment": s["segment"],
                "size": s["size"],
            }
            for s in doc["segments"]
        ]
    return pl.DataFrame(rows)


def write_output(result: ReleaseResult, path: Path) -> Path:
    """Write ``result`` to ``path``; the extension picks the format (BadInput otherwise)."""
    suffix = path.suffix.lower()
    if suffix not in OUT_FORMATS:
        raise BadInput(f"--out must end in one of {', '.join(OUT_FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".json":
        path.write_text(json.dumps(_published(result), indent=1) + "\n", encoding="utf-8")
    elif suffix == ".csv":
        _rows_frame(result).write_csv(path)
        sidecar = path.with_name(path.name + ".meta.json")
        sidecar.write_text(json.dumps(_meta(result), indent=1) + "\n", encoding="utf-8")
    else:
        _rows_frame(result).write_parquet(
            path, metadata={"civicvault.release": json.dumps(_meta(result))}
        )
    return path


def write_chart(result: ReleaseResult, path: Path) -> Path:
    """Bar chart of the first measure per group with its 95% error bars (PNG or SVG)."""
    suffix = path.suffix.lower()
    if suffix not in CHART_FORMATS:
        raise BadInput(f"--chart must end in one of {', '.join(CHART_FORMATS)}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = result.document()
    measures = doc["accuracy"]["measures"]
    if result.kind == "segment":
        labels = [f"segment {s['segment']}" for s in doc["segments"]]
        values = [float(s["size"]) for s in doc["segments"]]
        err = float(measures["count"]["accuracy"])
        errors = [err] * len(values)
        title, ylabel = f"{doc['dataset']}: DP segment sizes", "size"
    else:
        label = result.request.measures[0].label
        rows = sorted(doc["rows"], key=lambda r: -float(r[label]))[:MAX_BARS]
        by = list(result.request.by)
        labels = [" / ".join(str(r[c]) for c in by) or "all" for r in rows]
        values = [float(r[label]) for r in rows]
        bar = result.request.measures[0].definition.error_bar  # vault.dp.measures
        errors = [bar(measures, label, r, v) for r, v in zip(rows, values, strict=True)]
        shown = f" (top {MAX_BARS} of {len(doc['rows'])})" if len(doc["rows"]) > MAX_BARS else ""
        title = f"{doc['dataset']}: {label} by {', '.join(by) or 'all'}{shown}"
        ylabel = label
    fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * len(values) + 2.0), 4.5))
    ax.bar(range(len(values)), values, yerr=errors, capsize=2, color="#4c72b0", ecolor="#333333")
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(labels, rotation=75, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.text(
        0.99,
        0.98,
        f"epsilon {doc['epsilon']:g}; error bars: {100 * (1 - 0.05):.0f}% accuracy",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=7,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=suffix.lstrip("."))
    plt.close(fig)
    return path
