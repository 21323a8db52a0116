"""Releases over tens of millions of rows in bounded memory (issue 17).

The materialising path (``vault.dp.source`` + ``Plan.run``) hands OpenDP the whole
prepared frame: its peak memory grows with the rows (983 MiB at 1M rows, 1.7 GiB at
2M). For a release over **public key sets** with **integer-valued** measures (counts,
sums and means of columns with integral policy bounds) this module computes the
same released values batch by batch instead:

1. each stored batch's needed columns are decrypted in memory (``iter_attributes``),
   never written anywhere;
2. per-person truncation: a row is kept while its person has fewer than ``k`` kept
   rows so far (``k`` = the policy's ``rows_per_person``); a 64-bit digest of each
   person's pseudonym and its kept-row count (<= k) is all that is carried across
   batches (:class:`KeptPerPerson`, sorted runs merged like a binary counter);
3. the kept rows are prepared exactly as for OpenDP (``plan.prepare``: casts,
   clamping to the policy bounds, missing values) and reduced to exact per-group
   sufficient statistics: row count and integer sum of each measure;
4. after the last batch, the statistics are joined onto the public key set (a key
   with no row has count and sums 0) and OpenDP's own noise is drawn **once** per
   statistic (``make_laplace`` / ``make_gaussian`` on the integer vector, discrete
   noise), at the scales of the plan's OpenDP measurement (``plan.accuracy``).

Why this is the same privacy guarantee (docs/PRIVACY.md, section 1). Neighbouring
datasets differ in all rows of one person P. Which of P's rows step 2 keeps depends
only on P's own rows and their storage order, never on another person's, so the
truncated datasets differ in at most ``k`` rows, all P's. Then the count vector over
the key set moves by at most ``k`` in L1 and in L2 (all k rows in one group is the
worst case), each sum vector by at most ``k * max(|lower|, |upper|)`` (values are
clamped first). :func:`stream_plan` builds the noise measurements with exactly
these input distances and has OpenDP's privacy maps check, before any data is read,
that their composed loss (epsilon, or rho for zCDP) is within the request's: if it
is not (a float-rounding ulp), the scales are nudged up, never down. Truncation is
"the first k rows in storage order" here, where OpenDP's ``truncate_per_group`` takes
a uniformly random k: both are per-person choices, so both are 1-stable at k rows;
they give the same statistics whenever no person has more than ``k`` live rows (a
deduplicated voter file, ``rows_per_person = 1``).

Memory: a batch or two of ciphertext and plaintext (one read ahead), the per-group
statistics, a fixed 16 MiB bitmap and 8 bytes per distinct person (56-bit digest +
count): 160 MB at 20M people, with a transient copy while the two largest runs merge.
Digest collisions (2^-56 per pair) could only make two people share a budget of k
rows: fewer rows kept, never more.

Not streamed (the materialising path, unchanged): group-by columns without public
key sets (OpenDP's DP key release thresholds the noisy counts of groups present),
and measures with non-integral bounds (float sums, whose rounding allowance is
OpenDP's own).
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from vault.dp.plan import PERSON, Plan, keys_frame, opendp, prepare

_NUDGE_STEPS = 64
_STREAMED_KINDS = frozenset({"count", "sum", "mean"})  # released from __count / __sum_*
_FOLD_PARTIALS = 64  # per-batch group statistics folded once this many are held


MAX_ROWS_PER_PERSON = 255  # a kept-row count fits the low byte of a packed entry
_LOW = np.uint64(0xFF)
_HIGH = np.uint64(0xFFFF_FFFF_FFFF_FF00)
_EIGHT = np.uint64(8)


class KeptPerPerson:
    """How many rows of each person (64-bit digest) were kept so far.

    Sorted runs of packed ``uint64`` entries, the digest's high 56 bits and the
    person's count in the low byte (8 bytes per person, no Python object per person).
    Run sizes shrink geometrically (merged like a binary counter: two runs of a size
    become one by an in-place stable sort, a linear merge), so a lookup is a few
    binary searches and an insert is amortised O(log n) moves. In front of the runs, a
    fixed 16 MiB bitmap of the digests' top 27 bits: a person whose bit is not set was
    never seen, so only the few others (about 14% at 20M people) are looked up. Two
    people whose digests share 56 bits (about 0.3% odds somewhere among 20M) share one
    budget of k rows: fewer rows kept, never more.
    """

    _BITS = 27

    def __init__(self) -> None:
        self._runs: list[np.ndarray[Any, Any]] = []
        self._bits = np.zeros(1 << (self._BITS - 3), dtype=np.uint8)

    def __len__(self) -> int:
        return sum(len(r) for r in self._runs)

    def _slots(self, keys: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any],
                                                          np.ndarray[Any, Any]]:
        top = keys >> np.uint64(64 - self._BITS)
        return top >> np.uint64(3), (np.uint8(1) << (top & np.uint64(7)).astype(np.uint8))

    def kept(self, keys: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Rows kept so far for each of ``keys`` (0 for a person never seen); fastest
        for sorted ``keys``."""
        total = np.zeros(len(keys), dtype=np.int64)
        byte, bit = self._slots(keys)
        maybe = np.flatnonzero(self._bits[byte] & bit)
        if len(maybe) == 0:
            return total
        wanted = keys[maybe] & _HIGH
        for run in self._runs:
            at = np.searchsorted(run, wanted)  # the first entry >= (person, count 0)
            inside = at < len(run)
            found = run[at[inside]]
            hit = (found & _HIGH) == wanted[inside]
            total[maybe[np.flatnonzero(inside)[hit]]] += (found[hit] & _LOW).astype(np.int64)
        return total

    def add(self, keys: np.ndarray[Any, Any], counts: np.ndarray[Any, Any]) -> None:
        """Add ``counts`` (each <= ``MAX_ROWS_PER_PERSON``) rows to the persons ``keys``
        (sorted, distinct)."""
        if len(keys) == 0:
            return
        byte, bit = self._slots(keys)  # sorted keys: equal bytes are neighbours
        fresh = np.ones(len(byte), dtype=bool)
        fresh[1:] = byte[1:] != byte[:-1]
        starts = np.flatnonzero(fresh)
        self._bits[byte[starts]] |= np.bitwise_or.reduceat(bit, starts)
        run = (keys & _HIGH) | counts.astype(np.uint64)
        if not (run[1:] >= run[:-1]).all():  # two digests sharing 56 bits
            run.sort(kind="stable")
        self._runs.append(_combined(run))
        while len(self._runs) >= 2 and len(self._runs[-2]) <= len(self._runs[-1]):
            newer, older = self._runs.pop(), self._runs.pop()
            merged = np.concatenate([older, newer])
            del older, newer
            merged.sort(kind="stable")  # two sorted runs: timsort merges them linearly
            self._runs.append(_combined(merged))


