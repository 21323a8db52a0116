"""How ``release`` and ``segment`` show their results, and the checks made before any
budget is touched (an unknown column is a typo, exit 2, not a policy refusal).

Numbers are printed with three significant digits and never in exponent form
(``±600``, ``1,920``, ``0.0123``); the released values themselves keep their
precision in ``--json`` and ``--out``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table

from vault.errors import BadInput

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

BAR_WIDTH = 40


def sig(value: Any, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, thousands separated, no exponent."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    v = float(value)
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    magnitude = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - magnitude)
    rounded = round(v, decimals) if decimals else round(v, digits - 1 - magnitude)
    text = f"{rounded:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def dataset_columns(db: Engine | Connection, dataset: str) -> list[str] | None:
    """The column names stored for ``dataset`` (headers, never values); None if unknown.
    Give the open transaction's connection when there is one (SQLite has one writer)."""
    from sqlalchemy import Connection, select

    from vault.store import T_DATASET, ColumnLayout

    query = select(T_DATASET.c.columns_json).where(T_DATASET.c.name == dataset)
    if isinstance(db, Connection):
        raw = db.execute(query).scalar()
    else:
        with db.connect() as conn:
            conn.execution_options(readonly=True)
            raw = conn.execute(query).scalar()
    if raw is None:
        return None
    return [c.name for c in ColumnLayout.from_json(str(raw)).columns]


def check_columns(known: Sequence[str] | None, rules: Mapping[str, Any], by: Iterable[str],
                  measured: Iterable[str]) -> None:
    """BadInput (before any budget is charged) if a requested column is not in the dataset;
    the message lists the columns the policy lets this request use, never the typed name."""
    if known is None:  # an unknown dataset is reported (and ledgered) by the release itself
        return
    names = set(known)
    if any(c not in names for c in by):
        allowed = sorted(c for c, r in rules.items() if getattr(r, "groupable", False)
                         and c in names)
        raise BadInput(f"--by names a column the dataset does not have; group-by columns: "
                       f"{', '.join(allowed) or 'none'}")
    if any(c not in names for c in measured):
        allowed = sorted(c for c, r in rules.items() if c in names
                         and getattr(r, "lower", None) is not None
                         and getattr(r, "upper", None) is not None)
        raise BadInput(f"--measure names a column the dataset does not have; sum/mean "
                       f"columns: {', '.join(allowed) or 'none'}")


def show_released(doc: Mapping[str, Any], *, plot: bool = False) -> None:
    """Print a DP release's noisy table (and bar chart): the one place the CLI prints rows.

    Only a released document reaches the terminal: it must carry its accuracy metadata
    (what OpenDP released, noise included); anything else is refused, so a stored row
    can never be printed through here.
    """
    from flows.output import console

    if not isinstance(doc.get("accuracy"), Mapping) or "epsilon" not in doc:
        raise TypeError("show_released takes a DP release document only")
    console.print(rows_table(doc))
    if plot:
        for line in bar_chart(doc):
            console.print(line, markup=False, highlight=False)


def rows_table(doc: Mapping[str, Any]) -> Table:
    """The released rows as a table: group keys, then each measure with its ±."""
    by: list[str] = list(doc.get("by") or [])
    measures: Mapping[str, Any] = (doc.get("accuracy") or {}).get("measures", {})
    rows: list[Mapping[str, Any]] = doc.get("rows") or []
    labels = [k for k in (rows[0].keys() if rows else measures.keys()) if k not in by]
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for col in by:
        table.add_column(col)
    for label in labels:
        acc = measures.get(label, {})
        plus = acc.get("accuracy") if isinstance(acc, Mapping) else None
        head = f"{label} (±{sig(plus)})" if isinstance(plus, int | float) else label
        table.add_column(head, justify="right")
    for row in rows:
        table.add_row(*[str(row.get(c, "")) for c in by], *[sig(row.get(m)) for m in labels])
    return table


def bar_chart(doc: Mapping[str, Any], width: int = BAR_WIDTH) -> list[str]:
    """A text bar chart of the first measure per group; ``┄`` marks its ± past the bar's end."""
    by: list[str] = list(doc.get("by") or [])
    rows: list[Mapping[str, Any]] = doc.get("rows") or []
    if not rows:
        return []
    label = next(k for k in rows[0] if k not in by)
    acc = (doc.get("accuracy") or {}).get("measures", {}).get(label, {})
    plus = acc.get("accuracy") if isinstance(acc, Mapping) else None
    plus = float(plus) if isinstance(plus, int | float) else 0.0
    values = [float(r.get(label) or 0) for r in rows]
    top = max([abs(v) for v in values] + [1e-12])
    names = [" x ".join(str(r.get(c, "")) for c in by) or "all" for r in rows]
    pad = max(len(n) for n in names)
    lines = [f"{label} by {' x '.join(by) or 'all'} (±{sig(plus)} at 95%)"]
    for name, v, row in zip(names, values, rows, strict=True):
        n = round(width * max(v, 0.0) / top)
        err = min(width, round(width * plus / top))
        lines.append(f"{name:<{pad}} {'█' * n}{'┄' * err} {sig(row.get(label))}")
    return lines


def means_at_bound(doc: Mapping[str, Any], bounds: Mapping[str, tuple[float, float]]
                   ) -> list[tuple[str, int, float]]:
    """(measure, groups, bound) for mean measures whose released value sits at a policy
    bound in some groups: those groups are too small for a meaningful mean."""
    rows: list[Mapping[str, Any]] = doc.get("rows") or []
    out = []
    for spec in doc.get("measures") or []:
        kind, _, column = str(spec).partition(":")
        if kind != "mean" or column not in bounds:
            continue
        label = f"mean_{column}"
        lo, hi = bounds[column]
        for edge in (lo, hi):
            n = sum(1 for r in rows if isinstance(r.get(label), int | float)
                    and math.isclose(float(r[label]), edge, rel_tol=1e-9, abs_tol=1e-9))
            if n:
                out.append((label, n, edge))
    return out
