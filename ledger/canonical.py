"""RFC 8785 (JSON Canonicalization Scheme): the one encoding of everything hashed or signed.

``canonical_bytes`` takes a fast path through ``orjson`` when the value provably
encodes the same way under RFC 8785: only ``dict`` (with ASCII ``str`` keys, so
UTF-16 and code-point key order agree), ``list``, ``str``, ``bool``, ``None`` and
``int`` within the IEEE-754 safe range. Anything else (floats, non-ASCII keys,
subclasses) goes through Trail of Bits' ``rfc8785`` reference encoder. A
Hypothesis property in the test suite checks that both paths agree.
"""

from __future__ import annotations

from typing import Any

import orjson
import rfc8785

from ledger.errors import BadInput

__all__ = ["canonical_bytes", "encode_plain", "is_plain"]

_MAX_SAFE_INT = 2**53 - 1
_MAX_DEPTH = 64


def _plain_scalar(value: Any) -> bool | None:
    """True/False for scalars; None when ``value`` is a container (or unknown)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-_MAX_SAFE_INT <= value <= _MAX_SAFE_INT)
    if kind is dict or kind is list:
        return None
    return False


def is_plain(value: Any, depth: int = 0) -> bool:
    """True when ``value`` only holds types whose JCS form equals orjson's sorted output."""
    if depth > _MAX_DEPTH:
        return False
    scalar = _plain_scalar(value)
    if scalar is not None:
        return scalar
    items = value.values() if type(value) is dict else value
    if type(value) is dict:
        for key in value:
            if type(key) is not str or not key.isascii():
                return False
    for item in items:
        ok = _plain_scalar(item)
        if ok is None:
            ok = is_plain(item, depth + 1)
        if not ok:
            return False
    return True


def encode_plain(value: Any) -> bytes:
    """JCS bytes of a value the caller knows ``is_plain`` (falls back if it was not)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # e.g. lone surrogates: let the reference decide
        return _reference(value)


def canonical_bytes(value: Any) -> bytes:
    """The RFC 8785 canonical JSON encoding of ``value`` as UTF-8 bytes."""
    if is_plain(value):
        return encode_plain(value)
    return _reference(value)


def _reference(value: Any) -> bytes:
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise BadInput(f"value cannot be canonicalised as JSON ({type(exc).__name__})") from None
