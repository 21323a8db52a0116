"""Ledger verification. PURE: bytes in, verdict out; raises ``LedgerTampered(seq=...)``.

The same code verifies the live database, an export file or a third party's
copy: callers read the entry bytes, this module decides. ``verify_log`` checks,
for every entry, that it parses, that ``seq`` is its position, that ``prev`` is
the leaf hash of the entry before it, and computes the RFC 9162 tree root (and
the roots of requested prefixes, to hold the log against signed checkpoints).

The work is done a chunk at a time with list-level comparisons (one string
compare checks a whole chunk's ``prev`` links); only a chunk that fails is
walked entry by entry to name the first failing entry. A log can be verified
in segments (``LogChecker(start=k, prev=None)``) on several processes and the
segments joined with ``join``.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter

import orjson

from ledger import merkle
from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.errors import BadInput, LedgerTampered, VerificationFailed
from ledger.merkle import EMPTY_ROOT, node_hash, root_of, verify_consistency, verify_inclusion
from ledger.signer import Verifier

__all__ = [
    "GENESIS_PREV_HASH",
    "LogChecker",
    "LogVerdict",
    "join",
    "verify_against_checkpoint",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
    "verify_log",
]

GENESIS_PREV_HASH = bytes(32)
CHUNK = 1 << 14
_HEX256 = re.compile(r"[0-9a-f]{64}")
_SEQ_PREV = itemgetter("seq", "prev")


@dataclass(frozen=True)
class LogVerdict:
    """A verified log segment ``[start, stop)``: its tree root and requested prefix roots.

    For a whole log (``start == 0``) ``root`` is the RFC 9162 root and
    ``prefix_roots[p]`` the root of the first ``p`` entries.
    """

    start: int
    stop: int
    root: bytes
    first_prev: bytes | None
    last_leaf: bytes | None
    prefix_roots: dict[int, bytes] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.stop - self.start


class _Frontier:
    """Compact range: the perfect subtrees covering ``[start, pos)``, biggest first."""

    def __init__(self) -> None:
        self.levels: list[int] = []
        self.hashes: list[bytes] = []

    def push(self, level: int, digest: bytes) -> None:
        while self.levels and self.levels[-1] == level:
            self.levels.pop()
            digest = node_hash(self.hashes.pop(), digest)
            level += 1
        self.levels.append(level)
        self.hashes.append(digest)

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        digest = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            digest = node_hash(left, digest)
        return digest


def _blocks(offset: int, length: int) -> Iterator[tuple[int, int]]:
    """Split ``[offset, offset+length)`` (relative to an aligned start) into aligned 2^k blocks."""
    end = offset + length
    while offset < end:
        size = 1 << ((end - offset).bit_length() - 1)
        if offset:
            size = min(size, offset & -offset)
        yield offset, size
        offset += size


class LogChecker:
    """Verifies consecutive chunks of a log segment starting at ``start``.

    ``start`` must be 0 or a power of two at least the segment's length (how
    ``join`` splits a log). ``prev`` is the leaf hash entry ``start`` must link to,
    or None to accept (and report) whatever it links to.
    """

    def __init__(
        self, start: int = 0, prev: bytes | None = GENESIS_PREV_HASH,
        prefix_sizes: Collection[int] = (), *, tree: bool = True,
    ) -> None:
        """``tree=False``: check chain and leaves only; the caller folds the tree
        (``ledger.node_check.NodeFolder``) from the leaf hashes ``feed`` returns."""
        self.tree = tree
        self.start = self.pos = start
        self.prev = prev
        self.first_prev: bytes | None = prev
        self.frontier = _Frontier()
        self.cuts = sorted(p for p in set(prefix_sizes) if p > start)
        self.prefix_roots: dict[int, bytes] = {}
        if start in prefix_sizes:
            self.prefix_roots[start] = EMPTY_ROOT

    def feed(
        self, chunk: Sequence[bytes], stored_leaves: Sequence[bytes] | None = None
    ) -> list[bytes]:
        """Check the next entries; ``stored_leaves`` are leaf hashes a store claims for them.
        Returns the entries' leaf hashes."""
        if not chunk:
            return []
        sha = hashlib.sha256
        leaves = [sha(b"\x00" + e).digest() for e in chunk]
        if stored_leaves is not None and leaves != list(stored_leaves):
            stored = list(stored_leaves) + [b""] * len(leaves)
            j = next(i for i, leaf in enumerate(leaves) if leaf != stored[i])
            raise LedgerTampered("entry bytes do not match their stored leaf hash",
                                 seq=self.pos + j)
        if not self._links_hold(chunk, leaves):
            self._locate(chunk, leaves)
        if self.tree:
            self._push(leaves)
        self.pos += len(chunk)
        self.prev = leaves[-1]
        return leaves

    def _links_hold(self, chunk: Sequence[bytes], leaves: list[bytes]) -> bool:
        """Fast whole-chunk check of parse, seq and prev; False means: look closer."""
        try:
            # C-level map: each parsed object dies at once (no GC pressure from a chunk
            # of live dicts), keeping only (seq, prev).
            pairs = list(map(_SEQ_PREV, map(orjson.loads, chunk)))
            seqs = [p[0] for p in pairs]
            prevs = "".join([p[1] for p in pairs])
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
            return False
        if seqs != list(range(self.pos, self.pos + len(chunk))) or set(map(type, seqs)) != {int}:
            return False
        head = prevs[:64]
        if self.prev is None:
            if not _HEX256.fullmatch(head):
                return False
            self.prev = self.first_prev = bytes.fromhex(head)
        return prevs == self.prev.hex() + b"".join(leaves[:-1]).hex()

    def _link_ok(self, chunk: Sequence[bytes], j: int, expected: bytes) -> bool:
        try:
            return bool(orjson.loads(chunk[j])["prev"] == expected.hex())
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
            return False

    def _locate(self, chunk: Sequence[bytes], leaves: list[bytes]) -> None:
        """Walk the chunk entry by entry and raise at the first failing entry."""
        for j, raw in enumerate(chunk):
            seq = self.pos + j
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise LedgerTampered("not valid JSON", seq=seq) from None
            if not isinstance(doc, dict):
                raise LedgerTampered("not a JSON object", seq=seq)
            found = doc.get("seq")
            if type(found) is not int or found != seq:
                raise LedgerTampered(
                    "missing, reordered or out of sequence (its seq field does not match "
                    "its position)", seq=seq)
            prev = doc.get("prev")
            if not isinstance(prev, str) or not _HEX256.fullmatch(prev):
                raise LedgerTampered("malformed prev link", seq=seq)
            expected = self.prev if j == 0 else leaves[j - 1]
            if expected is None:
                self.prev = self.first_prev = bytes.fromhex(prev)
                continue
            if prev != expected.hex():
                # Entry seq-1 edited: only this link breaks. This entry's own link
                # edited: the next link breaks too (its leaf hash changed).
                if j + 1 < len(chunk) and not self._link_ok(chunk, j + 1, leaves[j]):
                    raise LedgerTampered("prev link edited (does not match the entry before)",
                                         seq=seq)
                raise LedgerTampered("entry edited: its hash no longer matches the next "
                                     "entry's prev link", seq=max(seq - 1, 0))
        raise LedgerTampered("chunk failed verification", seq=self.pos)  # pragma: no cover

    def _push(self, leaves: list[bytes]) -> None:
        offset = self.pos - self.start
        end = offset + len(leaves)
        cuts = [c - self.start for c in self.cuts if offset < c - self.start <= end]
        lo = offset
        for cut in [*cuts, end]:
            for block_lo, size in _blocks(lo, cut - lo):
                i = block_lo - offset
                digest = leaves[i] if size == 1 else root_of(leaves[i:i + size])
                self.frontier.push(size.bit_length() - 1, digest)
            if cut != end or cut in cuts:
                self.prefix_roots[self.start + cut] = self.frontier.root()
            lo = cut

    def finish(self) -> LogVerdict:
        return LogVerdict(start=self.start, stop=self.pos, root=self.frontier.root(),
                          first_prev=self.first_prev,
                          last_leaf=self.prev if self.pos > self.start else None,
                          prefix_roots=dict(self.prefix_roots))


