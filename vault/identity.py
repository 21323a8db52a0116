"""Who is who in a dataset: the person behind each row (the unit of differential privacy).

Every stored row carries a pseudonymous person id (attribute column ``__person``,
sealed like any attribute; the value is a keyed HMAC under the dataset's
``person`` key, never an identifier). Releases bound each person's contribution
by it (``vault.dp.plan``).

A row's person key is its strongest identifier, in this order (documented in
docs/PRIVACY.md):

1. the columns the policy declares as ``person_key`` (all of them, together);
2. a voter id (any state layout, VANID-style ids included, as classified);
3. an SSN; 4. a driver licence number;
5. an e-mail address; 6. a phone number;
7. normalised name + street address (+ ZIP5 where there is one).

A row whose strongest identifier is weaker (say an e-mail only) is linked to a
person known by a stronger one in the same file when exactly one such person has
that e-mail; when several do (a household e-mail shared by two voters with
different voter ids) nothing is merged and the row is counted as *ambiguous*. Two
rows with different strong ids are never merged, whatever weaker identifiers
they share (counted as *shared, not merged*). A row with no identifier at all is
a person of its own. Nothing is silent: ``IdentityReport`` counts each case and
ingest reports it.

Which rows are deduplicated (a later row *updates* a stored subject) is a
separate choice, ``dedup_column``: only a person-unique id (declared key, voter
id, SSN, DL) of a dataset with one row per person; e-mail and phone numbers are
shared in households and never decide that two rows are the same record.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import polars as pl

from vault import _aead
from vault.errors import BadInput

PERSON_COLUMN = "__person"
DECLARED = "DECLARED"
NAME_ADDRESS = "NAME_ADDRESS"
#: Identifier kinds in the order that decides a row's person (strongest first).
ORDER: tuple[str, ...] = (
    DECLARED, "VOTER_ID", "US_SSN", "US_DRIVER_LICENSE", "EMAIL_ADDRESS", "PHONE_NUMBER",
    NAME_ADDRESS,
)
#: Kinds that identify one person only (may decide deduplication).
UNIQUE_KINDS = frozenset({DECLARED, "VOTER_ID", "US_SSN", "US_DRIVER_LICENSE"})
_NORMALIZER = {"VOTER_ID": "id", "US_SSN": "id", "US_DRIVER_LICENSE": "id",
               "EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone"}
_PERSON_ENTITY = "PERSON"
_ADDRESS_ENTITY = "US_STREET_ADDRESS"
_ZIP_ENTITY = "US_ZIP_CODE"
PSEUDONYM_BYTES = 16
#: Marks a person column that holds pseudonyms already (never a ``KIND:`` person key).
PSEUDONYM_PREFIX = "pseudonym:"


@dataclass(frozen=True)
class IdentityPlan:
    """Which columns give each identifier kind (names only)."""

    levels: tuple[tuple[str, tuple[str, ...]], ...]
    names: tuple[str, ...] = ()  # of NAME_ADDRESS: name parts, address parts, ZIP
    addresses: tuple[str, ...] = ()
    zips: tuple[str, ...] = ()

    @property
    def kinds(self) -> list[str]:
        return [k for k, _ in self.levels]

    def to_json(self) -> list[dict[str, Any]]:
        return [{"kind": k, "columns": list(cols)} for k, cols in self.levels]


@dataclass
class IdentityReport:
    """Counts only (never values): how the rows of a source were resolved to people."""

    rows: int = 0
    people: int = 0
    by_kind: dict[str, int] | None = None
    linked: int = 0  # rows joined to a stronger-id person through a weaker id
    ambiguous: int = 0  # rows whose weaker id matched several people: not merged
    shared_not_merged: int = 0  # weaker ids shared by people with different strong ids
    without_identifier: int = 0  # rows with no identifier: one person each

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan_identity(classes: Sequence[Any], declared: Sequence[str] = ()) -> IdentityPlan:
    """The identifier kinds a file offers, from its column classes (``ColumnClass``:
    ``name``, ``entity``) and the policy's declared person key."""
    names = {c.name for c in classes}
    levels: list[tuple[str, tuple[str, ...]]] = []
    present = tuple(c for c in declared if c in names)
    if present and len(present) == len(tuple(declared)):
        levels.append((DECLARED, present))
    for kind in ORDER[1:-1]:
        # a column named as the identifier beats one the values alone made one (an
        # id-shaped column of another name), then the first by name
        cols = [c.name for c in sorted(
            (c for c in classes if c.entity == kind and c.name not in present),
            key=lambda c: (str(getattr(c, "evidence", "")).startswith("values"), c.name))]
        if cols:  # several columns of one kind (ncid, voter_reg_num): the first by name
            levels.append((kind, (cols[0],)))
    person = tuple(c.name for c in classes if c.entity == _PERSON_ENTITY)
    address = tuple(c.name for c in classes if c.entity == _ADDRESS_ENTITY)
    if person and address:
        zips = tuple(c.name for c in classes if c.entity == _ZIP_ENTITY)[:1]
        levels.append((NAME_ADDRESS, person + address + zips))
        return IdentityPlan(tuple(levels), person, address, zips)
    return IdentityPlan(tuple(levels))


