"""Helpers for DP release tests: a tiny policy, a known plaintext frame, ledger reading."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine

from ledger import store as ledger_store
from vault.access import Principal
from vault.dp.source import FrameSource
from vault.home import VaultHome

COUNTIES = ("Alamance", "Chatham", "Wake")
PARTIES = ("DEM", "REP", "UNA")
# Known counts per (county, party): 100, 200, ..., 900.
KNOWN = {
    (c, p): 100 * (3 * i + j + 1) for i, c in enumerate(COUNTIES) for j, p in enumerate(PARTIES)
}

ALICE = Principal(id="alice", role="analyst")
BOB = Principal(id="bob", role="analyst")


@dataclass(frozen=True)
class Rule:
    name: str
    keys: tuple[str, ...] | None = None
    lower: float | None = None
    upper: float | None = None
    groupable: bool = False


@dataclass(frozen=True)
class Unit:
    rows_per_person: int = 1
    max_people: int = 100_000


@dataclass
class TinyPolicy:
    """The methods ``vault.dp`` needs from ``policies.Policy``."""

    rules: dict[str, dict[str, Rule]] = field(default_factory=dict)
    default: Fraction = Fraction(10)
    cap: Fraction = Fraction(100)
    delta_total: Fraction = Fraction(1, 10**5)
    delta_dataset_cap: Fraction = Fraction(1, 10**4)
    delta_release: Fraction = Fraction(1, 10**6)
    unit: Unit = Unit()
    analyst_cap: Fraction | None = None
    analyst_cap_delta: Fraction | None = None

    def columns_for(self, dataset: str) -> Mapping[str, Rule]:
        return self.rules.get(dataset, {})

    def budget_default(self, dataset: str) -> Fraction:
        return self.default

    def dataset_cap(self, dataset: str) -> Fraction:
        return self.cap

    def delta_default(self, dataset: str) -> Fraction:
        return self.delta_total

    def delta_cap(self, dataset: str) -> Fraction:
        return self.delta_dataset_cap

    def delta_per_release(self, dataset: str) -> Fraction:
        return min(self.delta_release, Fraction(1, 10 * self.unit.max_people))

    def privacy_unit(self, dataset: str) -> Unit:
        return self.unit

    def analyst_caps(self) -> tuple[Fraction | None, Fraction | None]:
        return self.analyst_cap, self.analyst_cap_delta


def voter_rules() -> dict[str, Rule]:
    return {
        "county": Rule("county", keys=COUNTIES, groupable=True),
        "party": Rule("party", keys=PARTIES, groupable=True),
        "precinct": Rule("precinct", groupable=True),  # groupable, but no public keys
        "age": Rule("age", lower=18, upper=100),
        "turnout": Rule("turnout", lower=0, upper=1),
        "income": Rule("income"),  # no bounds: cannot be summed
        "age_band": Rule("age_band", keys=("18-34", "35+")),  # has keys, but not groupable
        "score": Rule("score", lower=5, upper=1),  # bad bounds
    }


def policy(**kw: Any) -> TinyPolicy:
    return TinyPolicy(rules={"voters": voter_rules()}, **kw)


def voter_frame() -> pl.DataFrame:
    """Rows with known counts per (county, party); age 40 + j, turnout 1 on even rows."""
    counties: list[str] = []
    parties: list[str] = []
    ages: list[int] = []
    for (c, p), n in KNOWN.items():
        counties += [c] * n
        parties += [p] * n
        ages += [30 + PARTIES.index(p) * 10] * n
    n = len(counties)
    return pl.DataFrame(
        {
            "county": counties,
            "party": parties,
            "precinct": [f"P{i % 4}" for i in range(n)],
            "age": ages,
            "turnout": [i % 2 for i in range(n)],
            "income": [50_000] * n,
            "score": [3] * n,
            "name": [f"person-{i}" for i in range(n)],
        }
    )


def source() -> FrameSource:
    return FrameSource({"voters": voter_frame()})


def vault_home(engine: Engine, root: Path) -> VaultHome:
    """A vault home with the default policy installed (who may do what) and two analysts."""
    from policies.load import default_policy_text
    from vault.principals import add_principal

    home = VaultHome(root)
    root.mkdir(parents=True, exist_ok=True)
    home.policy_path.write_text(default_policy_text(), encoding="utf-8")
    from vault.principals import get_principal

    with engine.begin() as conn:
        for p in (ALICE, BOB):
            if get_principal(conn, p.id) is None:
                add_principal(conn, p.id, p.role)
    return home


def ledger_entries(engine: Engine) -> list[dict[str, Any]]:
    """The entries after the setup's ``principal.added`` ones."""
    with engine.connect() as conn:
        return [e for e in map(json.loads, ledger_store.iter_entries(conn))
                if e["action"] != "principal.added"]


def actions(engine: Engine) -> list[str]:
    return [str(e["action"]) for e in ledger_entries(engine)]
