"""vault._sealc, the batched HMAC-SHA256, keyed BLAKE2b and AES-256-GCM loops over
libcrypto: built where it can be, equal to published test vectors, equal byte for byte to
vault._aead's Python loops, opened by pyca/cryptography under the reference associated
data, and running without the GIL."""

from __future__ import annotations

import hashlib
import hmac
import os
import sysconfig
import threading
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from vault import _aead, blind_index, crypto

_sealc = pytest.importorskip("vault._sealc") if _aead.NATIVE else None


def _can_build() -> bool:
    """A C compiler, Python's headers and OpenSSL's: what the install needs to build it."""
    include = Path(sysconfig.get_paths()["include"])
    cc = str(sysconfig.get_config_var("CC") or "cc").split()[0]
    from shutil import which

    return (include / "Python.h").exists() and which(cc) is not None and any(
        Path(d, "openssl", "evp.h").exists() for d in ("/usr/include", "/usr/local/include"))


def test_the_install_built_the_native_loops_where_it_could() -> None:
    """Not a silent fallback: where the install had what it needs, the module is there."""
    if not _can_build():
        pytest.skip("no C compiler, Python headers or OpenSSL headers here")
    assert _aead.NATIVE, "pip install did not build vault._sealc (see its build log)"


@pytest.fixture(params=["native", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each recipe test runs on both paths."""
    if request.param == "native" and not _aead.NATIVE:
        pytest.skip("vault._sealc not built")
    monkeypatch.setattr(_aead, "NATIVE", request.param == "native")
    return str(request.param)


# RFC 4231, test cases 1, 2, 4 and 6 (6: a key longer than the block, hashed first)
RFC4231 = [
    ("0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    ("4a656665", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ("0102030405060708090a0b0c0d0e0f10111213141516171819", bytes([0xcd] * 50),
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    ("aa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
]


@pytest.mark.parametrize(("key", "data", "mac"), RFC4231)
def test_hmac_matches_rfc_4231(path: str, key: str, data: bytes, mac: str) -> None:
    k = bytes.fromhex(key)
    assert _aead.hmac_each(k, [data]) == [bytes.fromhex(mac)]
    # the prefix is part of the message: any split gives the same MAC
    assert _aead.hmac_each(k, [data[7:], None, data[7:]], data[:7], 16) == \
        [bytes.fromhex(mac)[:16], None, bytes.fromhex(mac)[:16]]


# The GCM specification's test case 16 (McGrew and Viega): AES-256, 96-bit IV, with AAD
GCM16 = dict(
    key="feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
    iv="cafebabefacedbaddecaf888",
    pt="d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
       "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
    aad="feedfacedeadbeeffeedfacedeadbeefabaddad2",
    ct="522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
       "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
    tag="76fc6ece0f4e1768cddf8853bb2d551b",
)


@pytest.mark.skipif(not _aead.NATIVE, reason="vault._sealc not built")
def test_gcm_matches_the_specifications_test_case_16() -> None:
    v = {k: bytes.fromhex(x) for k, x in GCM16.items()}
    want = v["iv"] + v["ct"] + v["tag"]
    assert _sealc.gcm_seal(v["key"], v["iv"], [v["pt"]], v["aad"], [], b"") == [want]
    # one key per message, the same key twice; the AAD cut anywhere between head and tail
    assert _sealc.gcm_seal(v["key"] * 2, v["iv"] * 2, [v["pt"]] * 2, v["aad"][:5], [],
                           v["aad"][5:]) == [want, want]
    # and pyca/cryptography agrees with the vector
    assert AESGCM(v["key"]).encrypt(v["iv"], v["pt"], v["aad"]) == v["ct"] + v["tag"]


ids = st.integers(min_value=-2**63, max_value=2**63 - 1)  # the C writes their decimals itself


@pytest.mark.skipif(not _aead.NATIVE, reason="vault/_sealc.c not built")
def test_the_decimal_ids_of_the_associated_data_at_every_width_and_sign() -> None:
    """The ids in a record's associated data are Python's ``str`` of them, at each number of
    digits, at the int64 limits (no overflow at -2**63) and at powers of ten."""
    edge = [0, 9, 10, 99, 100, -1, -9, -10, 2**63 - 1, -2**63, -2**63 + 1,
            *(10**k for k in range(19)), *(10**k - 1 for k in range(1, 19)),
            *(-(10**k) for k in range(19))]
    keys = crypto.new_subject_keys(len(edge))
    sealed = crypto.seal_records(keys, 3, edge, edge[::-1], "a,b", [b"x"] * len(edge))
    for k, blob, r, s in zip(keys, sealed, edge, edge[::-1], strict=True):
        assert AESGCM(k).decrypt(blob[:12], blob[12:], crypto.record_ad(3, r, s, "a,b")) == b"x"


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.tuples(st.binary(max_size=200), ids, ids), max_size=25),
       dataset=st.integers(min_value=0, max_value=10**6),
       fields=st.text(min_size=1, max_size=30))
def test_records_open_under_the_reference_associated_data(
        rows: list[tuple[bytes, int, int]], dataset: int, fields: str) -> None:
    """Both paths seal what pyca/cryptography opens under ``crypto.record_ad``, each row
    under its own key; a wrapped key under ``subject_key_ad``."""
    for native in ([True, False] if _aead.NATIVE else [False]):
        saved, _aead.NATIVE = _aead.NATIVE, native
        try:
            keys = crypto.new_subject_keys(len(rows))
            payloads = [p for p, _, _ in rows]
            rids, sids = [r for _, r, _ in rows], [s for _, _, s in rows]
            sealed = crypto.seal_records(keys, dataset, rids, sids, fields, payloads)
            wrap = os.urandom(32)
            wrapped = crypto.wrap_subject_keys(wrap, 7, dataset, sids, keys)
        finally:
            _aead.NATIVE = saved
        for k, blob, (p, r, s) in zip(keys, sealed, rows, strict=True):
            assert len(blob) == 12 + len(p) + 16
            assert AESGCM(k).decrypt(blob[:12], blob[12:],
                                     crypto.record_ad(dataset, r, s, fields)) == p
        for k, w, s in zip(keys, wrapped, sids, strict=True):
            assert AESGCM(wrap).decrypt(w[:12], w[12:], crypto.subject_key_ad(dataset, s, 7)) == k
        assert len({blob[:12] for blob in sealed}) == len(sealed)  # fresh nonces


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.binary(max_size=80)), max_size=40),
       key=st.binary(min_size=1, max_size=100), prefix=st.binary(max_size=70),
       size=st.integers(min_value=1, max_value=32))
def test_hmac_paths_agree_with_the_standard_library(values: list[bytes | None], key: bytes,
                                                    prefix: bytes, size: int) -> None:
    want = [hmac.new(key, prefix + v, hashlib.sha256).digest()[:size] if v is not None else None
            for v in values]
    saved = _aead.NATIVE
    try:
        for native in ([True, False] if saved else [False]):
            _aead.NATIVE = native
            assert _aead.hmac_each(key, values, prefix, size) == want
    finally:
        _aead.NATIVE = saved


# The BLAKE2 reference's keyed known answer (blake2b-kat.txt, first entry): key 00..3f,
# the empty message, 64 bytes out.
BLAKE2B_KAT = ("10ebb67700b1868efb4417987acf4690ae9d972fb7a590c2f02871799aaa4786"
               "b5e996e8f0f4eb981fc214b005f42d2ff4233499391653df7aefcbc13fc51568")


@pytest.mark.skipif(not _aead.NATIVE, reason="vault._sealc not built")
def test_keyed_blake2b_matches_the_reference_known_answer() -> None:
    key = bytes(range(64))
    assert _sealc.blake2b_keyed(key, [b""], 64) == [bytes.fromhex(BLAKE2B_KAT)]
    # a 16-byte digest is its own function (the size is a parameter), not a cut of this
    assert _sealc.blake2b_keyed(key, [b""], 16) != [bytes.fromhex(BLAKE2B_KAT)[:16]]
    assert _aead.BLAKE2B_NATIVE  # this libcrypto has it, so fingerprints use it


@settings(max_examples=40, deadline=None)
@given(messages=st.lists(st.binary(max_size=400), max_size=40),
       key=st.binary(min_size=1, max_size=64), size=st.integers(min_value=1, max_value=64))
def test_fingerprint_paths_agree_with_the_standard_library(messages: list[bytes], key: bytes,
                                                           size: int) -> None:
    """Every key and digest size the C loop takes gives hashlib's bytes, one message after
    another under one key (the MAC restarted per message); and the fingerprints an ingest
    stores are the same on both paths."""
    want = [hashlib.blake2b(m, key=key, digest_size=size).digest() for m in messages]
    if _sealc is not None:
        assert _sealc.blake2b_keyed(key, messages, size) == want
    fingerprints = [hashlib.blake2b(m, key=key, digest_size=16).digest() for m in messages]
    saved = _aead.NATIVE
    try:
        for native in ([True, False] if saved else [False]):
            _aead.NATIVE = native
            assert _aead.keyed_fingerprints(key, messages) == fingerprints
    finally:
        _aead.NATIVE = saved


@settings(max_examples=40, deadline=None)
@given(head=st.binary(max_size=100), tag=st.binary(max_size=3),
       blobs=st.lists(st.binary(max_size=300), max_size=40))
def test_framed_sha256_paths_agree_with_the_standard_library(head: bytes, tag: bytes,
                                                             blobs: list[bytes]) -> None:
    h = hashlib.sha256(head)
    for b in blobs:
        h.update(tag + len(b).to_bytes(8, "big") + b)
    saved = _aead.NATIVE
    try:
        for native in ([True, False] if saved else [False]):
            _aead.NATIVE = native
            assert _aead.sha256_framed(head, tag, blobs) == h.digest()
    finally:
        _aead.NATIVE = saved


@settings(max_examples=60, deadline=None)
@given(pieces=st.lists(st.binary(max_size=90).map(lambda b: b.replace(b",", b"")), min_size=1,
                       max_size=30))
def test_crc32_of_pieces_agrees_with_zlib_on_both_paths(pieces: list[bytes]) -> None:
    """The bucket layout's row checksums (every length, so every tail of the eight-byte
    steps), as ``zlib.crc32`` gives them, on both paths."""
    import zlib

    text = b",".join(pieces)
    saved = _aead.NATIVE
    try:
        for native in ([True, False] if saved else [False]):
            _aead.NATIVE = native
            got = _aead.crc32_pieces(text, b",", len(pieces))
            assert got.dtype == np.int64
            assert got.tolist() == [zlib.crc32(p) for p in pieces]
            with pytest.raises(ValueError, match="pieces"):
                _aead.crc32_pieces(text, b",", len(pieces) + 1)
    finally:
        _aead.NATIVE = saved


def test_a_batch_digest_is_its_documented_framing() -> None:
    """crypto.batch_digest, written out: the domain tag, each column blob by name, then
    each record blob, length-prefixed (what ledger entries and verifiers hold)."""
    cols = {"party": os.urandom(50), "county": os.urandom(70)}
    recs = [os.urandom(n) for n in (0, 5, 5, 300)]
    h = hashlib.sha256(b"civicvault/batch-data/v1")
    for name in ("county", "party"):
        h.update(b"C" + len(name).to_bytes(4, "big") + name.encode())
        h.update(len(cols[name]).to_bytes(8, "big") + cols[name])
    for r in recs:
        h.update(b"R" + len(r).to_bytes(8, "big") + r)
    assert crypto.batch_digest(cols, recs) == h.hexdigest()
    assert crypto.batch_digest({}, []) == hashlib.sha256(b"civicvault/batch-data/v1").hexdigest()


def test_blind_digests_are_the_same_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    import polars as pl

    values = pl.Series(["(919) 555-0101", None, " ", "9195550101", "+1 919 555 0199"])
    key = os.urandom(32)
    monkeypatch.setattr(_aead, "NATIVE", False)
    slow = blind_index.digests(key, "phone", values, "phone")
    monkeypatch.setattr(_aead, "NATIVE", _sealc is not None)
    assert blind_index.digests(key, "phone", values, "phone") == slow
    assert slow[1] is None and slow[2] is None and slow[0] == slow[3] != slow[4]


@pytest.mark.skipif(not _aead.NATIVE, reason="vault._sealc not built")
def test_bad_arguments_are_refused_not_misread() -> None:
    k, n = os.urandom(32), os.urandom(12)
    with pytest.raises(ValueError, match="one 32-byte key"):
        _sealc.gcm_seal(k[:16], n, [b"x"], b"", [], b"")
    with pytest.raises(ValueError, match="one 12-byte nonce"):
        _sealc.gcm_seal(k, n * 2, [b"x"], b"", [], b"")
    with pytest.raises(TypeError, match="expected bytes"):
        _sealc.gcm_seal(k, n, ["x"], b"", [], b"")
    with pytest.raises(ValueError, match="one int64 per message"):
        _sealc.gcm_seal(k, n, [b"x"], b"", [np.arange(2, dtype=np.int64)], b"")
    with pytest.raises(ValueError, match="one int64 per message"):
        _sealc.gcm_seal(k, n, [b"x"], b"", [np.arange(1, dtype=np.int32)], b"")
    with pytest.raises(ValueError, match="out_len"):
        _sealc.hmac_sha256(k, b"", [b"x"], 33)
    with pytest.raises(TypeError, match="expected bytes"):
        _sealc.hmac_sha256(k, b"", [None, 3], 16)
    with pytest.raises(TypeError, match="expected bytes"):
        _sealc.sha256_framed(b"", b"R", [b"x", None])
    for size, key in ((0, k), (65, k), (16, b""), (16, bytes(65))):
        with pytest.raises(ValueError, match=r"1\.\.64 bytes"):
            _sealc.blake2b_keyed(key, [b"x"], size)
    with pytest.raises(TypeError, match="expected bytes"):
        _sealc.blake2b_keyed(k, [b"x", None], 16)
    assert _sealc.blake2b_keyed(k, [], 16) == []
    assert _sealc.gcm_seal(k, b"", [], b"", [], b"") == []
    with pytest.raises(ValueError, match="differ in length"):
        _aead.seal_int_ads([k, k], [b"x"], b"", [], b"")


@pytest.mark.skipif(not _aead.NATIVE, reason="vault._sealc not built")
@pytest.mark.parametrize("loop", ["hmac_sha256", "blake2b_keyed"])
def test_the_loops_let_other_threads_run(loop: str) -> None:
    """An ingest's writer thread runs while its sealing thread is inside these loops: a
    thread that wakes every millisecond (and needs the GIL to note the time) wakes during
    the call. Were the GIL held, no wake-up could fall inside it."""
    import time

    messages = [os.urandom(64) for _ in range(1_000_000)]
    call = {"hmac_sha256": lambda: _sealc.hmac_sha256(b"k" * 32, b"", messages, 16),
            "blake2b_keyed": lambda: _sealc.blake2b_keyed(b"k" * 32, messages, 16)}[loop]
    woke: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            time.sleep(0.001)
            woke.append(time.perf_counter())

    t = threading.Thread(target=tick)
    t.start()
    try:
        time.sleep(0.05)
        start = time.perf_counter()
        call()
        end = time.perf_counter()
    finally:
        stop.set()
        t.join()
    assert end - start > 0.1  # long enough to tell
    inside = [w for w in woke if start + 0.02 < w < end - 0.02]
    assert len(inside) >= 5, (len(inside), end - start)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(min_value=-2**63, max_value=2**63 - 1),
                               st.integers(min_value=0, max_value=2),
                               st.one_of(st.none(), st.binary(max_size=70))), max_size=30),
       middles=st.lists(st.binary(max_size=12).map(lambda b: b.replace(b",", b"")),
                        min_size=3, max_size=3),
       with_codes=st.booleans())
def test_text_rows_are_the_bucket_layouts_row_texts_on_both_paths(
        rows: list[tuple[int, int, bytes | None]], middles: list[bytes],
        with_codes: bool) -> None:
    """``str(int) || middle || HEX(blob)`` joined by commas, and where each row ends, as
    the formula gives them: at every width and sign of the int, with and without codes
    and blobs (``vault.bucket_rows`` lays out the database's row texts with it)."""
    ints = np.array([r[0] for r in rows], dtype=np.int64)
    codes = np.array([r[1] for r in rows], dtype=np.int64) if with_codes else None
    with_blobs = all(r[2] is not None for r in rows)
    blobs = [r[2] or b"" for r in rows]
    data = b"".join(blobs) if with_blobs else None
    offsets = (np.concatenate(([0], np.cumsum([len(b) for b in blobs]))).astype(np.int64)
               if with_blobs else None)
    want = [b"%d%s%s" % (v, middles[c if with_codes else 0],
                         b.hex().upper().encode() if with_blobs else b"")
            for v, c, b in zip(ints.tolist(), [r[1] for r in rows], blobs, strict=True)]
    saved = _aead.NATIVE
    try:
        for native in ([True, False] if saved else [False]):
            _aead.NATIVE = native
            text, ends = _aead.text_rows(ints, middles, codes, data, offsets)
            assert text == b",".join(want)
            assert ends.dtype == np.int64
            assert ends.tolist() == [sum(len(w) + 1 for w in want[:i + 1]) - 1
                                     for i in range(len(want))]
    finally:
        _aead.NATIVE = saved


@pytest.mark.skipif(not _aead.NATIVE, reason="vault/_sealc.c not built")
def test_text_rows_refuse_codes_and_offsets_outside_what_they_index() -> None:
    """A bad code or offset is a ValueError, not a read outside the buffers."""
    assert _sealc is not None
    ints = np.arange(3, dtype=np.int64)
    with pytest.raises(ValueError, match="names no middle"):
        _sealc.text_rows(ints, [b":"], np.array([0, 1, 0], dtype=np.int64), None, None)
    with pytest.raises(ValueError, match="outside the data"):
        _sealc.text_rows(ints, [b":"], None, b"abc", np.array([0, 1, 2, 9], dtype=np.int64))
    with pytest.raises(ValueError, match="offsets outside the data"):
        _sealc.text_rows(ints, [b":"], None, b"abc", np.array([0, 2, 1, 3], dtype=np.int64))
    with pytest.raises(ValueError, match="one int64 per row"):
        _sealc.text_rows(ints, [b":"], None, b"abc", np.array([0, 1, 2], dtype=np.int64))
    with pytest.raises(ValueError, match="at least one middle"):
        _sealc.text_rows(ints, [], None, None, None)
