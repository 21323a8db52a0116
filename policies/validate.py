"""The one strict parser for numbers and names that callers type.

Used by the CLI, the HTTP API, policy files and the vault operations behind them,
so the same text is accepted or refused everywhere, with the same message. Every
refusal is :class:`~ledger.errors.BadInput` (exit 2) and never quotes the input:
what a caller typed may be PII.

Numbers (:func:`parse_decimal`, :func:`parse_fraction`, :func:`parse_float`,
:func:`parse_int`): ASCII decimal or scientific notation only
(``0.5``, ``1``, ``-3``, ``2.5e-3``, ``1E6``, ``.5``). No surrounding or inner
spaces, no underscores or other digit grouping, no other scripts' digits, no
``inf``/``nan``/hex, at most :data:`MAX_NUMBER_CHARS` characters and an exponent
within +-:data:`MAX_EXPONENT`; then finite and inside the caller's range. Budgets
get an exact :class:`~fractions.Fraction`, never a float on the way.

Names (:func:`parse_name`), one character set and length per kind:

============  =================================  ======  ==============
kind          characters                         length  reserved names
============  =================================  ======  ==============
``dataset``   ASCII letters, digits, ``_ . -``;  1-128   refused
              starts with a letter or digit,
              does not end with ``.``
``principal`` lowercase ASCII letters, digits,   1-64    refused
              ``_ . -``; starts with a letter
              or digit, does not end with ``.``
``column``    printable characters (Python's     1-256   ``.``/``..``
              ``str.isprintable``) and spaces,
              no leading or trailing space
============  =================================  ======  ==============

Reserved names are ``.``, ``..`` and the Windows device names ``CON``, ``PRN``,
``AUX``, ``NUL``, ``COM1``-``COM9``, ``LPT1``-``LPT9`` in any letter case, alone or
with an extension (``con.csv``): dataset and principal names end up in file names
of exports and reports.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Literal

from ledger.errors import BadInput

MAX_NUMBER_CHARS = 64
MAX_EXPONENT = 400
NameKind = Literal["dataset", "principal", "column"]

_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"-?[0-9]+")
_NAMES: dict[str, tuple[re.Pattern[str], str]] = {
    "dataset": (re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9_-])?"),
                "1-128 ASCII letters, digits, '_', '.' or '-', starting with a letter or "
                "digit and not ending with '.'"),
    "principal": (re.compile(r"[a-z0-9](?:[a-z0-9_.-]{0,62}[a-z0-9_-])?"),
                  "1-64 lowercase ASCII letters, digits, '_', '.' or '-', starting with a "
                  "letter or digit and not ending with '.'"),
    "column": (re.compile(r"[^\x00-\x1f\x7f-\x9f\ud800-\udfff\s]"
                          r"(?:[^\x00-\x1f\x7f-\x9f\ud800-\udfff]{0,254}"
                          r"[^\x00-\x1f\x7f-\x9f\ud800-\udfff\s])?"),
               "1-256 printable characters or spaces, without leading or trailing "
               "spaces"),
}
RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)}
    | {f"LPT{i}" for i in range(1, 10)}
)


def _bad(what: str, why: str) -> BadInput:
    return BadInput(f"{what} {why}")


def parse_decimal(text: object, *, what: str = "number", minimum: Decimal | int | None = None,
                  maximum: Decimal | int | None = None, above: Decimal | int | None = None,
                  ) -> Decimal:
    """``text`` as an exact, finite Decimal within [minimum, maximum] (and > ``above``)."""
    if not isinstance(text, str):
        raise _bad(what, "must be given as text")
    if len(text) > MAX_NUMBER_CHARS:
        raise _bad(what, f"is longer than {MAX_NUMBER_CHARS} characters")
    if not _NUMBER.fullmatch(text):  # re.fullmatch with [0-9]: ASCII digits only
        raise _bad(what, "must be a plain ASCII decimal number such as 0.5 or 2e-3 "
                         "(no spaces, underscores or other digits)")
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid literals
        raise _bad(what, "is not a number") from None
    if not value.is_finite() or abs(value.adjusted()) > MAX_EXPONENT:
        raise _bad(what, "is out of range")
    if value.is_zero():
        value = Decimal(0)  # -0 and 0e5 are 0
    if minimum is not None and value < minimum:
        raise _bad(what, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise _bad(what, f"must be at most {maximum}")
    if above is not None and value <= above:
        raise _bad(what, f"must be > {above}")
    return value


def parse_fraction(text: object, *, what: str = "number", minimum: Decimal | int | None = None,
                   maximum: Decimal | int | None = None, above: Decimal | int | None = None,
                   ) -> Fraction:
    """Like :func:`parse_decimal`, exact as a Fraction (budgets, epsilons)."""
    return Fraction(parse_decimal(text, what=what, minimum=minimum, maximum=maximum,
                                  above=above))


def parse_float(text: object, *, what: str = "number", minimum: Decimal | int | None = None,
                maximum: Decimal | int | None = None, above: Decimal | int | None = None,
                ) -> float:
    """Like :func:`parse_decimal`, as the nearest float (still finite and in range)."""
    value = float(parse_decimal(text, what=what, minimum=minimum, maximum=maximum, above=above))
    if value != value or value in (float("inf"), float("-inf")):
        raise _bad(what, "is out of range")
    return value


def parse_int(text: object, *, what: str = "integer", minimum: int | None = None,
              maximum: int | None = None) -> int:
    """``text`` as an int: ASCII digits with an optional leading '-', within range."""
    if not isinstance(text, str):
        raise _bad(what, "must be given as text")
    if len(text) > MAX_NUMBER_CHARS or not _INTEGER.fullmatch(text):
        raise _bad(what, "must be a plain ASCII integer such as 5 (no spaces, underscores "
                         "or other digits)")
    value = int(text)
    if minimum is not None and value < minimum:
        raise _bad(what, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise _bad(what, f"must be at most {maximum}")
    return value


def number_value(value: object, *, what: str = "number", minimum: Decimal | int | None = None,
                 maximum: Decimal | int | None = None, above: Decimal | int | None = None,
                 ) -> Decimal:
    """A number that arrived already typed (JSON, TOML): int, float or Decimal, same checks.

    Floats go through their shortest repr, so ``0.1`` is the Decimal ``0.1``."""
    if isinstance(value, bool):
        raise _bad(what, "must be a number, not true/false")
    if isinstance(value, int):
        if value.bit_length() > 200:
            raise _bad(what, "is out of range")
        text = str(value)
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise _bad(what, "must be a finite number")
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise _bad(what, "must be a number")
    if text in ("inf", "-inf", "nan"):
        raise _bad(what, "must be a finite number")
    return parse_decimal(text, what=what, minimum=minimum, maximum=maximum, above=above)


def is_reserved(name: str) -> bool:
    """``.``, ``..`` or a Windows device name (any case, with or without an extension)."""
    if name in (".", ".."):
        return True
    stem = name.split(".", 1)[0].rstrip(" ").upper()
    return stem in RESERVED_NAMES


def parse_name(text: object, kind: NameKind, *, what: str | None = None) -> str:
    """``text`` if it is a valid ``kind`` name (see the module docstring), else BadInput."""
    label = what or f"{kind} name"
    pattern, rule = _NAMES[kind]
    if not isinstance(text, str) or not pattern.fullmatch(text) or (
            kind == "column" and not all(ch.isprintable() or ch == " " for ch in text)):
        raise BadInput(f"invalid {label}: use {rule}")
    if is_reserved(text) and (kind != "column" or text in (".", "..")):
        raise _bad(label, "is a reserved name (., .., CON, PRN, AUX, NUL, COM1-9, LPT1-9, "
                          "in any case and with any extension)")
    return text


def parse_names(texts: list[str] | tuple[str, ...], kind: NameKind, *,
                what: str | None = None) -> tuple[str, ...]:
    """Each of ``texts`` through :func:`parse_name`."""
    return tuple(parse_name(t, kind, what=what) for t in texts)


def int_arg(what: str, *, minimum: int | None = None,
            maximum: int | None = None) -> Callable[[object], int]:
    """A parser for an integer option (CLI ``parser=``, API ``BeforeValidator``).

    Text goes through :func:`parse_int`; an int that is already typed (a default, a
    JSON number) is range-checked only."""

    def parse(value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return parse_int(str(value), what=what, minimum=minimum, maximum=maximum)
        return parse_int(value, what=what, minimum=minimum, maximum=maximum)

    return parse


def fingerprint(text: str) -> str:
    """What to record of free-form input instead of the input: its length and a hash prefix."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"<{len(text)} chars, sha256 {digest}>"


def safe_name(text: str, kind: NameKind) -> str:
    """``text`` if it is a valid ``kind`` name, else its :func:`fingerprint` (for ledgers, logs)."""
    try:
        return parse_name(text, kind)
    except BadInput:
        return fingerprint(text)