def dedup_column(plan: IdentityPlan, rows_per_person: int) -> str | None:
    """The column whose equal values make a later row update a stored one, or None.

    Only datasets of one row per person deduplicate, and only on a person-unique id.
    """
    if rows_per_person != 1:
        return None
    for kind, cols in plan.levels:
        if kind in UNIQUE_KINDS and len(cols) == 1:
            return cols[0]
    return None


def _text(e: pl.Expr) -> pl.Expr:
    return (e.cast(pl.String).str.to_lowercase().str.replace_all(r"[^0-9a-z]+", " ")
            .str.strip_chars())


def _blank(e: pl.Expr) -> pl.Expr:
    return e.is_null() | (e == "")


def _key_expr(kind: str, cols: tuple[str, ...], frame: pl.DataFrame, plan: IdentityPlan
              ) -> pl.Expr:
    """The normalised key of ``kind`` per row (null where the row lacks it)."""
    from vault.blind_index import normalize

    if kind in _NORMALIZER:
        norm = normalize(frame.get_column(cols[0]), _NORMALIZER[kind])  # type: ignore[arg-type]
        return pl.lit(norm)
    if kind == NAME_ADDRESS:
        names = [_text(pl.col(c)) for c in plan.names]
        addresses = [_text(pl.col(c)) for c in plan.addresses]
        zips = [pl.col(c).cast(pl.String).str.replace_all(r"\D", "").str.slice(0, 5)
                for c in plan.zips]
        joined = pl.concat_str([pl.concat_str(names, separator=" ", ignore_nulls=True),
                                pl.concat_str(addresses, separator=" ", ignore_nulls=True),
                                *(z.fill_null("") for z in zips)], separator="\x1f")
        blank = (pl.all_horizontal([_blank(e) for e in names])
                 | pl.all_horizontal([_blank(e) for e in addresses]))
        return pl.when(blank).then(None).otherwise(joined)
    parts = [_text(pl.col(c)) for c in cols]
    joined = pl.concat_str(parts, separator="\x1f", ignore_nulls=False)
    return pl.when(pl.any_horizontal([_blank(p) for p in parts])).then(None).otherwise(joined)