@contextmanager
def bulk_mode() -> Iterator[None]:
    """Pause the cyclic GC while verifying: the work makes millions of short-lived,
    acyclic objects, and generation scans would cost a quarter of the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _chunks(entries: Iterable[bytes], size: int = CHUNK) -> Iterator[list[bytes]]:
    it = iter(entries)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def verify_log(
    entries: Iterable[bytes],
    *,
    expected_root: bytes | None = None,
    prefix_sizes: Collection[int] = (),
) -> LogVerdict:
    """Verify a whole log from its entries' canonical bytes, in order from entry 0."""
    checker = LogChecker(0, GENESIS_PREV_HASH, prefix_sizes)
    with bulk_mode():
        for chunk in _chunks(entries):
            checker.feed(chunk)
    verdict = checker.finish()
    if expected_root is not None and verdict.root != expected_root:
        raise LedgerTampered(f"the tree root of the {verdict.size} entries differs from the "
                             "expected root (an entry or the stored tree was altered)")
    return verdict


def split_point(size: int) -> int:
    """Where ``join`` can split a log of ``size`` entries: the largest power of two < size."""
    return 1 << ((size - 1).bit_length() - 1) if size >= 2 else size


def join(first: LogVerdict, second: LogVerdict) -> LogVerdict:
    """Join ``[0, k)`` and ``[k, n)`` (``k = split_point(n)``) into the whole log's verdict."""
    if first.start != 0 or second.start != first.stop:
        raise BadInput("segments to join must be adjacent and start at 0")
    if second.size == 0:
        return first
    k, n = first.stop, second.stop
    if k != split_point(n):
        raise BadInput("segments must split the log at its largest power of two")
    if second.first_prev != first.last_leaf:
        # The second segment checked entry k's own hash against entry k+1's link, so
        # if it has more than one entry, the entry that changed is k-1.
        raise LedgerTampered("entry edited: its hash no longer matches the next entry's "
                             "prev link", seq=k - 1 if second.size > 1 else k)
    prefix = dict(first.prefix_roots)
    for p, sub in second.prefix_roots.items():
        prefix[p] = first.root if p == k else node_hash(first.root, sub)
    return LogVerdict(start=0, stop=n, root=node_hash(first.root, second.root),
                      first_prev=first.first_prev, last_leaf=second.last_leaf,
                      prefix_roots=prefix)


