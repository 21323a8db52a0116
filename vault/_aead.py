"""Cryptographic primitives. Private: only ``vault.crypto``, ``vault.keys`` and
``vault.blind_index`` import this module; flows and the CLI use the recipes.

AES-256-GCM with random 96-bit nonces (callers count messages per key and rotate
well before 2**32), HMAC-SHA256 for blind indexes. Associated data is always
built by :func:`associated_data`, a length-prefixed, domain-separated encoding,
so no two different contexts can produce the same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

try:  # the batched loops over libcrypto (vault/_sealc.c), built at install where possible
    from vault import _sealc
except ImportError:  # pragma: no cover - no C compiler or OpenSSL headers at install
    _sealc = None  # type: ignore[assignment]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
# Random nonces: keep the collision probability under 2**-32 (NIST SP 800-38D 8.3).
MAX_MESSAGES_PER_KEY = 2**31

_AD_DOMAIN = b"civicvault/aead/v1"

# The bulk recipes below (``hmac_each``, ``seal_int_ads``) run in ``vault._sealc`` when it
# was built: the same bytes as the Python loops here (tests/test_sealc.py compares them
# and checks both against published vectors), ~3-4x less CPU, and without the GIL, so an
# ingest's writer thread runs beside them. False: the Python loops (benchmarks compare).
NATIVE = _sealc is not None


def _openssl_blake2b() -> bool:
    """Whether libcrypto offers keyed BLAKE2b (not under a FIPS-only provider, say) and
    gives hashlib's bytes; else the fingerprints stay with hashlib's loop."""
    if _sealc is None:
        return False
    try:
        got = _sealc.blake2b_keyed(b"civicvault", [b"", b"x" * 300], 16)
    except RuntimeError:
        return False
    return got == [hashlib.blake2b(m, key=b"civicvault", digest_size=16).digest()
                   for m in (b"", b"x" * 300)]


BLAKE2B_NATIVE = _openssl_blake2b()


class DecryptionFailed(Exception):
    """Authentication failed: wrong key, wrong context, or tampered bytes."""


def random_key() -> bytes:
    return os.urandom(KEY_BYTES)


def random_keys(n: int) -> list[bytes]:
    """``n`` independent random keys from one OS call."""
    pool = os.urandom(KEY_BYTES * n)
    return [pool[i : i + KEY_BYTES] for i in range(0, KEY_BYTES * n, KEY_BYTES)]


def associated_data(*parts: str | int) -> bytes:
    """Length-prefixed, domain-separated encoding of a ciphertext's context."""
    out = [_AD_DOMAIN]
    for part in parts:
        raw = str(part).encode("utf-8")
        out.append(struct.pack(">I", len(raw)))
        out.append(raw)
    return b"".join(out)


def ad_prefix(*parts: str | int) -> bytes:
    """:func:`associated_data` of the leading parts, to extend with :func:`ad_part`."""
    return associated_data(*parts)


def ad_part(part: str | int) -> bytes:
    """One more length-prefixed part: ``ad_prefix(a) + ad_part(b) == associated_data(a, b)``."""
    raw = str(part).encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


def ad_int_parts(values: Iterable[int]) -> list[bytes]:
    """:func:`ad_part` of many integers (ids), without a call per value."""
    out: list[bytes] = []
    append = out.append
    for raw in map(str.encode, map(str, values)):
        append(_LEN_PREFIX[len(raw)] + raw)
    return out


_LEN_PREFIX = [n.to_bytes(4, "big") for n in range(32)]  # an int64 has at most 20 digits


def seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """nonce || ciphertext || tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, ad)


def open_(key: bytes, sealed: bytes, ad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], ad)
    except (InvalidTag, ValueError):
        raise DecryptionFailed() from None


def seal_many_one_key(key: bytes, plaintexts: Sequence[bytes], ads: Sequence[bytes]) -> list[bytes]:
    """Seal many messages under one key: one cipher object, one nonce draw."""
    encrypt = AESGCM(key).encrypt
    n = len(plaintexts)
    if len(ads) != n:
        raise ValueError("plaintexts and associated data differ in length")
    pool = os.urandom(NONCE_BYTES * n)
    nonces = [pool[i : i + NONCE_BYTES] for i in range(0, NONCE_BYTES * n, NONCE_BYTES)]
    return [nonce + encrypt(nonce, p, a)
            for nonce, p, a in zip(nonces, plaintexts, ads, strict=True)]


def seal_each_own_key(
    keys: Sequence[bytes], plaintexts: Sequence[bytes], ads: Sequence[bytes]
) -> list[bytes]:
    """Seal message i under key i (per-subject keys), one nonce draw for all."""
    n = len(plaintexts)
    if not (len(keys) == len(ads) == n):
        raise ValueError("keys, plaintexts and associated data differ in length")
    pool = os.urandom(NONCE_BYTES * n)
    nonces = [pool[i : i + NONCE_BYTES] for i in range(0, NONCE_BYTES * n, NONCE_BYTES)]
    aes = AESGCM
    return [nonce + aes(k).encrypt(nonce, p, a)
            for k, nonce, p, a in zip(keys, nonces, plaintexts, ads, strict=True)]


def open_many_one_key(key: bytes, sealed: Sequence[bytes], ads: Sequence[bytes]) -> list[bytes]:
    aes = AESGCM(key)
    out = []
    try:
        for blob, ad in zip(sealed, ads, strict=True):
            out.append(aes.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], ad))
    except (InvalidTag, ValueError):
        raise DecryptionFailed() from None
    return out


def open_each_own_key(
    keys: Sequence[bytes], sealed: Sequence[bytes], ads: Sequence[bytes]
) -> list[bytes]:
    """Open message i under key i (per-subject keys)."""
    aes = AESGCM
    out: list[bytes] = []
    append = out.append
    try:
        for k, blob, ad in zip(keys, sealed, ads, strict=True):
            append(aes(k).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], ad))
    except (InvalidTag, ValueError):
        raise DecryptionFailed() from None
    return out


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def _hmac_state(key: bytes, prefix: bytes) -> Any:
    """A keyed HMAC-SHA256 state that has absorbed ``prefix``.

    OpenSSL's C object when CPython exposes it (``copy``/``update``/``digest``
    then cost no Python frames: ~0.7 us per message instead of ~1.1 us);
    otherwise the ``hmac`` module's wrapper, which computes the same bytes.
    """
    try:
        import _hashlib

        return _hashlib.hmac_new(key, prefix, digestmod="sha256")
    except (ImportError, AttributeError, ValueError):  # pragma: no cover - non-OpenSSL builds
        return hmac.new(key, prefix, digestmod=hashlib.sha256)


def hmac_many(key: bytes, messages: Iterable[bytes], prefix: bytes = b"") -> list[bytes]:
    """HMAC-SHA256(key, prefix || m) of many messages, reusing the keyed state."""
    copy = _hmac_state(key, prefix).copy
    out: list[bytes] = []
    append = out.append
    for m in messages:
        h = copy()
        h.update(m)
        append(h.digest())
    return out


def hmac_each(key: bytes, messages: Sequence[bytes | None], prefix: bytes = b"",
              size: int = 32) -> list[bytes | None]:
    """HMAC-SHA256(key, prefix || m)[:size] of each message; None stays None."""
    if NATIVE:
        assert _sealc is not None
        return _sealc.hmac_sha256(key, prefix, messages, size)
    macs = iter(hmac_many(key, (m for m in messages if m is not None), prefix))
    return [next(macs)[:size] if m is not None else None for m in messages]


IntArray = np.ndarray[Any, np.dtype[np.int64]]


def seal_int_ads(keys: bytes | Sequence[bytes], plaintexts: Sequence[bytes], ad_head: bytes,
                 ad_ints: Sequence[Sequence[int] | IntArray], ad_tail: bytes) -> list[bytes]:
    """Seal message i with associated data ``ad_head || ad_part(ints[0][i]) || ... ||
    ad_tail`` under ``keys[i]``, or under ``keys`` if it is one key (bytes); one nonce
    draw for all. With ``ad_head`` from :func:`ad_prefix` and ``ad_tail`` from
    :func:`ad_part`, that is :func:`associated_data` of the parts in order."""
    n = len(plaintexts)
    cols = [np.ascontiguousarray(a, dtype=np.int64) for a in ad_ints]
    if any(len(a) != n for a in cols):
        raise ValueError("plaintexts and associated data differ in length")
    one = keys if isinstance(keys, bytes) else None
    many = None if isinstance(keys, bytes) else list(keys)
    if many is not None and len(many) != n:
        raise ValueError("keys, plaintexts and associated data differ in length")
    if NATIVE:
        assert _sealc is not None
        key_bytes = b"".join(many) if many is not None else one
        assert key_bytes is not None
        return _sealc.gcm_seal(key_bytes, os.urandom(NONCE_BYTES * n), plaintexts, ad_head, cols,
                               ad_tail)
    parts = [ad_int_parts(a.tolist()) for a in cols]
    ads = ([ad_head + b"".join(p) + ad_tail for p in zip(*parts, strict=True)] if parts
           else [ad_head + ad_tail] * n)
    if many is None:
        assert one is not None
        return seal_many_one_key(one, plaintexts, ads)
    return seal_each_own_key(many, plaintexts, ads)


def keyed_fingerprints(key: bytes, messages: Sequence[bytes]) -> list[bytes]:
    """Keyed BLAKE2b-128 of each message (change detection, not lookup). Natively, the
    loop runs without the GIL: an ingest computes them on a helper thread."""
    if NATIVE and BLAKE2B_NATIVE:
        assert _sealc is not None
        return _sealc.blake2b_keyed(key, messages, 16)
    copy = hashlib.blake2b(key=key, digest_size=16).copy
    out: list[bytes] = []
    append = out.append
    for m in messages:
        h = copy()
        h.update(m)
        append(h.digest())
    return out


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


_LEN64 = struct.Struct(">Q").pack


def sha256_framed(head: bytes, tag: bytes, blobs: Sequence[bytes]) -> bytes:
    """SHA-256 of ``head`` then, for each blob, ``tag || be64(len(blob)) || blob``."""
    if NATIVE:
        assert _sealc is not None
        return _sealc.sha256_framed(head, tag, blobs)
    h = hashlib.sha256(head)
    frames: dict[int, bytes] = {}  # the few distinct lengths' frames, built once each
    parts: list[bytes] = []
    for blob in blobs:
        frame = frames.get(len(blob))
        if frame is None:
            frame = frames[len(blob)] = tag + _LEN64(len(blob))
        parts += (frame, blob)
    h.update(b"".join(parts))
    return h.digest()


def text_rows(ints: IntArray, middles: Sequence[bytes], codes: IntArray | None,
              data: Any, offsets: IntArray | None) -> tuple[bytes, IntArray]:
    """Rows ``str(ints[i]) || middles[codes[i]] || HEX(data[offsets[i]:offsets[i + 1]])``
    (upper-case hex; ``codes`` None: ``middles[0]``; ``data`` None: no hex part), joined
    by ``,``; and ``ends[i]``, where row i ends in that text."""
    n = len(ints)
    if codes is not None and len(codes) != n:
        raise ValueError("ints and codes differ in length")
    if NATIVE:
        assert _sealc is not None
        text, where = _sealc.text_rows(ints, middles, codes, data, offsets)
        return text, np.frombuffer(where, dtype=np.int64)
    mids = [middles[0]] * n if codes is None else [middles[c] for c in codes.tolist()]
    if data is None or offsets is None:
        tails = [b""] * n
    else:
        raw, at = bytes(data), offsets.tolist()
        tails = [raw[at[i]:at[i + 1]].hex().upper().encode("ascii") for i in range(n)]
    rows = [b"%d%s%s" % (v, m, t) for v, m, t in zip(ints.tolist(), mids, tails, strict=True)]
    ends = np.cumsum(np.fromiter(map(len, rows), dtype=np.int64, count=n) + 1) - 1
    return b",".join(rows), ends


def crc32_pieces(text: bytes, sep: bytes, n: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """``zlib.crc32`` of each of the ``n`` pieces of ``text.split(sep)`` (``sep``: one
    byte; ``n``: how many pieces there are)."""
    if NATIVE:
        assert _sealc is not None
        crcs = np.frombuffer(_sealc.crc32_pieces(text, sep[0]), dtype="<u4")
    else:
        crcs = np.fromiter(map(zlib.crc32, text.split(sep)), dtype=np.uint32)
    if len(crcs) != n:
        raise ValueError(f"{len(crcs)} pieces, not {n}")
    return crcs.astype(np.int64)