def resolve(frame: pl.DataFrame, plan: IdentityPlan) -> tuple[pl.Series, IdentityReport]:
    """Each row's person key (plaintext, ``KIND:normalised``; keep it in memory only).

    See the module docstring for the rule. Vectorised: a few joins per identifier kind.
    """
    n = frame.height
    report = IdentityReport(rows=n, by_kind={})
    if n == 0:
        return pl.Series(PERSON_COLUMN, [], dtype=pl.String), report
    keys = frame.select(
        [_key_expr(kind, cols, frame, plan).alias(f"k{i}") for i, (kind, cols) in
         enumerate(plan.levels)]
    ) if plan.levels else pl.DataFrame({"_": [None] * n})
    levels = len(plan.levels)
    work = keys.with_row_index("row")
    # strongest level present, and the person key it gives
    level = pl.lit(None, dtype=pl.Int64)
    person = pl.lit(None, dtype=pl.String)
    for i in reversed(range(levels)):
        kind = plan.levels[i][0]
        hit = pl.col(f"k{i}").is_not_null()
        level = pl.when(hit).then(pl.lit(i, dtype=pl.Int64)).otherwise(level)
        person = pl.when(hit).then(pl.lit(f"{kind}:") + pl.col(f"k{i}")).otherwise(person)
    work = work.with_columns(level.alias("level"), person.alias("person"))
    for j in range(1, levels):
        kj = f"k{j}"
        stronger = (work.filter((pl.col("level") < j) & pl.col(kj).is_not_null())
                    .group_by(kj).agg(pl.col("person").n_unique().alias("owners"),
                                      pl.col("person").first().alias("owner")))
        if stronger.height == 0:
            continue
        report.shared_not_merged += int(stronger.filter(pl.col("owners") > 1).height)
        weak = work.filter(pl.col("level") == j).select("row", kj).join(stronger, on=kj)
        if weak.height == 0:
            continue
        report.ambiguous += int(weak.filter(pl.col("owners") > 1).height)
        linked = weak.filter(pl.col("owners") == 1).select("row", "owner")
        report.linked += linked.height
        work = work.join(linked, on="row", how="left").with_columns(
            pl.coalesce("owner", "person").alias("person")).drop("owner")
    work = work.sort("row")
    assert report.by_kind is not None
    for i, (kind, _) in enumerate(plan.levels):
        report.by_kind[kind] = int(work.filter(pl.col("level") == i).height)
    missing = work.get_column("person").is_null()
    report.without_identifier = int(missing.sum())
    if report.without_identifier:  # a person of its own: a random key nobody can match
        it = iter([f"ROW:{secrets.token_hex(16)}" for _ in range(report.without_identifier)])
        filled = [p if p is not None else next(it) for p in work.get_column("person").to_list()]
        out = pl.Series(PERSON_COLUMN, filled, dtype=pl.String)
    else:
        out = work.get_column("person").alias(PERSON_COLUMN)
    report.people = int(out.n_unique())
    return out, report


def pseudonyms(key: bytes, people: pl.Series) -> pl.Series:
    """Keyed HMAC-SHA256 (truncated, hex) of each person key: the stored ``__person``.

    ``people``: plaintext person keys (``resolve``: ``KIND:value``), or pseudonyms
    already computed under ``key`` (``PersonDigests.batch``: ``pseudonym:<hex>``), which
    only lose their prefix. One series holds one or the other.
    """
    done = people.str.starts_with(PSEUDONYM_PREFIX)
    if done.any():
        if not done.all():
            raise ValueError("person keys and pseudonyms mixed in one batch")
        return people.str.strip_prefix(PSEUDONYM_PREFIX).alias(PERSON_COLUMN)
    values = people.cast(pl.Binary).to_list()
    macs = _aead.hmac_each(key, values, _aead.associated_data("person", "v1"), PSEUDONYM_BYTES)
    return pl.Series(PERSON_COLUMN, macs, dtype=pl.Binary).bin.encode("hex")


# -- Resolution on keyed digests, in bounded memory ------------------------------------
#
# ``resolve`` needs every row's plaintext identifiers at once. For files of millions of
# rows, ``DigestResolver`` applies the same rule to keyed digests instead: each batch's
# identifier of each kind becomes the pseudonym it would get as a person key,
# HMAC(person key, "KIND:normalised")[:16], held as two unsigned 64-bit integers. The
# strongest one of each row is its provisional person (a row without any identifier gets
# a random one, a person of its own). Everything goes to a private temporary folder as
# the file is read, keyed digests only: every row's provisional person, in row order, and
# for each weaker kind a record (row, its strongest kind, the kind's digest, provisional
# person), in parts by the digest's top bits so that equal digests share a part.
#
# Linking reads one part of one kind at a time: the part's rows whose strongest kind is
# this one take the one person of its stronger rows with the same digest. A stronger row
# may itself have been linked by an earlier kind: those links (row -> person, 24 bytes per
# linked row, nothing for the others) are kept and applied first. Then the provisional
# persons are read back a window at a time, the links applied, and the result written
# to an unnamed temporary file that the store reads batch by batch (``PersonDigests``);
# people are counted a part at a time. Memory holds one part (about 1/16 of the rows of
# one kind, 40 bytes each; more parts for very large files) or one window, never a
# value per row of the file. The digests are the stored pseudonyms, so a row's
# ``__person`` is exactly ``pseudonyms(key, resolve(...))`` of the in-memory rule.

_NONE = np.uint8(255)  # level of a row without any identifier
_PAIR = np.dtype(">u8")  # a pseudonym's two halves as stored: big-endian, its own bytes
_WINDOW = 1 << 20  # rows of provisional persons read back at a time
_ROW_BITS = 56  # a record's first word: row | strongest kind << 56
_ROW_MASK = np.uint64((1 << _ROW_BITS) - 1)
_PART_ROWS = 4_000_000  # rows per part aimed at: parts = a power of two, 16 to 256


