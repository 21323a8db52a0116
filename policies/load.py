"""Policy files: TOML in, a validated :class:`~policies.model.Policy` out, or one clear error.

Every problem is reported as a single :class:`~policies.errors.PolicyFileError`
naming the file and the line: TOML syntax, unknown keys, unknown roles, actions,
categories or handlings, unknown columns, bad bounds, negative budgets. Lines are
found by scanning the (already syntax-checked) text for the offending key or
array item, see :class:`_Locator`.

Budgets are exact: TOML decimals are parsed as :class:`decimal.Decimal` from
their text and turned into :class:`fractions.Fraction`, never through a float.
Numbers go through the same strict parser as the CLI and the API
(``policies.validate``), from their source text: TOML's ``1_000``, ``inf`` and
``nan`` are refused, and dataset names follow ``policies.validate.parse_name``.

The file format is documented in ``policies/default.toml``.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, NoReturn, cast

from ledger.errors import BadInput
from policies.errors import PolicyFileError
from policies.model import (
    ACTIONS,
    ANY_DATASET,
    CATEGORIES,
    EVERYONE,
    HANDLINGS,
    NEVER_KEEP,
    ColumnRule,
    DatasetRules,
    Grant,
    Handling,
    PiiRules,
    Policy,
    RevealRules,
    Scope,
    VaultBudget,
)
from policies.validate import parse_decimal, parse_int, parse_name
from policies.vocab import LOOKUP_NORMALIZERS

Loc = tuple[str | int, ...]

ROLE_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
COLUMN_RE = re.compile(r"[^\x00-\x1f]{1,256}")
ENTITY_RE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
PURPOSE_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
DP_KEYS = "dp"  # group_by value: no public key set, keys go through DP key release
_SYNTAX_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)|\s*\(at end of document\)")


# -- public API ------------------------------------------------------------------------------


def default_policy_text() -> str:
    """The documented default policy shipped with the package (``init`` installs it)."""
    return resources.files("policies").joinpath("default.toml").read_text(encoding="utf-8")


@functools.cache
def default_policy() -> Policy:
    """The parsed default policy (once per process)."""
    return parse_policy(default_policy_text(), "default.toml")


def load_policy(path: str | Path) -> Policy:
    """Read and validate the policy file at ``path``."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise PolicyFileError(
            f"cannot read policy file ({type(exc).__name__})", path=str(p)
        ) from None
    return parse_policy_bytes(data, str(p))


def parse_policy(text: str, source_name: str = "<policy>") -> Policy:
    """Validate policy ``text``; errors name ``source_name`` and the line."""
    return _parse(text, source_name, hashlib.sha256(text.encode("utf-8")).hexdigest())


def parse_policy_bytes(data: bytes, source_name: str = "<policy>") -> Policy:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PolicyFileError("not UTF-8 text", path=source_name, line=line) from None
    return _parse(text, source_name, hashlib.sha256(data).hexdigest())


# -- parsing ---------------------------------------------------------------------------------


def _parse(text: str, source_name: str, sha256: str) -> Policy:
    try:
        raw = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = _SYNTAX_POS.search(message)
        line: int | None = None
        if m is not None:
            if m.group(1) is not None:
                line = int(m.group(1))
                message = message[: m.start()] + f" (column {m.group(2)})"
            else:
                line = text.count("\n") + (0 if text.endswith("\n") else 1)
                message = message[: m.start()] + " (at end of file)"
        raise PolicyFileError(f"TOML syntax error: {message}", path=source_name, line=line) \
            from None
    return _Checker(text, source_name).policy(raw, sha256)