def verify_checkpoint(
    note: str, keys: Iterable[str | Verifier], *, origin: str | None = None
) -> Checkpoint:
    """A checkpoint's signature (by one of ``keys``) and origin; returns its size and root."""
    return open_checkpoint(note, keys, origin=origin)


def verify_against_checkpoint(verdict: LogVerdict, checkpoint: Checkpoint) -> None:
    """Hold a verified log against a signed checkpoint: no truncation, rollback or fork.

    ``verdict`` must come from ``verify_log(..., prefix_sizes={checkpoint.size})``.
    """
    if verdict.start != 0:
        raise BadInput("a checkpoint is checked against a whole log")
    if verdict.size < checkpoint.size:
        raise LedgerTampered(
            f"the log has {verdict.size} entries but a signed checkpoint vouches for "
            f"{checkpoint.size} (truncated or rolled back)", seq=verdict.size)
    then = verdict.prefix_roots.get(checkpoint.size)
    if then is None:
        raise BadInput("verify the log with the checkpoint's size among prefix_sizes")
    if then != checkpoint.root:
        raise LedgerTampered(
            f"the first {checkpoint.size} entries do not match the signed checkpoint "
            "(history rewritten or forked)")


def verify_checkpoint_consistency(
    checkpoint: Checkpoint, size: int, root: bytes, proof: Sequence[bytes]
) -> None:
    """A tree of ``size``/``root`` extends a signed checkpoint (by a consistency proof)."""
    if size < checkpoint.size:
        raise LedgerTampered(f"tree size {size} is below the signed checkpoint's "
                             f"{checkpoint.size} (truncated or rolled back)", seq=size)
    try:
        merkle.verify_consistency(checkpoint.size, size, checkpoint.root, root, proof)
    except VerificationFailed:
        raise LedgerTampered(f"the tree is not consistent with the signed checkpoint of size "
                             f"{checkpoint.size} (history rewritten or forked)") from None