def part_bits(rows: int) -> int:
    """How many top bits of a digest pick its part: 16 parts up to 64M rows, then more,
    so that a part holds about ``_PART_ROWS`` rows (256 parts at most)."""
    bits = 4
    while bits < 8 and (rows >> bits) > _PART_ROWS:
        bits += 1
    return bits


def _digest_pairs(key: bytes, keys: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(present mask, hi, lo) of HMAC(key, "person" AD || key)[:16] of each non-null key."""
    present = keys.is_not_null().to_numpy()
    values = keys.drop_nulls().cast(pl.Binary).to_list()
    macs = _aead.hmac_each(key, values, _aead.associated_data("person", "v1"), PSEUDONYM_BYTES)
    raw = b"".join(macs)  # type: ignore[arg-type]  # no None: the nulls were dropped
    pairs = np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 2)
    return present, pairs[:, 0], pairs[:, 1]


class PersonDigests:
    """Every row's person pseudonym (16 bytes, two big-endian u64 halves), in file order.

    A whole file's are in an unnamed temporary file (``DigestResolver.resolve``: the
    kernel removes it when it is closed, or when the process dies), read a batch at a
    time; a part of them (``part``, shipped to a Dask worker) is in memory."""

    def __init__(self, pairs: np.ndarray | None = None, *, file: IO[bytes] | None = None,
                 rows: int = 0) -> None:
        if pairs is not None:
            self._pairs: np.ndarray | None = np.ascontiguousarray(pairs, dtype=_PAIR)
            self._rows = int(self._pairs.shape[0])
        else:
            self._pairs, self._rows = None, rows
        self._file = file

    def __len__(self) -> int:
        return self._rows

    def __reduce__(self) -> tuple[Any, ...]:  # pickled (to a worker): the rows, no file
        return (PersonDigests, (self._read(0, self._rows).copy(),))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def _read(self, start: int, rows: int) -> np.ndarray:
        """Rows ``[start, start + rows)`` (fewer at the end) as an ``(n, 2)`` array."""
        start = min(max(start, 0), self._rows)
        n = max(0, min(rows, self._rows - start))
        if self._pairs is not None:
            return self._pairs[start:start + n]
        assert self._file is not None
        out = np.empty((n, 2), dtype=_PAIR)
        if n == 0:
            return out
        view, done = out.data.cast("B"), 0  # pread returns at most ~2 GiB a call
        while done < len(view):
            got = os.preadv(self._file.fileno(), [view[done:]],
                            start * 2 * _PAIR.itemsize + done)
            if got <= 0:
                raise OSError("person digests: temporary file shorter than written")
            done += got
        return out

    def part(self, start: int, rows: int) -> PersonDigests:
        """Rows ``[start, start + rows)`` on their own, in memory (16 bytes a row)."""
        return PersonDigests(self._read(start, rows).copy())

    def batch(self, start: int, rows: int) -> pl.Series:
        """Rows ``[start, start + rows)`` as ``pseudonym:<hex>`` (see ``pseudonyms``)."""
        text = self._read(start, rows).tobytes().hex()
        size = 2 * PSEUDONYM_BYTES
        return pl.Series(PERSON_COLUMN, [PSEUDONYM_PREFIX + text[i:i + size]
                                         for i in range(0, len(text), size)], dtype=pl.String)


def temp_bytes(rows: int, plan: IdentityPlan) -> int:
    """The most the identity pass of ``rows`` rows keeps in its temp folder at once: 16
    bytes a row of provisional persons, plus 40 a row for each weaker kind's records while
    the file is read, or 48 a row while the result is written and counted. (The store
    after it keeps the 16 a row, and the identity cache's spilled runs up to 8 more.)"""
    return rows * (16 + max(40 * max(len(plan.levels) - 1, 0), 48))


def check_temp_space(rows: int, plan: IdentityPlan) -> None:
    """Refuse a file whose identity pass would fill the temp folder (``TMPDIR``), before
    anything is read or written, rather than minutes into it."""
    need = temp_bytes(rows, plan)
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if need > free:
        raise BadInput(f"the temp folder (TMPDIR) has {_size(free)} free; the identity pass "
                       f"of {rows:,} rows needs about {_size(need)} there: point TMPDIR at a "
                       "disk with room")


def _size(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


class DigestResolver:
    """``resolve``'s rule over a file fed batch by batch (see above); use as a context
    manager so the temporary digests are removed whatever happens. ``rows``, the file's
    row count when known, sets the number of parts (``part_bits``)."""

    def __init__(self, key: bytes, plan: IdentityPlan, rows: int = 0) -> None:
        self.key, self.plan = key, plan
        self._bits = part_bits(rows)
        self._tmp = tempfile.TemporaryDirectory(prefix="civicvault-identity-")
        self._rows = 0
        self._levels = np.zeros(256, dtype=np.int64)  # rows by strongest kind

    def __enter__(self) -> DigestResolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._tmp.cleanup()

    def _file(self, name: str) -> Path:
        return Path(self._tmp.name) / f"{name}.bin"

    def _spill(self, name: str, rec: np.ndarray, top: np.ndarray) -> None:
        """Append the records ``rec`` to the parts ``name.<part>`` their ``top`` picks."""
        if not len(rec):
            return
        part = (top >> np.uint64(64 - self._bits)).astype(np.uint16)
        order = np.argsort(part, kind="stable")  # a part's records keep their row order
        rec, part = rec[order], part[order]
        bounds = [0, *(np.flatnonzero(np.diff(part)) + 1).tolist(), len(part)]
        for a, b in itertools.pairwise(bounds):
            with self._file(f"{name}.{int(part[a])}").open("ab") as fh:
                fh.write(rec[a:b].tobytes())

    def add(self, frame: pl.DataFrame, rows: int | None = None) -> None:
        """The next rows of the file (``rows`` of them when the plan has no identifier
        kinds and ``frame`` holds no column)."""
        n = frame.height if rows is None else rows
        level = np.full(n, _NONE, dtype=np.uint8)
        pairs = np.zeros((n, 2), dtype=np.uint64)
        hi, lo = pairs[:, 0], pairs[:, 1]
        for j, (kind, cols) in enumerate(self.plan.levels):
            keys = frame.select((pl.lit(f"{kind}:") + _key_expr(kind, cols, frame, self.plan))
                                .alias("k")).get_column("k")
            present, dh, dl = _digest_pairs(self.key, keys)
            at = np.flatnonzero(present)
            strongest = level[at] == _NONE  # the row's first kind present
            first = at[strongest]
            level[first] = j
            hi[first], lo[first] = dh[strongest], dl[strongest]
            if j > 0 and at.size:  # the row's strongest kind and person are known by now
                rec = np.empty((at.size, 5), dtype=np.uint64)
                rec[:, 0] = (at + self._rows).astype(np.uint64) | (
                    level[at].astype(np.uint64) << np.uint64(_ROW_BITS))
                rec[:, 1], rec[:, 2], rec[:, 3], rec[:, 4] = dh, dl, hi[at], lo[at]
                self._spill(f"kind{j}", rec, dh)
        missing = np.flatnonzero(level == _NONE)
        if missing.size:  # a person of its own: a random pseudonym nobody can match
            rnd = np.frombuffer(secrets.token_bytes(16 * missing.size), dtype=np.uint64)
            hi[missing], lo[missing] = rnd[0::2], rnd[1::2]
        self._levels += np.bincount(level, minlength=256)
        with self._file("people").open("ab") as fh:
            fh.write(pairs.tobytes())
        self._rows += n

    def resolve(self) -> tuple[PersonDigests, IdentityReport]:
        """Link weaker ids to their one stronger person; every row's pseudonym + counts."""
        report = IdentityReport(rows=self._rows, by_kind={})
        if self._rows == 0:
            return PersonDigests(np.zeros((0, 2), _PAIR)), report
        assert report.by_kind is not None
        for i, (kind, _) in enumerate(self.plan.levels):
            report.by_kind[kind] = int(self._levels[i])
        report.without_identifier = int(self._levels[_NONE])
        links = _Links()
        for j in range(1, len(self.plan.levels)):
            found = []
            for part in range(1 << self._bits):
                path = self._file(f"kind{j}.{part}")
                if path.exists():
                    rec = np.fromfile(path, dtype=np.uint64).reshape(-1, 5)
                    path.unlink()
                    found.append(_link(rec, j, links, report))
            links.add(found)
        out = tempfile.TemporaryFile(prefix="civicvault-people-")  # noqa: SIM115 (owned by
        try:  # the result, closed with it; unnamed, so nothing is left behind)
            with self._file("people").open("rb") as src:
                for at in range(0, self._rows, _WINDOW):
                    pairs = np.fromfile(src, dtype=np.uint64,
                                        count=2 * min(_WINDOW, self._rows - at)).reshape(-1, 2)
                    links.apply(pairs, at)
                    out.write(pairs.astype(_PAIR).data)
                    self._spill("people.count", pairs, pairs[:, 0])
            out.flush()
            self._file("people").unlink()
            for part in range(1 << self._bits):  # distinct people, a part at a time
                path = self._file(f"people.count.{part}")
                if path.exists():
                    got = np.fromfile(path, dtype=np.uint64).reshape(-1, 2)
                    path.unlink()
                    report.people += int(pl.DataFrame({"h": got[:, 0], "l": got[:, 1]})
                                         .n_unique())
        except BaseException:
            out.close()
            raise
        return PersonDigests(file=out, rows=self._rows), report


class _Links:
    """Rows linked to a stronger person so far: (row, person hi, person lo), by row."""

    def __init__(self) -> None:
        self.rows = np.zeros(0, dtype=np.uint64)
        self.hi = np.zeros(0, dtype=np.uint64)
        self.lo = np.zeros(0, dtype=np.uint64)

    def add(self, found: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        if not any(len(r) for r, _, _ in found):
            return
        rows = np.concatenate([self.rows, *(r for r, _, _ in found)])
        order = np.argsort(rows, kind="stable")
        self.rows = rows[order]
        self.hi = np.concatenate([self.hi, *(h for _, h, _ in found)])[order]
        self.lo = np.concatenate([self.lo, *(x for _, _, x in found)])[order]

    def lookup(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(which of ``rows`` are linked, the positions of their links)."""
        if not len(self.rows):
            return np.zeros(len(rows), dtype=bool), np.zeros(0, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.rows, rows), len(self.rows) - 1)
        hit = self.rows[at] == rows
        return hit, at[hit]

    def apply(self, pairs: np.ndarray, start: int) -> None:
        """Put the links of rows ``[start, start + len(pairs))`` into ``pairs``."""
        a, b = np.searchsorted(self.rows, [start, start + len(pairs)])
        at = (self.rows[a:b] - np.uint64(start)).astype(np.int64)
        pairs[at, 0], pairs[at, 1] = self.hi[a:b], self.lo[a:b]


def _link(rec: np.ndarray, j: int, links: _Links, report: IdentityReport
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One part of kind ``j``'s linking pass: ``rec`` holds (row | strongest kind << 56,
    digest hi, lo, person hi, lo) of the rows that have kind ``j``; rows whose strongest
    kind is ``j`` take the one person of stronger rows with the same digest, as in
    ``resolve``. Returns those links (row, person hi, person lo)."""
    own = (rec[:, 0] >> np.uint64(_ROW_BITS)).astype(np.uint8)
    strong = rec[own < j]
    none = (np.zeros(0, np.uint64),) * 3
    if strong.shape[0] == 0:
        return none
    rows = strong[:, 0] & _ROW_MASK
    hit, at = links.lookup(rows)  # a stronger row linked by an earlier kind
    strong[hit, 3], strong[hit, 4] = links.hi[at], links.lo[at]
    owners = (pl.DataFrame({"h": strong[:, 1], "l": strong[:, 2],
                            "ph": strong[:, 3], "pl": strong[:, 4]})
              .group_by("h", "l")
              .agg(((pl.col("ph").min() != pl.col("ph").max())
                    | (pl.col("pl").min() != pl.col("pl").max())).alias("many"),
                   pl.col("ph").first(), pl.col("pl").first()))
    report.shared_not_merged += int(owners.get_column("many").sum())
    weak_rec = rec[own == j]
    weak = (pl.DataFrame({"row": weak_rec[:, 0] & _ROW_MASK, "h": weak_rec[:, 1],
                          "l": weak_rec[:, 2]})
            .join(owners, on=["h", "l"], how="inner"))
    report.ambiguous += int(weak.get_column("many").sum())
    linked = weak.filter(~pl.col("many"))
    report.linked += linked.height
    return (linked.get_column("row").to_numpy().astype(np.uint64),
            linked.get_column("ph").to_numpy().astype(np.uint64),
            linked.get_column("pl").to_numpy().astype(np.uint64))
