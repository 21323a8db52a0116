"""The validated policy: frozen values that say who may do what, and how data is handled.

A :class:`Policy` is built by :mod:`policies.load` from a TOML file and knows
nothing of storage. Everything here is pure; :meth:`Policy.decide` delegates to
:func:`policies.evaluator.decide` (which does not import this module back).

Names fixed by this module (other layers and the policy files rely on them):

- :data:`ACTIONS`: every operation the vault asks the policy about.
- :data:`CATEGORIES`: the PII classes of ``vault.pii``.
- :data:`HANDLINGS`: what ingest does with a column of a class.
- Grant scopes: ``any`` (the whole action) and ``own`` (only resources owned by
  the acting principal: ``budget/<principal id>[/<more>]``, see ``policies.vocab``).
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, ConfigDict

from policies.evaluator import EVERYONE, Decision, decide
from policies.vocab import OPERATIONS

__all__ = ["ACTIONS", "ANY_DATASET", "CATEGORIES", "EVERYONE", "HANDLINGS", "NEVER_KEEP",
           "ColumnRule", "DatasetRules", "Decision", "Grant", "Handling", "PiiRules", "Policy",
           "PrivacyUnit", "RevealRules", "Scope", "VaultBudget"]

#: Every operation the vault asks the policy about (defined in ``policies.vocab``).
ACTIONS: frozenset[str] = OPERATIONS

CATEGORIES: tuple[str, ...] = ("direct", "special", "quasi", "free_text", "harmless", "unknown")

Handling = Literal["encrypt", "tokenize", "generalize", "redact", "drop", "keep"]
HANDLINGS: tuple[str, ...] = ("encrypt", "tokenize", "generalize", "redact", "drop", "keep")

#: Categories that may never be stored in plaintext, whatever a policy says.
NEVER_KEEP: frozenset[str] = frozenset({"direct", "special", "unknown"})

Scope = Literal["any", "own"]
ANY_DATASET = "*"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class Grant(_Frozen):
    """One role's right to one action, over every resource or only its own."""

    role: str  # a declared role, or "*" for every declared role
    scope: Scope = "any"


class ColumnRule(_Frozen):
    """What analysts may do with one column of a dataset.

    ``groupable`` columns may appear in ``--by``; with ``keys`` the group keys are
    that public set (pure DP), with ``keys=None`` they must go through DP key
    release. Columns with ``lower``/``upper`` may be measured (``sum:``/``mean:``)
    and used as segmentation features, clamped to those bounds.
    """

    name: str
    keys: tuple[str, ...] | None = None
    lower: int | float | None = None
    upper: int | float | None = None
    groupable: bool = False

    @property
    def measurable(self) -> bool:
        return self.lower is not None and self.upper is not None


#: Defaults when no policy layer declares them (see ``policies/default.toml``).
DEFAULT_ROWS_PER_PERSON = 1
DEFAULT_MAX_PEOPLE = 2**25  # a public bound on people per dataset: any US state's voter file
DEFAULT_DELTA_PER_RELEASE = Fraction(1, 10**9)  # never above 1e-7, never above 1/(10 n)


class PrivacyUnit(_Frozen):
    """Who one unit of privacy is in a dataset, and how much of the data one person may be.

    ``person_key``: columns that identify a person (declared; else detected identifiers
    in the documented order, see ``vault.identity``); ``rows_per_person``: the
    contribution bound k (a release keeps at most k rows of each person);
    ``max_people``: a public upper bound n on the people in the dataset (row bound
    n * k for OpenDP, delta never above 1 / (10 n)).
    """

    person_key: tuple[str, ...] = ()
    rows_per_person: int = DEFAULT_ROWS_PER_PERSON
    max_people: int = DEFAULT_MAX_PEOPLE

    @property
    def max_rows(self) -> int:
        return self.max_people * self.rows_per_person

    @property
    def delta_ceiling(self) -> Fraction:
        """1 / (10 n): no release may use a larger delta, whatever the policy says."""
        return Fraction(1, 10 * self.max_people)


class DatasetRules(_Frozen):
    """Segment rules and budgets declared for one dataset (or ``"*"``: every dataset)."""

    name: str
    columns: tuple[str, ...] = ()
    rules: Mapping[str, ColumnRule] = {}
    per_analyst: Fraction | None = None
    dataset_cap: Fraction | None = None
    per_analyst_delta: Fraction | None = None
    dataset_cap_delta: Fraction | None = None
    delta_per_release: Fraction | None = None
    person_key: tuple[str, ...] | None = None
    rows_per_person: int | None = None
    max_people: int | None = None


