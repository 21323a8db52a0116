"""``civicvault demo``: the main job end to end on the embedded default.

Fresh vault home -> ``init`` -> a seeded synthetic voter file (``flows.demo_data``)
-> the ``ingest`` flow -> an analyst with a budget -> two DP releases (``release``
flow) -> the ``audit`` flow -> a short summary (rows, columns protected, releases
with accuracy, ledger size and root, verdict, timings).

Prefect runs against a temporary server this run owns (``flows.ephemeral``), its
state in ``<home>/prefect``: it boots while the data is generated, gets up to
``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (300 s by default) to answer,
and is stopped however the run ends. The synthetic file lives in a private
temporary folder outside the vault home and is deleted once ingested.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from flows import prefect_env
from vault.home import VaultHome

DATASET = "voters"
ANALYST = "demo-analyst"
ANALYST_EPSILON = Fraction(2)
# (by, measures, epsilon): voters by county x age band x party (public keys from the default
# policy: 100 x 7 x 6 segments), then count and mean age by party x gender
RELEASES: tuple[tuple[list[str], list[str], str], ...] = (
    (["county_desc", "age_band", "party_cd"], ["count"], "0.5"),
    (["party_cd", "gender_code"], ["count", "mean:birth_age"], "0.5"),
)
Step = Callable[[str], None]


@dataclass
class DemoSummary:
    home: str
    rows: int
    columns: int
    columns_protected: int
    rows_added: int
    releases: list[dict[str, Any]] = field(default_factory=list)
    ledger_size: int = 0
    ledger_root: str = ""
    verdict: str = ""
    checkpoint: str = ""
    analyst: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "home": self.home, "dataset": DATASET, "rows": self.rows, "columns": self.columns,
            "columns_protected": self.columns_protected, "rows_added": self.rows_added,
            "releases": self.releases, "ledger_size": self.ledger_size,
            "ledger_root": self.ledger_root, "verdict": self.verdict,
            "checkpoint": self.checkpoint, "analyst": self.analyst, "seconds": self.seconds,
        }


def _accuracy_of(measure: Any) -> Any:
    """A measure's +- (rounded), or how a derived one (a mean) is computed."""
    if isinstance(measure, dict):
        if "accuracy" in measure:
            value = measure["accuracy"]
            return round(value, 3) if isinstance(value, float) else value
        if "derived" in measure:
            return f"derived: {measure['derived']}"
    return measure


def _release_summary(doc: dict[str, Any]) -> dict[str, Any]:
    accuracy = doc.get("accuracy", {})
    measures = accuracy.get("measures", {}) if isinstance(accuracy, dict) else {}
    return {"by": doc.get("by"), "measures": doc.get("measures"), "epsilon": doc.get("epsilon"),
            "groups": len(doc.get("rows", [])),
            "accuracy": {k: _accuracy_of(v) for k, v in measures.items()},
            "confidence": accuracy.get("confidence") if isinstance(accuracy, dict) else None,
            "data_hash": doc.get("data_hash"), "ledger_seq": doc.get("ledger_seq"),
            "budget": doc.get("budget")}


def run_demo(rows: int, home: Path, *, seed: int | None = None,
             step: Step | None = None) -> DemoSummary:
    """Run the whole demo in a fresh vault home at ``home``; returns the summary."""
    say: Step = step or (lambda _msg: None)
    clock: dict[str, float] = {}
    t_all = time.perf_counter()

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        clock[name] = round(now - since, 3)
        return now

    from vault.setup import init_home

    vh = VaultHome(root=home.expanduser().absolute(),
                   db_url_override=os.environ.get("CIVICVAULT_DB_URL") or None)
    t = time.perf_counter()
    say(f"initialising a fresh vault at {vh.root}")
    init_home(vh)
    t = lap("init", t)

    if "prefect" not in sys.modules:  # Prefect reads its settings once, at import
        prefect_env.configure(vh, force_home=True)
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # the summary speaks

    from flows import demo_data
    from flows.ephemeral import EphemeralServer, owned_server, serving
    from flows.prefect_console import cli_console

    with owned_server(EphemeralServer()) as server, \
            tempfile.TemporaryDirectory(prefix="civicvault-demo-") as tmp:
        server.launch()  # boots while the data is generated
        os.chmod(tmp, 0o700)
        source = Path(tmp) / "nc_voters_synthetic.csv"
        say(f"generating {rows:,} synthetic voters with canvass notes")
        demo_data.write_csv(source, rows, seed if seed is not None else demo_data.DEFAULT_SEED)
        t = lap("generate", t)

        say(f"waiting for the temporary Prefect server (up to {server.timeout:g} s)")
        with serving(server), cli_console():
            t = lap("prefect_server_wait", t)
            from flows.ingest import ingest_flow

            say("ingest flow: classify, encrypt, store, ledger")
            report = ingest_flow()(path=str(source), dataset=DATASET, home=str(vh.root))
            t = lap("ingest", t)
            token_file = Path(tmp) / "analyst.token"
            analyst_id = _create_analyst(vh, token_file)
            t = lap("analyst", t)

            from flows.release import release

            releases = []
            for by, measures, epsilon in RELEASES:
                say(f"release flow: {', '.join(measures)} by {' x '.join(by)} "
                    f"at epsilon {epsilon}")
                doc = release(dataset=DATASET, by=by, measures=measures, epsilon=epsilon,
                              home=str(vh.root), token_file=str(token_file))
                releases.append(_release_summary(doc))
            t = lap("releases", t)

            from flows.audit import audit

            say("audit flow: verify ledger and vault, checkpoint, consistency")
            verdict = audit(home=str(vh.root))
            lap("audit", t)
    clock["total"] = round(time.perf_counter() - t_all, 3)
    columns = list(report.get("columns", []))
    protected = sum(1 for c in columns if c.get("handling") != "keep")
    return DemoSummary(
        home=str(vh.root), rows=rows, columns=len(columns), columns_protected=protected,
        rows_added=int(report.get("rows_added", 0)), releases=releases,
        ledger_size=int(verdict["size"]), ledger_root=str(verdict["root"]),
        verdict=str(verdict["verdict"]), checkpoint=str(verdict.get("checkpoint", "")),
        analyst=analyst_id, seconds=clock,
    )


def _create_analyst(vh: VaultHome, token_file: Path) -> str:
    """Add the demo analyst (token into a 0600 file) and give it a budget on the dataset."""
    from vault.service import Vault

    with Vault.open(vh) as admin:  # the home's admin token
        token = admin.principals_add(ANALYST, "analyst")
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(token + "\n")
        analyst = admin.acting_as(token).principal
        admin.budget_set(analyst.id, DATASET, ANALYST_EPSILON)
        return analyst.id
