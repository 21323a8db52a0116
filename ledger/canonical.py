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


def is_plain(value: Any, depth: int = 0) -> bool:
    """True when ``value`` only holds types whose JCS form equals orjson's sorted output."""
    kind = type(value)
    if kind is dict:
        for key in value:
            if type(key) is not str or not key.isascii():
                return False
        items = value.values()
    elif kind is list:
        items = value
    else:
        return _plain_scalar(value)
    if depth >= _MAX_DEPTH:
        return False
    for item in items:  # scalars inline: this runs once per ledger entry
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if -_MAX_SAFE_INT <= item <= _MAX_SAFE_INT:
                continue
            return False
        if (kind is dict or kind is list) and is_plain(item, depth + 1):
            continue
        return False
    return True


def _plain_scalar(value: Any) -> bool:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    return kind is int and bool(-_MAX_SAFE_INT <= value <= _MAX_SAFE_INT)


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
