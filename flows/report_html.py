"""The compliance report as one self-contained HTML file (no scripts, no external assets)."""

from __future__ import annotations

from datetime import UTC, datetime

from jinja2 import Environment, PackageLoader, select_autoescape

from vault.audit import AuditSummary, AuditVerdict


def render_report(*, origin: str, vkey: str, verdict: AuditVerdict, summary: AuditSummary,
                  checkpoint: str | None, since: str | None) -> str:
    env = Environment(loader=PackageLoader("flows", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    return env.get_template("report.html.j2").render(
        origin=origin, vkey=vkey, verdict=verdict, summary=summary, checkpoint=checkpoint,
        since=since, generated=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