def _combined(run: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``run`` (sorted) with the entries of one person summed into one (rare: a person
    added in two batches)."""
    person = run >> _EIGHT
    same = person[1:] == person[:-1]
    if not same.any():
        return run
    first = np.ones(len(run), dtype=bool)
    first[1:] = ~same
    starts = np.flatnonzero(first)
    counts = np.minimum(np.add.reduceat((run & _LOW).astype(np.int64), starts),
                        MAX_ROWS_PER_PERSON).astype(np.uint64)
    return (run[first] & _HIGH) | counts


def truncate(batch: pl.DataFrame, seen: KeptPerPerson, k: int) -> pl.DataFrame:
    """The rows of ``batch`` kept under "at most ``k`` rows per person, first come";
    ``seen`` is updated with them."""
    if batch.height == 0:
        return batch
    digests = batch.get_column(PERSON).cast(pl.String).hash(seed=0x5EED).to_numpy()
    order = np.argsort(digests)  # unstable but fast: right while no person repeats
    ordered = digests[order]
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    if not first.all():  # a person twice in this batch: keep their rows' storage order
        order = np.argsort(digests, kind="stable")
        ordered = digests[order]
        first[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, len(ordered)))
    people = ordered[first]
    before = seen.kept(people)
    rank = np.arange(len(ordered)) - np.repeat(starts, sizes)  # 0, 1, ... within a person
    keep_sorted = np.repeat(before, sizes) + rank < k
    newly = np.minimum(sizes, np.maximum(0, k - before))
    seen.add(people[newly > 0], newly[newly > 0])
    if keep_sorted.all():
        return batch
    keep = np.empty(len(ordered), dtype=bool)
    keep[order] = keep_sorted
    return batch.filter(pl.Series(keep))


@dataclass(frozen=True)
class Statistic:
    """One released statistic: its OpenDP output column, what one person can move it by,
    and the OpenDP measurement that adds its noise to an integer vector."""

    column: str
    distance: int
    scale: float
    measurement: Any


@dataclass(frozen=True)
class StreamPlan:
    """A plan whose statistics can be computed batch by batch (see the module docstring)."""

    plan: Plan
    rows_per_person: int
    statistics: tuple[Statistic, ...]

    def exact(self, batches: Iterable[pl.DataFrame]) -> pl.DataFrame:
        """The noise-free statistics over the public key set: the group columns,
        ``__count`` (if the plan has it) and ``__sum_<col>`` for each summed column."""
        return exact_statistics(self.plan, self.rows_per_person, batches)

    def run(self, batches: Iterable[pl.DataFrame]) -> pl.DataFrame:
        """Draw the noise once over :meth:`exact`: a frame shaped like ``Plan.run``'s."""
        exact = self.exact(batches)
        noisy = [pl.Series(s.column, s.measurement(exact.get_column(s.column).to_list()),
                           dtype=pl.Int64) for s in self.statistics]
        return exact.with_columns(noisy)


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


def read_ahead(batches: Iterable[pl.DataFrame], depth: int = 1) -> Iterator[pl.DataFrame]:
    """``batches``, produced by a thread of their own up to ``depth`` batches ahead, so
    that fetching and decrypting batch i+1 overlaps the truncation and aggregation of
    batch i (AES-GCM, Arrow IPC and Polars release the GIL). Errors are re-raised here;
    leaving early stops the thread, which closes ``batches`` (its database cursor)."""
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(batches)
        try:
            for batch in source:
                if not put(batch):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failed(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="civicvault-release-read", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            assert isinstance(item, pl.DataFrame)
            yield item
    finally:
        stop.set()
        worker.join()


def _aggs(plan: Plan) -> list[pl.Expr]:
    aggs: list[pl.Expr] = []
    if plan.with_len:
        aggs.append(pl.len().cast(pl.Int64).alias("__count"))
    aggs += [pl.col(c).sum().cast(pl.Int64).alias(f"__sum_{c}") for c in plan.sum_columns]
    return aggs


def _fold(plan: Plan, partials: list[pl.DataFrame]) -> pl.DataFrame:
    by = list(plan.checked.request.by)
    both = pl.concat(partials, how="vertical_relaxed")
    totals = [pl.col(c).sum().cast(pl.Int64) for c in both.columns if c not in by]
    return both.group_by(by).agg(totals) if by else both.select(totals)


def exact_statistics(plan: Plan, rows_per_person: int,
                     batches: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """See :meth:`StreamPlan.exact`; ``batches`` may carry ``__person`` (then truncated)."""
    checked, schema = plan.checked, plan.schema
    by = list(checked.request.by)
    seen = KeptPerPerson()
    partials: list[pl.DataFrame] = []
    for batch in batches:
        if PERSON in batch.columns:
            batch = truncate(batch, seen, rows_per_person)
        # without a person column each row is its own person: nothing to truncate
        lf = prepare(batch.lazy(), checked, schema)
        part = (lf.group_by(by).agg(_aggs(plan)) if by else lf.select(_aggs(plan))).collect()
        del batch, lf
        partials.append(part)
        if len(partials) >= _FOLD_PARTIALS:
            partials = [_fold(plan, partials)]
    names = [e.meta.output_name() for e in _aggs(plan)]
    if partials:
        totals = _fold(plan, partials)
    else:
        totals = pl.DataFrame({**{c: pl.Series([], dtype=pl.String) for c in by},
                               **{n: pl.Series([], dtype=pl.Int64) for n in names}})
    if not by:
        if totals.height == 0:
            totals = pl.DataFrame({n: [0] for n in names}, schema={n: pl.Int64 for n in names})
        return totals.select(names)
    keys = keys_frame(checked, schema)
    return (keys.join(totals, on=by, how="left", nulls_equal=True)
            .with_columns([pl.col(n).fill_null(0) for n in names]).select([*by, *names]))


def _noise(dp: Any, gaussian: bool, scale: float) -> Any:
    domain = dp.vector_domain(dp.atom_domain(T="i64"))
    if gaussian:
        return dp.m.make_gaussian(domain, dp.l2_distance(T="i64"), scale)
    return dp.m.make_laplace(domain, dp.l1_distance(T="i64"), scale)


def _loss(measurement: Any, distance: int) -> float:
    value = measurement.map(distance)
    return float(value[0] if isinstance(value, tuple) else value)


def _target(plan: Plan) -> float:
    from vault.dp.plan import zcdp_rho

    req = plan.checked.request
    if req.mode == "zcdp":
        assert req.delta is not None
        return zcdp_rho(float(req.epsilon), req.delta)
    return float(req.epsilon)


def stream_plan(plan: Plan) -> StreamPlan | None:
    """The streaming form of ``plan``, or None where only the materialising path applies
    (no public key set, a non-integral measure, or OpenDP's maps disagree). No data."""
    checked = plan.checked
    if not checked.public_keys or plan.accuracy.threshold is not None:
        return None
    if any(m.kind not in _STREAMED_KINDS for m in checked.request.measures):
        return None  # a kind this module does not know: OpenDP end to end
    if any(plan.schema[c] != pl.Int64 for c in plan.sum_columns):
        return None
    k = int(plan.accuracy.unit.rows_per_person)
    if not 1 <= k <= MAX_ROWS_PER_PERSON:
        return None
    scales = {c.label: c.scale for c in plan.accuracy.columns}
    wanted: list[tuple[str, str, int]] = []  # (output column, accuracy label, distance)
    if plan.with_len:
        wanted.append(("__count", "count", k))
    for c in plan.sum_columns:
        b = checked.bounds[c]
        reach = max(abs(int(b.lower)), abs(int(b.upper)))
        wanted.append((f"__sum_{c}", f"sum_{c}", k * reach))
    if any(label not in scales or not math.isfinite(scales[label]) or scales[label] <= 0
           for _, label, _ in wanted):
        return None
    dp = opendp()
    gaussian = checked.request.mode == "zcdp"
    target = _target(plan)
    factor = 1.0
    for _ in range(_NUDGE_STEPS):
        stats = tuple(Statistic(col, dist, scales[label] * factor,
                                _noise(dp, gaussian, scales[label] * factor))
                      for col, label, dist in wanted)
        if sum(_loss(s.measurement, s.distance) for s in stats) <= target:
            return StreamPlan(plan, k, stats)
        factor = factor * (1.0 + 2.0**-40) + 2.0**-52
    return None