class _Checker:
    """Validates the raw TOML tree, raising the first problem with its line."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self._locator: _Locator | None = None

    # errors
    def fail(self, message: str, loc: Loc) -> NoReturn:
        if self._locator is None:
            self._locator = _Locator(self.text)
        line = self._locator.line_of(loc) or 1  # a whole-file problem is reported at line 1
        raise PolicyFileError(message, path=self.source, line=line)

    # shapes
    def table(self, value: Any, loc: Loc) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(f"'{_dotted(loc)}' must be a table", loc)
        return value

    def only(self, table: Mapping[str, Any], allowed: tuple[str, ...], loc: Loc) -> None:
        for key in table:
            if key not in allowed:
                where = f"[{_dotted(loc)}]" if loc else "the top level"
                self.fail(
                    f"unknown key '{key}' in {where}{_hint(key, allowed)}; "
                    f"expected one of: {', '.join(allowed)}",
                    (*loc, key),
                )

    def string(self, value: Any, loc: Loc, pattern: re.Pattern[str] | None = None,
               what: str = "a string") -> str:
        if not isinstance(value, str):
            self.fail(f"'{_dotted(loc)}' must be {what}", loc)
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(f"'{_dotted(loc)}' is not a valid {what}", loc)
        return value

    def strings(self, value: Any, loc: Loc, pattern: re.Pattern[str] | None = None,
                what: str = "string") -> list[str]:
        if not isinstance(value, list):
            self.fail(f"'{_dotted(loc)}' must be an array of {what}s", loc)
        out: list[str] = []
        seen: set[str] = set()
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"'{_dotted(loc)}' must contain only {what}s (item {i + 1})", (*loc, i))
            if pattern is not None and not pattern.fullmatch(item):
                self.fail(f"item {i + 1} of '{_dotted(loc)}' is not a valid {what}", (*loc, i))
            if item in seen:
                self.fail(f"item {i + 1} of '{_dotted(loc)}' repeats an earlier item", (*loc, i))
            seen.add(item)
            out.append(item)
        return out

    def _source(self, loc: Loc) -> str | None:
        """The text of the scalar at ``loc`` as written in the file (None if not found)."""
        if self._locator is None:
            self._locator = _Locator(self.text)
        return self._locator.scalars.get(loc)

    def integer(self, value: Any, loc: Loc, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"'{_dotted(loc)}' must be an integer", loc)
        if value < minimum:
            self.fail(f"'{_dotted(loc)}' must be at least {minimum}", loc)
        source = self._source(loc)
        if source is not None:
            try:
                parse_int(source, what=f"'{_dotted(loc)}'", minimum=minimum)
            except BadInput as exc:
                self.fail(str(exc), loc)
        return value

    def number(self, value: Any, loc: Loc) -> int | Decimal:
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            self.fail(f"'{_dotted(loc)}' must be a number", loc)
        if isinstance(value, Decimal) and not value.is_finite():
            self.fail(f"'{_dotted(loc)}' must be a finite number", loc)
        source = self._source(loc)
        if source is not None:  # the one strict parser, on the text as written
            try:
                parse_decimal(source, what=f"'{_dotted(loc)}'")
            except BadInput as exc:
                self.fail(str(exc), loc)
        return value

    # sections
    def policy(self, raw: dict[str, Any], sha256: str) -> Policy:
        self.only(raw, ("version", "description", "roles", "permissions", "pii", "datasets",
                        "reveal", "budget"), ())
        version = self.integer(raw.get("version", 1), ("version",), 1)
        if version != 1:
            self.fail("unsupported policy 'version' (this civicvault reads version 1)",
                      ("version",))
        description = self.string(raw.get("description", ""), ("description",))
        if "roles" not in raw:
            self.fail("the policy declares no [roles]", ())
        roles = self.roles(raw["roles"])
        if "permissions" not in raw:
            self.fail("the policy declares no [permissions]", ())
        permissions = self.permissions(raw["permissions"], roles)
        pii = self.pii(raw.get("pii", {}))
        datasets = self.datasets(raw.get("datasets", {}))
        reveal = self.reveal(raw.get("reveal", {}))
        vault_budget = self.vault_budget(raw.get("budget", {}))
        return Policy(version=version, description=description, roles=roles,
                      permissions=permissions, pii=pii, datasets=datasets, reveal=reveal,
                      budget=vault_budget, sha256=sha256)

    def amount(self, value: Any, loc: Loc, what: str, *, delta: bool = False) -> Fraction:
        """An exact, non-negative budget amount (a delta also at most 1)."""
        number = self.number(value, loc)
        if number < 0:
            self.fail(f"negative budget '{_dotted(loc)}'", loc)
        if delta and number > 1:
            self.fail(f"'{_dotted(loc)}' is a delta: it must be between 0 and 1", loc)
        return Fraction(number)

    def vault_budget(self, value: Any) -> VaultBudget:
        table = self.table(value, ("budget",))
        self.only(table, ("analyst_cap", "analyst_cap_delta"), ("budget",))
        cap = table.get("analyst_cap")
        cap_d = table.get("analyst_cap_delta")
        return VaultBudget(
            analyst_cap=None if cap is None else self.amount(cap, ("budget", "analyst_cap"), "cap"),
            analyst_cap_delta=None if cap_d is None else self.amount(
                cap_d, ("budget", "analyst_cap_delta"), "cap", delta=True))

    def roles(self, value: Any) -> dict[str, str]:
        table = self.table(value, ("roles",))
        if not table:
            self.fail("[roles] declares no role", ("roles",))
        roles: dict[str, str] = {}
        for name, desc in table.items():
            loc: Loc = ("roles", name)
            if not ROLE_RE.fullmatch(name):
                self.fail(f"role name '{_short(name)}' is not valid (a-z, 0-9, _ or -)", loc)
            roles[name] = self.string(desc, loc, what="a description string")
        return roles

    def permissions(self, value: Any, roles: Mapping[str, str]) -> dict[str, tuple[Grant, ...]]:
        out: dict[str, tuple[Grant, ...]] = {}

        def walk(table: dict[str, Any], prefix: str, loc: Loc) -> None:
            for key, item in table.items():
                action = f"{prefix}{key}"
                item_loc: Loc = (*loc, key)
                if isinstance(item, dict):
                    walk(item, f"{action}.", item_loc)
                    continue
                if action not in ACTIONS:
                    self.fail(f"unknown action '{_short(action)}' in [permissions]"
                              f"{_hint(action, sorted(ACTIONS))}", item_loc)
                if action in out:
                    self.fail(f"action '{action}' is granted twice in [permissions]", item_loc)
                out[action] = self.grants(item, item_loc, action, roles)

        walk(self.table(value, ("permissions",)), "", ("permissions",))
        return out

    def grants(self, value: Any, loc: Loc, action: str,
               roles: Mapping[str, str]) -> tuple[Grant, ...]:
        grants: list[Grant] = []
        for i, text in enumerate(self.strings(value, loc, what="role")):
            role, _, scope = text.partition(":")
            if role != EVERYONE and role not in roles:
                self.fail(f"unknown role '{_short(role)}' in permissions for '{action}'"
                          f"{_hint(role, list(roles))}; roles: {', '.join(roles)}", (*loc, i))
            if scope not in ("", "any", "own"):
                self.fail(f"unknown scope '{_short(scope)}' for role '{role}' on '{action}' "
                          "(use ':own' or nothing)", (*loc, i))
            grants.append(Grant(role=role, scope=cast(Scope, scope or "any")))
        return tuple(grants)

    def handling(self, value: Any, loc: Loc) -> Handling:
        if not isinstance(value, str) or value not in HANDLINGS:
            self.fail(f"unknown handling for '{_dotted(loc)}'; expected one of: "
                      f"{', '.join(HANDLINGS)}", loc)
        return cast(Handling, value)

    def pii(self, value: Any) -> PiiRules:
        table = self.table(value, ("pii",))
        self.only(table, ("categories", "entities", "lookup_entities"), ("pii",))
        cats_raw = self.table(table.get("categories", {}), ("pii", "categories"))
        self.only(cats_raw, CATEGORIES, ("pii", "categories"))
        categories: dict[str, Handling] = {c: "encrypt" for c in CATEGORIES}
        for cat, h in cats_raw.items():
            loc: Loc = ("pii", "categories", cat)
            categories[cat] = self.handling(h, loc)
            if cat in NEVER_KEEP and categories[cat] == "keep":
                self.fail(f"category '{cat}' may not be kept in plaintext", loc)
        ents_raw = self.table(table.get("entities", {}), ("pii", "entities"))
        entities: dict[str, Handling] = {}
        for ent, h in ents_raw.items():
            loc = ("pii", "entities", ent)
            if not ENTITY_RE.fullmatch(ent):
                self.fail(f"entity name '{_short(ent)}' is not valid (A-Z, 0-9, _)", loc)
            entities[ent] = self.handling(h, loc)
        lookup = self.strings(table.get("lookup_entities", []), ("pii", "lookup_entities"),
                              ENTITY_RE, "entity name")
        for i, ent in enumerate(lookup):
            if ent not in LOOKUP_NORMALIZERS:
                self.fail(f"lookup entity '{_short(ent)}' has no normaliser for blind indexes "
                          f"(one of: {', '.join(LOOKUP_NORMALIZERS)}; see policies/vocab.py)",
                          ("pii", "lookup_entities", i))
        return PiiRules(categories=categories, entities=entities,
                        lookup_entities=frozenset(lookup))

    def datasets(self, value: Any) -> dict[str, DatasetRules]:
        table = self.table(value, ("datasets",))
        out: dict[str, DatasetRules] = {}
        base_columns: list[str] = []
        names = sorted(table, key=lambda n: n != ANY_DATASET)  # "*" first
        for name in names:
            loc: Loc = ("datasets", name)
            if name != ANY_DATASET:
                try:
                    parse_name(name, "dataset")
                except BadInput as exc:
                    self.fail(f"'{_short(name)}': {exc}", loc)
            rules = self.dataset(name, table[name], loc, base_columns)
            if name == ANY_DATASET:
                base_columns = list(rules.columns)
            out[name] = rules
        return out

    def dataset(self, name: str, value: Any, loc: Loc, base_columns: list[str]) -> DatasetRules:
        table = self.table(value, loc)
        self.only(table, ("columns", "group_by", "bounds", "budget", "privacy_unit"), loc)
        columns = self.strings(table.get("columns", []), (*loc, "columns"), COLUMN_RE,
                               "column name")
        declared = set(columns) | set(base_columns)
        rules: dict[str, ColumnRule] = {}

        def check_column(col: str, col_loc: Loc) -> None:
            if col not in declared:
                self.fail(f"unknown column '{_short(col)}' in [{_dotted(col_loc[:-1])}]: "
                          f"not declared in 'columns' of dataset '{name}'"
                          f"{'' if name == ANY_DATASET else ' or of *'}", col_loc)

        group_loc: Loc = (*loc, "group_by")
        for col, keys in self.table(table.get("group_by", {}), group_loc).items():
            col_loc: Loc = (*group_loc, col)
            check_column(col, col_loc)
            if keys == DP_KEYS:
                rules[col] = ColumnRule(name=col, keys=None, groupable=True)
                continue
            if not isinstance(keys, list):
                self.fail(f"'{_dotted(col_loc)}' must be an array of public keys or "
                          f"\"{DP_KEYS}\"", col_loc)
            key_list = self.strings(keys, col_loc, what="key string")
            if not key_list:
                self.fail(f"'{_dotted(col_loc)}' has no keys (use \"{DP_KEYS}\" for DP key "
                          "release)", col_loc)
            rules[col] = ColumnRule(name=col, keys=tuple(key_list), groupable=True)

        bounds_loc: Loc = (*loc, "bounds")
        for col, bounds in self.table(table.get("bounds", {}), bounds_loc).items():
            col_loc = (*bounds_loc, col)
            check_column(col, col_loc)
            b = self.table(bounds, col_loc)
            self.only(b, ("lower", "upper"), col_loc)
            for k in ("lower", "upper"):
                if k not in b:
                    self.fail(f"bounds for column '{_short(col)}' need '{k}'", col_loc)
            lower = _plain(self.number(b["lower"], (*col_loc, "lower")))
            upper = _plain(self.number(b["upper"], (*col_loc, "upper")))
            if lower >= upper:
                self.fail(f"bad bounds for column '{_short(col)}': lower must be below upper",
                          col_loc)
            prev = rules.get(col)
            rules[col] = ColumnRule(name=col, keys=prev.keys if prev else None,
                                    groupable=prev.groupable if prev else False,
                                    lower=lower, upper=upper)

        budget_loc: Loc = (*loc, "budget")
        budget = self.table(table.get("budget", {}), budget_loc)
        deltas = ("per_analyst_delta", "dataset_cap_delta", "delta_per_release")
        self.only(budget, ("per_analyst", "dataset_cap", *deltas), budget_loc)
        amounts: dict[str, Fraction] = {}
        for key, amount in budget.items():
            amount_loc: Loc = (*budget_loc, key)
            number = self.number(amount, amount_loc)
            if number < 0:
                self.fail(f"negative budget '{key}' for dataset '{name}'", amount_loc)
            if key in deltas and number > 1:
                self.fail(f"'{key}' of dataset '{name}' is a delta: it must be between 0 and 1",
                          amount_loc)
            amounts[key] = Fraction(number)
        if amounts.get("delta_per_release") == 0:
            self.fail(f"'delta_per_release' of dataset '{name}' must be > 0",
                      (*budget_loc, "delta_per_release"))

        unit_loc: Loc = (*loc, "privacy_unit")
        unit = self.table(table.get("privacy_unit", {}), unit_loc)
        self.only(unit, ("person_key", "rows_per_person", "max_people"), unit_loc)
        person_key: tuple[str, ...] | None = None
        if "person_key" in unit:
            raw_key = unit["person_key"]
            keys = [raw_key] if isinstance(raw_key, str) else raw_key
            person_key = tuple(self.strings(keys, (*unit_loc, "person_key"), COLUMN_RE,
                                            "column name"))
            if not person_key:
                self.fail(f"'person_key' of dataset '{name}' names no column",
                          (*unit_loc, "person_key"))
        rows_per_person = (self.integer(unit["rows_per_person"], (*unit_loc, "rows_per_person"), 1)
                           if "rows_per_person" in unit else None)
        max_people = (self.integer(unit["max_people"], (*unit_loc, "max_people"), 1)
                      if "max_people" in unit else None)
        return DatasetRules(name=name, columns=tuple(columns), rules=rules,
                            per_analyst=amounts.get("per_analyst"),
                            dataset_cap=amounts.get("dataset_cap"),
                            per_analyst_delta=amounts.get("per_analyst_delta"),
                            dataset_cap_delta=amounts.get("dataset_cap_delta"),
                            delta_per_release=amounts.get("delta_per_release"),
                            person_key=person_key, rows_per_person=rows_per_person,
                            max_people=max_people)

    def reveal(self, value: Any) -> RevealRules:
        table = self.table(value, ("reveal",))
        self.only(table, ("purposes", "limit", "window_seconds"), ("reveal",))
        purposes = self.strings(table.get("purposes", []), ("reveal", "purposes"), PURPOSE_RE,
                                "purpose id")
        limit = self.integer(table.get("limit", 0), ("reveal", "limit"), 0)
        window = self.integer(table.get("window_seconds", 3600), ("reveal", "window_seconds"), 1)
        return RevealRules(purposes=frozenset(purposes), limit=limit, window_seconds=window)


def _plain(value: int | Decimal) -> int | float:
    return value if isinstance(value, int) else float(value)


def _short(text: str) -> str:
    """A name from the file, shortened and stripped of control characters for one line."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    return clean if len(clean) <= 64 else clean[:61] + "..."