class VaultBudget(_Frozen):
    """Vault-wide caps per analyst, over every dataset (``None``: no cap)."""

    analyst_cap: Fraction | None = None
    analyst_cap_delta: Fraction | None = None


class PiiRules(_Frozen):
    categories: Mapping[str, Handling]
    entities: Mapping[str, Handling] = {}
    lookup_entities: frozenset[str] = frozenset()


class RevealRules(_Frozen):
    """Break-glass reveals: the purposes a steward may give, and a rate limit per principal."""

    purposes: frozenset[str] = frozenset()
    limit: int = 0
    window_seconds: int = 3600


class Policy(_Frozen):
    """A whole validated policy. Build with :func:`policies.load.parse_policy`."""

    version: int = 1
    description: str = ""
    roles: Mapping[str, str]  # role -> description
    permissions: Mapping[str, tuple[Grant, ...]]  # action -> grants
    pii: PiiRules
    datasets: Mapping[str, DatasetRules]
    reveal: RevealRules
    budget: VaultBudget = VaultBudget()
    sha256: str = ""  # of the file bytes it was parsed from

    # -- access -------------------------------------------------------------------------
    def decide(
        self,
        role: str,
        action: str,
        resource: str,
        purpose: str | None = None,
        *,
        actor: str | None = None,
    ) -> Decision:
        """Pure verdict; ``actor`` (principal id) is needed for ``own``-scoped grants."""
        return decide(self, role, action, resource, purpose, actor=actor)

    def roles_for(self, action: str) -> tuple[Grant, ...]:
        return self.permissions.get(action, ())

    # -- segment rules and budgets -----------------------------------------------------
    def _layers(self, dataset: str) -> list[DatasetRules]:
        layers = []
        if ANY_DATASET in self.datasets:
            layers.append(self.datasets[ANY_DATASET])
        if dataset != ANY_DATASET and dataset in self.datasets:
            layers.append(self.datasets[dataset])
        return layers

    def columns_for(self, dataset: str) -> Mapping[str, ColumnRule]:
        """Columns analysts may use on ``dataset``: the ``"*"`` rules, overridden per column
        by the dataset's own section. Columns not returned may not be used at all."""
        merged: dict[str, ColumnRule] = {}
        for layer in self._layers(dataset):
            for name, rule in layer.rules.items():
                prev = merged.get(name)
                if prev is None:
                    merged[name] = rule
                    continue
                merged[name] = ColumnRule(
                    name=name,
                    groupable=prev.groupable or rule.groupable,
                    keys=rule.keys if rule.groupable else prev.keys,
                    lower=rule.lower if rule.measurable else prev.lower,
                    upper=rule.upper if rule.measurable else prev.upper,
                )
        return merged

    def budget_default(self, dataset: str) -> Fraction:
        """Epsilon each analyst gets on ``dataset`` unless ``budget set`` says otherwise."""
        value = Fraction(0)
        for layer in self._layers(dataset):
            if layer.per_analyst is not None:
                value = layer.per_analyst
        return value

    def dataset_cap(self, dataset: str) -> Fraction:
        """Total epsilon all analysts together may spend on ``dataset``."""
        value = Fraction(0)
        for layer in self._layers(dataset):
            if layer.dataset_cap is not None:
                value = layer.dataset_cap
        return value

    def _fraction(self, dataset: str, attr: str, default: Fraction) -> Fraction:
        value = default
        for layer in self._layers(dataset):
            got = getattr(layer, attr)
            if got is not None:
                value = Fraction(got)
        return value

    def _int(self, dataset: str, attr: str, default: int) -> int:
        value = default
        for layer in self._layers(dataset):
            got = getattr(layer, attr)
            if got is not None:
                value = int(got)
        return value

    def delta_default(self, dataset: str) -> Fraction:
        """Delta each analyst gets on ``dataset`` unless ``budget set`` says otherwise."""
        return self._fraction(dataset, "per_analyst_delta", Fraction(0))

    def delta_cap(self, dataset: str) -> Fraction:
        """Total delta all analysts together may spend on ``dataset``."""
        return self._fraction(dataset, "dataset_cap_delta", Fraction(0))

    def delta_per_release(self, dataset: str) -> Fraction:
        """The largest delta one release may use: the policy's, never above 1 / (10 n)."""
        declared = self._fraction(dataset, "delta_per_release", DEFAULT_DELTA_PER_RELEASE)
        return min(declared, self.privacy_unit(dataset).delta_ceiling)

    def privacy_unit(self, dataset: str) -> PrivacyUnit:
        """The person key, contribution bound and public people bound of ``dataset``."""
        key: tuple[str, ...] = ()
        for layer in self._layers(dataset):
            if layer.person_key is not None:
                key = layer.person_key
        return PrivacyUnit(
            person_key=key,
            rows_per_person=self._int(dataset, "rows_per_person", DEFAULT_ROWS_PER_PERSON),
            max_people=self._int(dataset, "max_people", DEFAULT_MAX_PEOPLE),
        )

    def analyst_caps(self) -> tuple[Fraction | None, Fraction | None]:
        """(epsilon, delta) one analyst may spend over every dataset of the vault."""
        return self.budget.analyst_cap, self.budget.analyst_cap_delta

    # -- PII handling --------------------------------------------------------------------
    def pii_handling(self, category: str, entity: str | None = None) -> str:
        """``encrypt|tokenize|generalize|redact|drop|keep`` for a classified column.

        An entity rule wins over its category's; an unknown category is handled like
        ``unknown`` (fail closed: encrypt). Direct, special and unknown columns are
        never kept in plaintext, whatever an entity rule says."""
        if category not in self.pii.categories:
            category = "unknown"
        by_category = self.pii.categories.get(category, "encrypt")
        if entity is not None and entity in self.pii.entities:
            chosen = self.pii.entities[entity]
            if not (chosen == "keep" and category in NEVER_KEEP):
                return chosen
        return by_category

    @property
    def lookup_entities(self) -> frozenset[str]:
        """Entities whose values get blind indexes (dedup, erasure requests)."""
        return self.pii.lookup_entities

    # -- reveals ---------------------------------------------------------------------------
    @property
    def reveal_purposes(self) -> frozenset[str]:
        return self.reveal.purposes

    # -- presentation --------------------------------------------------------------------
    def summary(self) -> dict[str, object]:
        """A JSON-able view (budgets as exact decimal strings or fractions ``p/q``)."""

        def frac(value: Fraction | None) -> str | None:
            return None if value is None else _fraction_text(value)

        return {
            "version": self.version,
            "sha256": self.sha256,
            "roles": dict(self.roles),
            "permissions": {
                action: [g.role if g.scope == "any" else f"{g.role}:{g.scope}" for g in grants]
                for action, grants in sorted(self.permissions.items())
            },
            "pii": {
                "categories": dict(self.pii.categories),
                "entities": dict(self.pii.entities),
                "lookup_entities": sorted(self.pii.lookup_entities),
            },
            "datasets": {
                name: {
                    "columns": list(d.columns),
                    "rules": {
                        c: {
                            "groupable": r.groupable,
                            "keys": None if r.keys is None else len(r.keys),
                            "lower": r.lower,
                            "upper": r.upper,
                        }
                        for c, r in d.rules.items()
                    },
                    "per_analyst": frac(d.per_analyst),
                    "dataset_cap": frac(d.dataset_cap),
                    "per_analyst_delta": frac(d.per_analyst_delta),
                    "dataset_cap_delta": frac(d.dataset_cap_delta),
                    "delta_per_release": frac(d.delta_per_release),
                    "privacy_unit": {
                        "person_key": None if d.person_key is None else list(d.person_key),
                        "rows_per_person": d.rows_per_person,
                        "max_people": d.max_people,
                    },
                }
                for name, d in self.datasets.items()
            },
            "budget": {
                "analyst_cap": frac(self.budget.analyst_cap),
                "analyst_cap_delta": frac(self.budget.analyst_cap_delta),
            },
            "reveal": {
                "purposes": sorted(self.reveal.purposes),
                "limit": self.reveal.limit,
                "window_seconds": self.reveal.window_seconds,
            },
        }


def _fraction_text(value: Fraction) -> str:
    """Exact text for a budget: a terminating decimal where there is one, else ``p/q``."""
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    digits = max(twos, fives)
    scaled = value * 10**digits
    assert scaled.denominator == 1
    sign = "-" if scaled < 0 else ""
    text = str(abs(scaled.numerator)).rjust(digits + 1, "0")
    if digits == 0:
        return f"{sign}{text}"
    return f"{sign}{text[:-digits]}.{text[-digits:]}"