def _hint(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _dotted(loc: Loc) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + (part if _BARE.fullmatch(part)
                                                    else f'"{_short(part)}"'))
    return "".join(parts)


# -- line numbers ----------------------------------------------------------------------------


class _Locator:
    """Line numbers of keys, tables and array items in syntactically valid TOML text.

    Records ``path -> line`` for every key, table header and array item, where
    ``path`` is the tuple of keys (and item indexes) as in the parsed tree.
    """

    _ESCAPES: ClassVar[dict[str, str]] = {
        "b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\", "e": "\x1b",
    }

    def __init__(self, text: str) -> None:
        self.t = text
        self.pos = 0
        self.line = 1
        self.lines: dict[Loc, int] = {}
        self.scalars: dict[Loc, str] = {}  # bare values (numbers, booleans) as written
        with contextlib.suppress(IndexError, ValueError):  # tomllib accepted the text
            self._document()

    def line_of(self, loc: Loc) -> int | None:
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]]
        return None

    # helpers
    def _peek(self, s: str) -> bool:
        return self.t.startswith(s, self.pos)

    def _advance(self, n: int = 1) -> None:
        self.line += self.t.count("\n", self.pos, self.pos + n)
        self.pos += n

    def _record(self, loc: Loc) -> None:
        for n in range(1, len(loc) + 1):
            self.lines.setdefault(loc[:n], self.line)

    def _ws(self) -> None:
        while self.pos < len(self.t) and self.t[self.pos] in " \t":
            self.pos += 1

    def _blank(self) -> None:
        """Skip whitespace, newlines and comments."""
        while self.pos < len(self.t):
            ch = self.t[self.pos]
            if ch in " \t\r":
                self.pos += 1
            elif ch == "\n":
                self._advance()
            elif ch == "#":
                end = self.t.find("\n", self.pos)
                self.pos = len(self.t) if end < 0 else end
            else:
                return

    # grammar
    def _document(self) -> None:
        prefix: Loc = ()
        aot: dict[Loc, int] = {}
        while True:
            self._blank()
            if self.pos >= len(self.t):
                return
            if self._peek("[["):
                self._advance(2)
                key = self._key()
                self._ws()
                self._advance(2)
                index = aot.get(key, -1) + 1
                aot[key] = index
                prefix = (*key, index)
                self._record(prefix)
            elif self._peek("["):
                self._advance()
                key = self._key()
                self._ws()
                self._advance()
                prefix = key
                self._record(prefix)
            else:
                key = self._key()
                self._ws()
                self._advance()  # "="
                self._ws()
                full = (*prefix, *key)
                self._record(full)
                self._value(full)

    def _key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self._ws()
            if self._peek('"'):
                parts.append(self._basic_string())
            elif self._peek("'"):
                parts.append(self._literal_string())
            else:
                m = _BARE.match(self.t, self.pos)
                if m is None:
                    raise ValueError("bad key")
                parts.append(m.group(0))
                self.pos = m.end()
            self._ws()
            if self._peek("."):
                self.pos += 1
                continue
            return tuple(parts)

    def _basic_string(self) -> str:
        self.pos += 1
        out: list[str] = []
        while self.t[self.pos] != '"':
            ch = self.t[self.pos]
            if ch == "\\":
                nxt = self.t[self.pos + 1]
                if nxt in "uU":
                    width = 4 if nxt == "u" else 8
                    out.append(chr(int(self.t[self.pos + 2 : self.pos + 2 + width], 16)))
                    self.pos += 2 + width
                    continue
                out.append(self._ESCAPES.get(nxt, nxt))
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1
        self.pos += 1
        return "".join(out)

    def _literal_string(self) -> str:
        end = self.t.index("'", self.pos + 1)
        value = self.t[self.pos + 1 : end]
        self.pos = end + 1
        return value

    def _multiline(self, delim: str) -> None:
        self._advance(3)
        while not self._peek(delim):
            if delim == '"""' and self._peek("\\"):
                self._advance(2)
            else:
                self._advance()
        self._advance(3)
        while self._peek(delim[0]):  # up to two quotes may close the content
            self._advance()

    def _value(self, loc: Loc) -> None:
        if self._peek('"""') or self._peek("'''"):
            self._multiline(self.t[self.pos : self.pos + 3])
        elif self._peek('"'):
            self._basic_string()
        elif self._peek("'"):
            self._literal_string()
        elif self._peek("["):
            self._advance()
            index = 0
            while True:
                self._blank()
                if self._peek("]"):
                    self._advance()
                    return
                self._record((*loc, index))
                self._value((*loc, index))
                self._blank()
                if self._peek(","):
                    self._advance()
                index += 1
        elif self._peek("{"):
            self._advance()
            while True:
                self._ws()
                if self._peek("}"):
                    self._advance()
                    return
                key = self._key()
                self._ws()
                self._advance()  # "="
                self._ws()
                full = (*loc, *key)
                self._record(full)
                self._value(full)
                self._ws()
                if self._peek(","):
                    self._advance()
        else:
            m = re.compile(r"[^,\]}#\n]*").match(self.t, self.pos)
            assert m is not None
            self.scalars.setdefault(loc, m.group(0).strip())
            self.pos = m.end()
