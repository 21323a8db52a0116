"""Links between datasets, computed inside the vault from keyed digests (never in the clear).

A link is declared in the policy (``[links.NAME]``: two datasets, the key columns of
each side, how to normalise them, purposes, a contribution bound). Building it:

1. the link has its own data key (``vault_data_keys`` purpose ``link:<name>``, wrapped
   by the KEK like every data key). Per-dataset blind-index keys differ on purpose
   (an index of one dataset cannot be matched with another's), so linking needs a
   key *shared by exactly these two datasets*: it links them and nothing else;
2. each live subject's key columns are opened in memory (direct identifiers from
   its sealed record, attributes from the batch blobs), normalised, and replaced at
   once by ``HMAC-SHA256(link key, context || normalised key)`` truncated to 128 bits;
   the plaintext is dropped, only the digests are compared;
3. ``vault_link_members`` keeps (link, side, subject, digest) for the left side; a right
   side whose key is a blind-indexed id (a vote history) keeps one ``vault_link_keys``
   row per distinct id instead, (link, blind digest, digest), and its subjects follow
   from the blind index (layout 2, ``vault.link_tables.LAYOUT``). Two subjects are
   linked when their digests are equal and the digest belongs to exactly one left
   subject (several: *ambiguous*, not linked). ``link_pairs`` derives the pairs;
4. ``link.build`` goes on the ledger with counts and the hash of the link's stored
   state (``vault.link_tables.state_hash``; ``data_hash``); a rebuild digests only
   batches newer than its watermarks (idempotent: an unchanged vault gives the same
   hash and adds nothing);
5. erasing a subject (``vault.erase``) *cuts* it: its member rows (or, on a right side
   kept by blind digest, its id's key rows) are deleted and their digests kept in
   ``vault_link_cut``, so no later file links that key again.

What an operator holding the database learns: which subject ids of the two
datasets are the same person (the pairs), and how many subjects share a key;
never the key's value (the digests are keyed; the key is wrapped by the KEK).

Linked releases (``run_linked_release``) join the two datasets inside the vault and
release DP aggregates with the *left* dataset's person as the privacy unit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from ledger import store as ledger_store
from ledger.entry import EntryDraft
from ledger.errors import LinkOutOfDate
from policies.errors import PolicyDenied
from policies.model import LinkRule
from vault import _aead, blind_index, crypto, manifest, vocab
from vault.errors import BadInput
from vault.keyring import Keyring, now
from vault.link_tables import (
    LAYOUT,
    LEFT,
    RIGHT,
    T_CUT,
    T_KEYS,
    T_LINK,
    T_MEMBER,
    has_key_table,
    has_link_tables,
    hash_pairs,
    state_hash,
)
from vault.live_mask import unpack_mask, unpack_subjects
from vault.store import (
    T_BATCH,
    T_BLIND,
    T_COLUMN,
    T_DATASET,
    T_RECORD,
    T_SUBJECT,
    ColumnLayout,
    bulk_insert,
    lock_vault,
)
from vault.tables import record_fields

#: Ledger actions of this module (vocabulary: names only).
LINK_BUILD_ACTION = vocab.LINK_BUILD
LINK_CUT_ACTION = vocab.LINK_CUT
LINK_REPORT_ACTION = vocab.LINK_REPORT
#: Policy actions.
LINK_PERMISSION = "link.build"
LINK_REPORT_PERMISSION = "link.report"
DIGEST_BYTES = 16
_CHUNK = 20_000
_FETCH_ROWS = 250_000

def resource_of(name: str) -> str:
    return f"link/{name}"


# -- normalisation -----------------------------------------------------------------------------

_SUFFIXES = {
    "street": "st", "str": "st", "avenue": "ave", "av": "ave", "road": "rd", "drive": "dr",
    "lane": "ln", "boulevard": "blvd", "court": "ct", "place": "pl", "circle": "cir",
    "terrace": "ter", "parkway": "pkwy", "highway": "hwy", "trail": "trl", "square": "sq",
    "north": "n", "south": "s", "east": "e", "west": "w", "apartment": "apt", "suite": "ste",
    "mount": "mt", "saint": "st", "way": "wy",
}


def normalise(frame: pl.DataFrame, columns: Sequence[str], match: str) -> pl.Series:
    """The normalised link key of each row (null where a part is missing). In memory only.

    ``id``: every column normalised like a voter id (upper case, alphanumerics, leading
    zeros dropped), joined. ``name_address``: all columns but the last are name and
    street parts: lower case, punctuation to spaces, street words folded (Street -> st),
    tokens sorted (so "Smith, John" meets "John Smith"); the last column is the ZIP,
    cut to its 5 digits.
    """
    if match == "id":
        parts = [blind_index.normalize(frame.get_column(c), "id") for c in columns]
        out = pl.select(pl.concat_str([p.alias(f"p{i}") for i, p in enumerate(parts)],
                                      separator="\x1f", ignore_nulls=False)).to_series()
        return out.alias("key")
    *words, zip_col = columns
    text = pl.concat_str([pl.col(c).cast(pl.String).fill_null("") for c in words],
                         separator=" ")
    tokens = (text.str.to_lowercase().str.replace_all(r"[^0-9a-z]+", " ").str.strip_chars()
              .str.split(" ").list.eval(pl.element().replace(_SUFFIXES))
              .list.eval(pl.element().filter(pl.element() != "")).list.sort()
              .list.join(" "))
    zip5 = pl.col(zip_col).cast(pl.String).str.replace(r"\.0+$", "").str.replace_all(
        r"\D", "").str.slice(0, 5)
    key = (pl.when((tokens == "") | (zip5.str.len_chars() < 5) | zip5.is_null())
           .then(None).otherwise(pl.concat_str([tokens, zip5], separator="\x1f")))
    return frame.select(key.alias("key")).to_series()


def digests(key: bytes, link: str, match: str, keys: pl.Series) -> list[bytes | None]:
    """Keyed HMAC-SHA256 (128 bits) of each normalised key under the link's own key."""
    values: list[bytes | None] = keys.cast(pl.Binary).to_list()
    return _aead.hmac_each(key, values, _aead.associated_data("link", link, match), DIGEST_BYTES)


# -- reading subjects (plaintext in memory only) ------------------------------------------------


def _layout(conn: Connection, ds_id: int) -> ColumnLayout:
    return ColumnLayout.from_json(str(conn.execute(
        select(T_DATASET.c.columns_json).where(T_DATASET.c.id == ds_id)).scalar_one()))


def dataset_ids(conn: Connection, names: Sequence[str]) -> dict[str, int]:
    rows: dict[str, int] = {str(r.name): int(r.id) for r in conn.execute(
        select(T_DATASET.c.name, T_DATASET.c.id).where(T_DATASET.c.name.in_(list(names))))}
    return {n: int(rows[n]) for n in names if n in rows}


def read_frame(conn: Connection, stmt: Any, schema: Mapping[str, Any]) -> pl.DataFrame:
    """Run ``stmt`` and return its rows as one columnar frame (no Row object per row).

    PostgreSQL: the server renders the rows as one tab-separated text (``string_agg``;
    COPY sends a message per row, which cost 3.5 us a row to receive), parsed by Polars
    (``bytea`` comes as hex); SQLite: the driver's rows, a chunk at a time, into Polars.
    ``stmt`` may only bind ints and strings (it is rendered with literal values: ids and
    names, never data).
    """
    names = list(schema)
    if conn.dialect.name == "postgresql":
        q = stmt.subquery("q")
        line = func.concat_ws("\t", *[func.coalesce(sa.cast(c, sa.Text), "") for c in q.c])
        text: str | None = conn.execute(select(func.string_agg(line, "\n"))).scalar()
        if not text:
            return pl.DataFrame(schema=dict(schema))
        text_schema = {c: (pl.String if t == pl.Binary else t) for c, t in schema.items()}
        frame = pl.read_csv(text.encode(), has_header=False, new_columns=names,
                            schema=text_schema, separator="\t", quote_char=None)
        del text
        return frame.with_columns([pl.col(c).str.slice(2).str.decode("hex")
                                   for c, t in schema.items() if t == pl.Binary])
    text_frame = _sqlite_text_frame(conn, stmt, schema)
    if text_frame is not None:
        return text_frame
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    raw: Any = conn.connection.dbapi_connection
    cur = raw.cursor()
    frames = []
    try:
        cur.execute(sql)
        while rows := cur.fetchmany(_FETCH_ROWS):  # tuples of one chunk at a time
            frames.append(pl.DataFrame(rows, schema=dict(schema), orient="row"))
            del rows
    finally:
        cur.close()
    return pl.concat(frames, rechunk=True) if frames else pl.DataFrame(schema=dict(schema))


def _sqlite_text_frame(conn: Connection, stmt: Any,
                       schema: Mapping[str, Any]) -> pl.DataFrame | None:
    """SQLite: the rows rendered by the database as one comma-separated text
    (``group_concat``, blobs and strings as hex), parsed by Polars: the driver's tuple per row cost
    ~1.7x as much at 1M rows. None when the text would pass SQLite's length limit (the
    caller falls back to chunked driver reads)."""
    import sqlite3

    q = stmt.subquery("q")
    texts = {c for c, t in schema.items() if t in (pl.Binary, pl.String)}  # hex: no commas
    parts: list[Any] = [sa.func.ifnull(sa.func.hex(c) if t in (pl.Binary, pl.String)
                                       else sa.cast(c, sa.Text), "")
                        for c, t in zip(q.c, schema.values(), strict=True)]
    line: Any = parts[0]
    for part in parts[1:]:
        line = line.concat(",").concat(part)
    try:
        text: str | None = conn.execute(select(func.group_concat(line, "\n"))).scalar()
    except sa.exc.DBAPIError as exc:
        if isinstance(exc.orig, sqlite3.DataError) or "too big" in str(exc.orig):
            return None
        raise
    if not text:
        return pl.DataFrame(schema=dict(schema))
    data = text.encode()
    del text
    text_schema = {c: (pl.String if c in texts else t) for c, t in schema.items()}
    frame = pl.read_csv(data, has_header=False, new_columns=list(schema), schema=text_schema,
                        separator=",", quote_char=None)
    del data
    return frame.with_columns([pl.col(c).str.decode("hex").cast(schema[c]) for c in texts])


@contextmanager
def bulk_joins(conn: Connection) -> Iterator[None]:
    """PostgreSQL: plan the enclosed whole-link joins as hash joins with room in memory.
    The planner guesses that few left digests have one owner (``count(*) = 1``: it
    estimated 940 of 1M) and picked 10M index lookups (17 s of a 30 s query)."""
    if conn.dialect.name != "postgresql":
        yield
        return
    conn.execute(sa.text("SET LOCAL enable_nestloop = off"))
    conn.execute(sa.text("SET LOCAL work_mem = '256MB'"))
    yield  # (after an error the transaction is rolled back, and the settings with it)
    conn.execute(sa.text("SET LOCAL enable_nestloop TO DEFAULT"))
    conn.execute(sa.text("SET LOCAL work_mem TO DEFAULT"))


def live_subjects(conn: Connection, ds_id: int, after_batch: int = 0) -> pl.DataFrame:
    """subject, batch, row of every live (not erased) subject whose current row is in a
    batch newer than ``after_batch`` (columnar read)."""
    return read_frame(conn, select(T_SUBJECT.c.id, T_SUBJECT.c.current_batch_id,
                                   T_SUBJECT.c.current_row)
                      .where(T_SUBJECT.c.dataset_id == ds_id, T_SUBJECT.c.erased_at.is_(None),
                             T_SUBJECT.c.current_batch_id > after_batch),
                      {"subject": pl.Int64, "batch": pl.Int64, "row": pl.Int64})


def batch_columns(conn: Connection, keyring: Keyring, ds_id: int, batches: Sequence[int],
                  columns: Sequence[str]) -> Iterator[tuple[int, pl.DataFrame]]:
    """(batch, ``row`` + the decrypted attribute ``columns`` of every row of the batch),
    one batch at a time in the order given (one AES-GCM call per batch and column), so a
    caller can filter a batch before the next one is opened."""
    for start in range(0, len(batches), 200):
        part = [int(b) for b in batches[start:start + 200]]
        blobs = conn.execute(select(T_COLUMN.c.batch_id, T_COLUMN.c.column, T_COLUMN.c.key_id,
                                    T_COLUMN.c.sealed)
                             .where(T_COLUMN.c.batch_id.in_(part),
                                    T_COLUMN.c.column.in_(list(columns)))).all()
        by_batch: dict[int, dict[str, Any]] = {}
        for b in blobs:
            by_batch.setdefault(int(b.batch_id), {})[str(b.column)] = b
        del blobs
        for batch in part:
            cols = by_batch.pop(batch, {})
            missing = [c for c in columns if c not in cols]
            if missing:
                raise BadInput("a requested column is not an attribute column of the dataset")
            series = [crypto.open_column(keyring.by_id(conn, int(cols[c].key_id)),
                                         int(cols[c].key_id), ds_id, batch, c,
                                         bytes(cols[c].sealed)).cast(pl.String).alias(c)
                      for c in columns]
            del cols
            yield batch, pl.DataFrame(series).with_row_index("row").with_columns(
                pl.col("row").cast(pl.Int64))


def row_subject_batches(conn: Connection, ds_id: int) -> list[Any] | None:
    """(``id``, ``rows``, ``live_mask``, ``row_subjects``) of the dataset's batches in id
    order, or None when a batch has no row -> subject column (stored before migration
    0011, or the schema predates it): the caller then maps rows through
    ``vault_subjects``."""
    if not manifest.has_row_subjects(conn):
        return None
    rows = conn.execute(select(T_BATCH.c.id, T_BATCH.c.rows, T_BATCH.c.live_mask,
                               T_BATCH.c.row_subjects)
                        .where(T_BATCH.c.dataset_id == ds_id).order_by(T_BATCH.c.id)).all()
    if any(r.row_subjects is None for r in rows):
        return None
    return list(rows)


def live_row_values(conn: Connection, keyring: Keyring, ds_id: int, columns: Sequence[str],
                    batches: Sequence[Any]) -> Iterator[pl.DataFrame]:
    """Per batch of ``batches`` (:func:`row_subject_batches`): ``subject`` + the decrypted
    attribute ``columns`` of its live rows (current, not erased: the live mask), the
    subject from the batch's row -> subject column. No ``vault_subjects`` read; one
    AES-GCM call per batch and column; one batch's plaintext at a time."""

    def subjects(b: Any) -> tuple[Any, Any]:
        return (unpack_subjects(bytes(b.row_subjects), int(b.rows)),
                unpack_mask(bytes(b.live_mask), int(b.rows)))

    if not columns:
        for b in batches:
            ids, live = subjects(b)
            yield pl.DataFrame({"subject": ids[live]}, schema={"subject": pl.Int64})
        return
    by_id = {int(b.id): b for b in batches}
    for batch, frame in batch_columns(conn, keyring, ds_id, list(by_id), columns):
        ids, live = subjects(by_id.pop(batch))
        if frame.height != ids.shape[0]:
            raise BadInput("a stored batch's columns and its row -> subject column differ "
                           "in length: run `civicvault ledger verify`")
        yield (frame.drop("row").with_columns(pl.Series("subject", ids, dtype=pl.Int64))
               .filter(pl.Series(live)).select("subject", *columns))


def attribute_values(conn: Connection, keyring: Keyring, ds_id: int, columns: Sequence[str],
                     subjects: pl.DataFrame) -> pl.DataFrame:
    """``subject`` + the decrypted attribute ``columns`` of each subject's current row
    (one AES-GCM call per batch and column)."""
    out = subjects.select("subject")
    if not columns or subjects.height == 0:
        return out.with_columns([pl.lit(None, dtype=pl.String).alias(c) for c in columns])
    batches = sorted(set(subjects.get_column("batch").to_list()))
    frames = [frame.with_columns(pl.lit(batch, dtype=pl.Int64).alias("batch"))
              for batch, frame in batch_columns(conn, keyring, ds_id, batches, columns)]
    values = pl.concat(frames, how="vertical_relaxed")
    return subjects.join(values, on=["batch", "row"], how="left",
                         maintain_order="left").select("subject", *columns)


def direct_values(conn: Connection, keyring: Keyring, ds_id: int, columns: Sequence[str],
                  subjects: pl.DataFrame) -> pl.DataFrame:
    """``subject`` + the direct identifier ``columns`` of each subject's current record,
    opened in memory under the subject's own key (erased subjects have none).

    Columnar: the sealed records come back as columns (``read_frame``), keys are
    unwrapped per wrapping key, records opened in one loop without a dict per row, and
    the JSON payloads parsed by Polars."""
    schema = {"subject": pl.Int64, **{c: pl.String for c in columns}}
    wanted = subjects.select("subject").unique()
    if not columns or wanted.height == 0:
        return pl.DataFrame(schema=schema)
    first_batch = int(subjects.select(pl.col("batch").min()).item() or 0)
    query = (select(T_SUBJECT.c.id, T_SUBJECT.c.key_id, T_SUBJECT.c.wrapped_key,
                    T_RECORD.c.id.label("rid"), record_fields(), T_RECORD.c.sealed)
             .join(T_RECORD, (T_RECORD.c.subject_id == T_SUBJECT.c.id)
                   & (T_RECORD.c.batch_id == T_SUBJECT.c.current_batch_id)
                   & (T_RECORD.c.row == T_SUBJECT.c.current_row))
             .join(T_BATCH, T_BATCH.c.id == T_SUBJECT.c.current_batch_id)
             .where(T_SUBJECT.c.dataset_id == ds_id, T_SUBJECT.c.erased_at.is_(None),
                    T_SUBJECT.c.wrapped_key.is_not(None),
                    T_SUBJECT.c.current_batch_id >= first_batch))
    rschema = {"subject": pl.Int64, "key_id": pl.Int64, "wrapped": pl.Binary,
               "rid": pl.Int64, "fields": pl.String, "sealed": pl.Binary}
    total = int(conn.execute(select(func.count()).select_from(T_SUBJECT).where(
        T_SUBJECT.c.dataset_id == ds_id, T_SUBJECT.c.erased_at.is_(None),
        T_SUBJECT.c.current_batch_id >= first_batch)).scalar_one())
    ordered = wanted.get_column("subject").sort()

    def chunks() -> Any:
        if ordered.len() * 4 >= total * 3:  # most of them: scans by id range
            lo, hi = int(ordered[0]), int(ordered[-1])
            step = 200_000
            for start in range(lo, hi + 1, step):
                yield read_frame(conn, query.where(T_SUBJECT.c.id >= start,
                                                   T_SUBJECT.c.id < start + step), rschema)
            return
        for start in range(0, ordered.len(), 10_000):  # a few (one per distinct id): by id
            part = [int(x) for x in ordered.slice(start, 10_000)]
            yield read_frame(conn, query.where(T_SUBJECT.c.id.in_(part)), rschema)

    frames: list[pl.DataFrame] = []
    for chunk in chunks():
        chunk = chunk.join(wanted, on="subject", how="semi")
        for (wid,), rows in chunk.group_by("key_id"):
            ids = rows.get_column("subject").to_list()
            keys = crypto.unwrap_subject_keys(keyring.by_id(conn, int(wid)), int(wid), ds_id,
                                              ids, rows.get_column("wrapped").to_list())
            fields = rows.get_column("fields").to_list()
            payloads = crypto.open_records(keys, ds_id, rows.get_column("rid").to_list(), ids,
                                           fields, rows.get_column("sealed").to_list())
            del keys
            opened = crypto.payload_frame(payloads, fields, columns)
            del payloads
            frames.append(pl.DataFrame({"subject": ids}, schema={"subject": pl.Int64})
                          .hstack(opened))
    if not frames:
        return pl.DataFrame(schema=schema)
    return pl.concat(frames).select(*schema)


def key_frame(conn: Connection, keyring: Keyring, ds_id: int, columns: Sequence[str],
              subjects: pl.DataFrame) -> pl.DataFrame:
    """``subject`` + the plaintext key ``columns`` (direct or attribute), in memory."""
    layout = _layout(conn, ds_id)
    direct = set(layout.direct)
    attrs = set(layout.attributes)
    unknown = [c for c in columns if c not in direct and c not in attrs]
    if unknown:
        raise BadInput("a link key column of the policy is not stored in its dataset")
    frame = subjects.select("subject")
    d_cols = [c for c in columns if c in direct]
    a_cols = [c for c in columns if c in attrs and c not in direct]
    if d_cols:
        frame = frame.join(direct_values(conn, keyring, ds_id, d_cols, subjects),
                           on="subject", how="left", maintain_order="left")
    if a_cols:
        frame = frame.join(attribute_values(conn, keyring, ds_id, a_cols, subjects),
                           on="subject", how="left", maintain_order="left")
    return frame.select("subject", *columns)


# -- building ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkStats:
    """Counts only (never values or ids) of a link's current state."""

    link: str
    left: str
    right: str
    left_subjects: int  # live subjects with a link key
    right_subjects: int
    pairs: int  # (left, right) subject pairs
    left_linked: int  # left subjects with at least one linked right subject
    right_matched: int  # right subjects linked to exactly one left subject
    right_ambiguous: int  # right subjects whose key belongs to several left subjects
    right_unmatched: int  # right subjects with no left subject (or no key)
    cut: int  # digests of erased subjects that are never linked again
    pairs_hash: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def spec_hash(rule: LinkRule) -> str:
    spec = {"left": rule.left, "right": rule.right, "left_key": list(rule.left_key),
            "right_key": list(rule.right_key), "match": rule.match}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _cut(conn: Connection, link_id: int, side: int, subjects: Sequence[int]) -> int:
    """Delete the members of ``subjects`` on ``side``; keep their digests as cut."""
    if not subjects:
        return 0
    ids = sorted(subjects)
    n = 0
    for start in range(0, len(ids), _CHUNK):
        part = ids[start:start + _CHUNK]
        found = [bytes(d) for d in conn.execute(
            select(T_MEMBER.c.digest).where(T_MEMBER.c.link_id == link_id,
                                            T_MEMBER.c.side == side,
                                            T_MEMBER.c.subject_id.in_(part))).scalars()]
        if not found:
            continue
        _add_cut(conn, link_id, found)
        conn.execute(delete(T_MEMBER).where(T_MEMBER.c.link_id == link_id,
                                            T_MEMBER.c.side == side,
                                            T_MEMBER.c.subject_id.in_(part)))
        n += len(found)
    return n


def _add_cut(conn: Connection, link_id: int, found: Sequence[bytes]) -> None:
    known = {bytes(d) for d in conn.execute(
        select(T_CUT.c.digest).where(T_CUT.c.link_id == link_id,
                                     T_CUT.c.digest.in_(list(found)))).scalars()}
    fresh = sorted(set(found) - known)
    if fresh:
        conn.execute(insert(T_CUT), [{"link_id": link_id, "digest": d, "cut_at": now()}
                                     for d in fresh])


def _cut_keys(conn: Connection, link_id: int, blinds: Sequence[bytes]) -> int:
    """Layout 2, a right side kept by blind digest: the erased subjects' blind digests
    (``blinds``, read before erasure deleted them) lose their key rows and their link
    digests are kept as cut, so no record carrying that key links again (a key is one
    person's: the erased record's siblings with the same id stop counting too)."""
    n = 0
    for start in range(0, len(blinds), _CHUNK):
        part = list(blinds[start:start + _CHUNK])
        found = sorted({bytes(d) for d in conn.execute(
            select(T_KEYS.c.digest).where(T_KEYS.c.link_id == link_id,
                                          T_KEYS.c.blind.in_(part))).scalars()})
        if not found:
            continue
        _add_cut(conn, link_id, found)
        n += int(conn.execute(delete(T_KEYS).where(T_KEYS.c.link_id == link_id,
                                                   T_KEYS.c.digest.in_(found))).rowcount)
    return n


def held_keys(conn: Connection, ds_id: int, subjects: Sequence[int]) -> dict[str, list[bytes]]:
    """Called by erasure *before* it deletes the subjects' blind-index rows: the blind
    digests of ``subjects`` in each column that keys a link's right side (layout 2), for
    :func:`cut_erased`. Empty when no link keeps ``ds_id`` that way."""
    if not subjects or not has_link_tables(conn) or not has_key_table(conn):
        return {}
    cols = sorted({str(c) for c in conn.execute(
        select(T_LINK.c.right_blind).where(T_LINK.c.right_dataset_id == ds_id,
                                           T_LINK.c.right_blind.is_not(None))).scalars()})
    out: dict[str, list[bytes]] = {}
    ids = sorted(subjects)
    for col in cols:
        found: set[bytes] = set()
        for start in range(0, len(ids), _CHUNK):
            found.update(bytes(d) for d in conn.execute(
                select(T_BLIND.c.digest).where(  # by subject: see vault.erase
                    T_BLIND.c.subject_id.in_(ids[start:start + _CHUNK]),
                    T_BLIND.c.column == col)).scalars())
        out[col] = sorted(found)
    return out


def link_hash(conn: Connection, link_id: int, layout: int) -> str:
    """The hash the ledger vouches for: layout 2 the stored state's
    (:func:`vault.link_tables.state_hash`), layout 1 the pair list's."""
    if layout >= 2:
        return state_hash(conn, link_id)
    return pairs_hash(link_pairs(conn, link_id)[0])


def cut_erased(conn: Connection, ds_id: int, subjects: Sequence[int], actor: str,
               held: Mapping[str, Sequence[bytes]] | None = None) -> None:
    """Called by erasure, in its transaction: cut ``subjects`` of dataset ``ds_id`` from
    every link, and ledger ``link.cut`` (counts only) for each link that had them
    (``held``: :func:`held_keys`, taken before the blind-index rows were deleted)."""
    if not subjects or not has_link_tables(conn):
        return
    keyed = has_key_table(conn)
    cols = [T_LINK.c.id, T_LINK.c.name, T_LINK.c.left_dataset_id, T_LINK.c.right_dataset_id,
            *([T_LINK.c.layout, T_LINK.c.right_blind] if keyed else [])]
    links = conn.execute(select(*cols).where((T_LINK.c.left_dataset_id == ds_id)
                                             | (T_LINK.c.right_dataset_id == ds_id))).all()
    for link in links:
        side = LEFT if int(link.left_dataset_id) == ds_id else RIGHT
        layout = int(link.layout or 1) if keyed else 1
        blind_col = link.right_blind if keyed else None
        if side == RIGHT and blind_col is not None:
            n = _cut_keys(conn, int(link.id), list((held or {}).get(str(blind_col), [])))
        else:
            n = _cut(conn, int(link.id), side, subjects)
        after = link_hash(conn, int(link.id), layout)
        conn.execute(update(T_LINK).where(T_LINK.c.id == int(link.id)).values(pairs_hash=after))
        ledger_store.append(conn, [EntryDraft(
            actor=actor, action=LINK_CUT_ACTION, resource=resource_of(str(link.name)),
            data_hash=after,
            details={"link": str(link.name), "side": "left" if side == LEFT else "right",
                     "subjects_erased": len(subjects), "members_cut": n,
                     "cut_total": _count_cut(conn, int(link.id)),
                     **({"layout": layout} if layout >= 2 else {})})])


def _count_cut(conn: Connection, link_id: int) -> int:
    return int(conn.execute(select(func.count()).select_from(T_CUT)
                            .where(T_CUT.c.link_id == link_id)).scalar_one())


def _max_batch(conn: Connection, ds_id: int) -> int:
    return int(conn.execute(select(func.coalesce(func.max(T_BATCH.c.id), 0))
                            .where(T_BATCH.c.dataset_id == ds_id)).scalar_one())


_DIGEST_INDEX = "ix_vault_link_members_digest"  # migration 0009's
_LINK_FK = "vault_link_members_link_id_fkey"  # PostgreSQL's name for migration 0009's
_MAP = sa.Table("cv_link_map", sa.MetaData(), sa.Column("blind", sa.LargeBinary),
                sa.Column("digest", sa.LargeBinary), prefixes=["TEMPORARY"])


def _blind_column(conn: Connection, ds_id: int, cols: Sequence[str], match: str) -> str | None:
    """For an ``id`` link on one blind-indexed ``id`` column: that column. Subjects with
    equal blind digests have equal normalised ids (same normaliser, same key), so one
    record per distinct id is opened instead of one per subject (a vote history has ~10
    rows per voter), and the members follow from the blind index in SQL. None otherwise."""
    if match != "id" or len(cols) != 1:
        return None
    lookups = {c.name: c.lookup for c in _layout(conn, ds_id).lookups}
    return cols[0] if lookups.get(cols[0]) == "id" else None


def _cut_digests(conn: Connection, link_id: int) -> pl.Series:
    return pl.Series("digest", [bytes(d) for d in conn.execute(
        select(T_CUT.c.digest).where(T_CUT.c.link_id == link_id)).scalars()], dtype=pl.Binary)


def _digest_side(conn: Connection, keyring: Keyring, rule: LinkRule, link_id: int,
                 key: bytes, side: int, ds_id: int, after_batch: int,
                 keep_keys: bool = False) -> tuple[int, pl.DataFrame | None]:
    """Digest the subjects of ``side`` whose current row is newer than ``after_batch``:
    set-based (one ``INSERT ... SELECT`` over the blind index where it can), never a
    Python object per subject. With ``keep_keys`` (blind path only) also return the
    distinct plaintext keys opened (``key``) with their link ``digest``, in memory, for
    :func:`_digest_by_other_side`."""
    cols = rule.left_key if side == LEFT else rule.right_key
    had = conn.execute(select(T_MEMBER.c.subject_id).where(
        T_MEMBER.c.link_id == link_id, T_MEMBER.c.side == side).limit(1)).first() is not None
    if had:  # re-stored subjects are digested again (a first build skips this)
        conn.execute(delete(T_MEMBER).where(
            T_MEMBER.c.link_id == link_id, T_MEMBER.c.side == side,
            T_MEMBER.c.subject_id.in_(select(T_SUBJECT.c.id).where(
                T_SUBJECT.c.dataset_id == ds_id, T_SUBJECT.c.current_batch_id > after_batch))))
    cut = _cut_digests(conn, link_id)
    blind_col = _blind_column(conn, ds_id, cols, rule.match)
    if blind_col is not None:
        return _digest_by_blind(conn, keyring, key, rule, link_id, side, ds_id, blind_col,
                                after_batch, cut, keep_keys)
    subjects = live_subjects(conn, ds_id, after_batch)
    written = 0
    for start in range(0, subjects.height, 100_000):
        part = subjects.slice(start, 100_000)
        frame = key_frame(conn, keyring, ds_id, cols, part)
        keys = normalise(frame, cols, rule.match)
        out = (frame.select("subject")
               .with_columns(pl.Series("digest", digests(key, rule.name, rule.match, keys),
                                       dtype=pl.Binary))
               .filter(pl.col("digest").is_not_null() & ~pl.col("digest").is_in(cut.implode())))
        del frame
        bulk_insert(conn, T_MEMBER, ["link_id", "side", "subject_id", "digest"],
                    [(link_id, side, int(s), bytes(d)) for s, d in out.iter_rows()])
        written += out.height
    return written, None


def _digest_by_blind(conn: Connection, keyring: Keyring, key: bytes, rule: LinkRule,
                     link_id: int, side: int, ds_id: int, col: str, after_batch: int,
                     cut: pl.Series, keep_keys: bool) -> tuple[int, pl.DataFrame | None]:
    """Open one record per distinct blind digest (its lowest subject), HMAC it under the
    link key, then write every subject's member row from the blind index
    (:func:`_members_from_map`)."""
    newer = (T_SUBJECT.c.dataset_id == ds_id) & (T_SUBJECT.c.erased_at.is_(None)) & (
        T_SUBJECT.c.current_batch_id > after_batch)
    reps_q = (select(T_BLIND.c.digest.label("blind"),
                     func.min(T_BLIND.c.subject_id).label("subject"))
              .where(T_BLIND.c.dataset_id == ds_id, T_BLIND.c.column == col))
    if after_batch > 0:  # a first build takes every blind row (erasure deletes them)
        reps_q = reps_q.join(T_SUBJECT, T_SUBJECT.c.id == T_BLIND.c.subject_id).where(newer)
    if side == RIGHT:  # kept by blind digest: only digests without their key row yet
        reps_q = reps_q.where(~sa.exists().where(T_KEYS.c.link_id == link_id,
                                                 T_KEYS.c.blind == T_BLIND.c.digest))
    reps_sub = reps_q.group_by(T_BLIND.c.digest).subquery()
    # (blind, lowest subject) in the index's order, then joined in memory with the live
    # subjects' (batch, row): a join in SQLite looked the subjects up in digest order,
    # at random (8 s of a 1M-voter build)
    reps = (read_frame(conn, select(reps_sub.c.blind, reps_sub.c.subject),
                       {"blind": pl.Binary, "subject": pl.Int64})
            .join(live_subjects(conn, ds_id, after_batch), on="subject")
            .select("blind", "subject", "batch", "row").sort("subject"))
    if reps.height == 0:
        return 0, (pl.DataFrame(schema={"key": pl.String, "digest": pl.Binary})
                   if keep_keys else None)
    frame = key_frame(conn, keyring, ds_id, [col], reps.select("subject", "batch", "row"))
    keys = normalise(frame, [col], rule.match)
    found = frame.select("subject", pl.col(col).alias("key")).with_columns(
        pl.Series("digest", digests(key, rule.name, rule.match, keys), dtype=pl.Binary))
    del frame, keys
    kept = found.select("key", "digest").filter(pl.col("digest").is_not_null()) \
        if keep_keys else None
    mapping = (reps.select("subject", "blind").join(found.drop("key"), on="subject")
               .filter(pl.col("digest").is_not_null()
                       & ~pl.col("digest").is_in(cut.implode()))
               .select("blind", "digest"))
    del found, reps
    if side == RIGHT:
        return _keys_from_map(conn, link_id, ds_id, col, mapping), kept
    return _members_from_map(conn, link_id, side, ds_id, col, after_batch, mapping), kept


def _digest_by_other_side(conn: Connection, keyring: Keyring, link_id: int, side: int,
                          ds_id: int, col: str, other: pl.DataFrame,
                          present: pl.DataFrame | None = None) -> int:
    """Members of ``side`` without opening any of its records: the other side's distinct
    plaintext keys (``other``: ``key``, link ``digest``) are blind-indexed under *this*
    dataset's blind key(s), the way a lookup by value is, and joined with its blind
    index in SQL. Equal normalised ids give equal digests under both keys, so a subject
    of this side gets a member row exactly when its id is among the other side's; the
    rest are unmatched (counted, never listed)."""
    lookup = {c.name: c.lookup for c in _layout(conn, ds_id).lookups}[col]
    assert lookup is not None
    key_ids = sorted(int(k) for k in conn.execute(
        select(T_BLIND.c.key_id).where(T_BLIND.c.dataset_id == ds_id, T_BLIND.c.column == col)
        .distinct()).scalars())
    cut = _cut_digests(conn, link_id)
    other = other.filter(~pl.col("digest").is_in(cut.implode()))
    frames = [other.select(pl.Series("blind", blind_index.digests(
        keyring.by_id(conn, kid), col, other.get_column("key"), lookup), dtype=pl.Binary),
        "digest") for kid in key_ids]  # one per blind-key version still in the index
    if not frames:
        return 0
    mapping = pl.concat(frames).filter(pl.col("blind").is_not_null()).unique("blind")
    if side == RIGHT and present is not None:  # a first build: no key row yet; the
        # dataset's digests (``present``, its GROUP BY) filter the map in memory
        rows = mapping.join(present.select("blind"), on="blind", how="semi").sort("blind")
        bulk_insert(conn, T_KEYS, ["link_id", "blind", "digest"],
                    [(link_id, b, d) for b, d in rows.iter_rows()])
        return rows.height
    if side == RIGHT:
        return _keys_from_map(conn, link_id, ds_id, col, mapping)
    return _members_from_map(conn, link_id, side, ds_id, col, 0, mapping)


def _load_map(conn: Connection, mapping: pl.DataFrame) -> None:
    """``mapping`` (blind digest -> link digest) into the temporary table ``cv_link_map``
    (COPY on PostgreSQL; indexed after the load)."""
    conn.execute(sa.text("DROP TABLE IF EXISTS cv_link_map"))
    _MAP.create(conn)
    bulk_insert(conn, _MAP, ["blind", "digest"], list(mapping.sort("blind").iter_rows()))
    conn.execute(sa.text("CREATE INDEX cv_link_map_blind ON cv_link_map (blind)"))
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("ANALYZE cv_link_map"))


def _keys_from_map(conn: Connection, link_id: int, ds_id: int, col: str,
                   mapping: pl.DataFrame) -> int:
    """Layout 2's right side: one ``vault_link_keys`` row per blind digest of ``mapping``
    that the dataset's blind index holds and the link has no row for yet (one row per
    distinct id, not per subject: the subjects follow from the blind index)."""
    if mapping.height == 0:
        return 0
    _load_map(conn, mapping)
    n = conn.execute(sa.text(
        "INSERT INTO vault_link_keys (link_id, blind, digest) "
        "SELECT :link, m.blind, m.digest FROM cv_link_map m "
        "WHERE EXISTS (SELECT 1 FROM vault_blind_index b WHERE b.dataset_id = :ds "
        "AND b.\"column\" = :col AND b.digest = m.blind) "
        "AND NOT EXISTS (SELECT 1 FROM vault_link_keys k WHERE k.link_id = :link "
        "AND k.blind = m.blind) ORDER BY m.blind"),
        {"link": link_id, "ds": ds_id, "col": col}).rowcount
    conn.execute(sa.text("DROP TABLE cv_link_map"))
    return int(n)


def _members_from_map(conn: Connection, link_id: int, side: int, ds_id: int, col: str,
                      after_batch: int, mapping: pl.DataFrame) -> int:
    """Load ``mapping`` (blind digest -> link digest, :func:`_load_map`), then write the
    member row of every subject of ``ds_id`` (newer than ``after_batch``) with one
    ``INSERT ... SELECT`` over the blind index. The temporary table is dropped before the
    transaction ends."""
    pg = conn.dialect.name == "postgresql"
    _load_map(conn, mapping)
    subject_join = ("" if after_batch == 0 else
                    "JOIN vault_subjects s ON s.id = b.subject_id AND s.erased_at IS NULL "
                    "AND s.current_batch_id > :after ")
    empty = conn.execute(select(T_MEMBER.c.subject_id).where(
        T_MEMBER.c.link_id == link_id, T_MEMBER.c.side == side).limit(1)).first() is None
    # in subject order (the primary key is appended to, not written at random); a subject
    # with two blind digests (a changed id) is written once. PostgreSQL: DISTINCT ON after
    # the sort instead of ON CONFLICT's speculative insertion, when the side is empty
    if not pg:
        verb, pick, tail = "INSERT OR IGNORE", "", ""
    elif empty:
        verb, pick, tail = "INSERT", "DISTINCT ON (b.subject_id) ", ""
    else:
        verb, pick, tail = "INSERT", "", " ON CONFLICT DO NOTHING"
    n = conn.execute(sa.text(
        f"{verb} INTO vault_link_members (link_id, side, subject_id, digest) "
        f"SELECT {pick}:link, :side, b.subject_id, m.digest FROM vault_blind_index b "
        f"JOIN cv_link_map m ON m.blind = b.digest {subject_join}"
        "WHERE b.dataset_id = :ds AND b.\"column\" = :col ORDER BY b.subject_id" + tail),
        {"link": link_id, "side": side, "ds": ds_id, "col": col,
         **({"after": after_batch} if after_batch else {})}).rowcount
    conn.execute(sa.text("DROP TABLE cv_link_map"))
    return int(n)


def _drop_erased(conn: Connection, link_id: int, side: int, ds_id: int) -> int:
    gone = [int(s) for s in conn.execute(
        select(T_MEMBER.c.subject_id).join(T_SUBJECT, T_SUBJECT.c.id == T_MEMBER.c.subject_id)
        .where(T_MEMBER.c.link_id == link_id, T_MEMBER.c.side == side,
               T_SUBJECT.c.dataset_id == ds_id, T_SUBJECT.c.erased_at.is_not(None))).scalars()]
    return _cut(conn, link_id, side, gone)


def members(conn: Connection, link_id: int, side: int) -> pl.DataFrame:
    return read_frame(conn, select(T_MEMBER.c.subject_id, T_MEMBER.c.digest)
                      .where(T_MEMBER.c.link_id == link_id, T_MEMBER.c.side == side),
                      {"subject": pl.Int64, "digest": pl.Binary})


_STATUS = ("matched", "ambiguous", "unmatched")


def _owners(link_id: int) -> Any:
    """Left digests with their number of owners ``n`` and lowest owner ``l`` (subquery)."""
    return (select(T_MEMBER.c.digest, func.count().label("n"),
                   func.min(T_MEMBER.c.subject_id).label("l"))
            .where(T_MEMBER.c.link_id == link_id, T_MEMBER.c.side == LEFT)
            .group_by(T_MEMBER.c.digest).subquery("owners"))


def right_keying(conn: Connection, link_id: int) -> tuple[int, str | None]:
    """(right dataset id, the blind-indexed column its members are keyed by in layout 2,
    or None: one member row per right subject)."""
    if not has_key_table(conn):
        return int(conn.execute(select(T_LINK.c.right_dataset_id).where(
            T_LINK.c.id == link_id)).scalar_one()), None
    row = conn.execute(select(T_LINK.c.right_dataset_id, T_LINK.c.right_blind)
                       .where(T_LINK.c.id == link_id)).one()
    return int(row.right_dataset_id), (str(row.right_blind) if row.right_blind else None)


def right_members(link_id: int, right_id: int, blind_col: str | None) -> tuple[Any, Any]:
    """(the right side's member rows as a FROM clause, its ``subject``/``digest``
    columns): ``vault_link_members`` rows, or (layout 2) the right dataset's blind index
    joined with the link's key rows."""
    if blind_col is None:
        r = T_MEMBER.alias("r")
        return (r, (r.c.subject_id, r.c.digest, (r.c.link_id == link_id) & (r.c.side == RIGHT)))
    b, k = T_BLIND.alias("b"), T_KEYS.alias("k")
    src = b.join(k, (k.c.link_id == link_id) & (k.c.blind == b.c.digest))
    return (src, (b.c.subject_id, k.c.digest,
                  (b.c.dataset_id == right_id) & (b.c.column == blind_col)))


def link_pairs(conn: Connection, link_id: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(pairs ``left``/``right`` subject ids sorted, right members with their ``status``:
    matched | ambiguous | unmatched). The join on digest runs in the database; only
    integers come back, as columns."""
    owners = _owners(link_id)
    right_id, blind_col = right_keying(conn, link_id)
    src, (subject, digest, where) = right_members(link_id, right_id, blind_col)
    with bulk_joins(conn):
        status = read_frame(conn, select(
            subject, sa.case((owners.c.n == 1, owners.c.l), else_=None),
            sa.case((owners.c.n.is_(None), 2), (owners.c.n == 1, 0), else_=1))
            .select_from(src.outerjoin(owners, owners.c.digest == digest)).where(where),
            {"right": pl.Int64, "left": pl.Int64, "code": pl.Int8})
    status = status.unique("right", keep="first").select(
        "right", "left", pl.col("code").replace_strict(
            [0, 1, 2], list(_STATUS), return_dtype=pl.String).alias("status"))
    pairs = (status.filter(pl.col("status") == "matched").select("left", "right")
             .sort("left", "right"))
    return pairs, status


def pairs_hash(pairs: pl.DataFrame) -> str:
    """SHA-256 over the sorted pair list (domain-tagged, big-endian int64 pairs)."""
    return hash_pairs(pairs.get_column("left").to_numpy(), pairs.get_column("right").to_numpy())


@dataclass(frozen=True)
class _Counts:
    pairs: int
    left_subjects: int
    left_linked: int
    matched: int
    ambiguous: int
    covered: int  # right subjects with a member (or key) row
    right_keyed: int | None  # right subjects with a blind digest (blind-keyed sides)


def _right_counts(conn: Connection, right_id: int, col: str) -> pl.DataFrame:
    """``blind``, ``n``: one ``GROUP BY`` of the right blind index (one row per distinct
    id, in the index's order)."""
    return read_frame(conn, select(T_BLIND.c.digest, func.count())
                      .where(T_BLIND.c.dataset_id == right_id, T_BLIND.c.column == col)
                      .group_by(T_BLIND.c.digest), {"blind": pl.Binary, "n": pl.Int64})


def _counts_by_key(conn: Connection, link_id: int, right_id: int, col: str,
                   counts: pl.DataFrame | None = None) -> _Counts:
    """Layout 2: the counts from the right blind index's ``GROUP BY`` (``counts``, read
    here when not given: a build reads it once, before it writes the keys; the blind
    index does not change in the build's transaction), the key rows and the left members
    (one row per voter each), joined in memory: no per-pair row is read."""
    if counts is None:
        counts = _right_counts(conn, right_id, col)
    keys = read_frame(conn, select(T_KEYS.c.blind, T_KEYS.c.digest)
                      .where(T_KEYS.c.link_id == link_id),
                      {"blind": pl.Binary, "digest": pl.Binary})
    left = members(conn, link_id, LEFT)
    owners = left.group_by("digest").agg(pl.len().alias("owners"),
                                         pl.col("subject").min().alias("left"))
    g = counts.join(keys, on="blind").join(owners, on="digest", how="left")
    matched = g.filter(pl.col("owners") == 1)
    return _Counts(
        pairs=int(matched.get_column("n").sum()), left_subjects=left.height,
        left_linked=int(matched.get_column("left").n_unique()) if matched.height else 0,
        matched=int(matched.get_column("n").sum()),
        ambiguous=int(g.filter(pl.col("owners") > 1).get_column("n").sum()),
        covered=int(g.get_column("n").sum()), right_keyed=int(counts.get_column("n").sum()))


def _counts_by_member(conn: Connection, link_id: int) -> _Counts:
    pairs, status = link_pairs(conn, link_id)
    counts = dict(status.group_by("status").len().iter_rows())
    left_n = int(conn.execute(select(func.count()).select_from(T_MEMBER).where(
        T_MEMBER.c.link_id == link_id, T_MEMBER.c.side == LEFT)).scalar_one())
    return _Counts(
        pairs=pairs.height, left_subjects=left_n,
        left_linked=int(pairs.get_column("left").n_unique()) if pairs.height else 0,
        matched=int(counts.get("matched", 0)), ambiguous=int(counts.get("ambiguous", 0)),
        covered=status.height, right_keyed=None)


def stats(conn: Connection, rule: LinkRule, link_id: int, layout: int = LAYOUT) -> LinkStats:
    return _stats(conn, rule, link_id, layout)[0]


def _stats(conn: Connection, rule: LinkRule, link_id: int, layout: int,
           counts: pl.DataFrame | None = None) -> tuple[LinkStats, _Counts]:
    right_id, blind_col = right_keying(conn, link_id)
    c = (_counts_by_key(conn, link_id, right_id, blind_col, counts) if blind_col is not None
         else _counts_by_member(conn, link_id))
    right_live = int(conn.execute(select(func.count()).select_from(T_SUBJECT).where(
        T_SUBJECT.c.dataset_id == right_id, T_SUBJECT.c.erased_at.is_(None))).scalar_one())
    right_col = _blind_column(conn, right_id, rule.right_key, rule.match)
    if c.right_keyed is not None:
        right_n = c.right_keyed
    elif right_col is not None:  # members may hold matched/ambiguous subjects only: count keys
        # (one blind row per live subject and column; count(DISTINCT) cost 17 s at 10M)
        right_n = int(conn.execute(select(func.count()).select_from(T_BLIND).where(
            T_BLIND.c.dataset_id == right_id, T_BLIND.c.column == right_col)).scalar_one())
    else:
        right_n = c.covered
    result = LinkStats(
        link=rule.name, left=rule.left, right=rule.right, left_subjects=c.left_subjects,
        right_subjects=right_n, pairs=c.pairs, left_linked=c.left_linked,
        right_matched=c.matched, right_ambiguous=c.ambiguous,
        right_unmatched=max(0, right_live - c.matched - c.ambiguous),
        cut=_count_cut(conn, link_id), pairs_hash=link_hash(conn, link_id, layout))
    return result, c


def _covered(conn: Connection, link_id: int, right_id: int, col: str) -> int:
    """Right subjects a layout-2 link keys (before an incremental build: its new ones are
    the difference after it)."""
    b = T_BLIND
    return int(conn.execute(select(func.count()).select_from(
        b.join(T_KEYS, (T_KEYS.c.link_id == link_id) & (T_KEYS.c.blind == b.c.digest)))
        .where(b.c.dataset_id == right_id, b.c.column == col)).scalar_one())


def build_link(conn: Connection, keyring: Keyring, rule: LinkRule, actor: str,
               purpose: str | None = None, *, trigger: str = "command") -> LinkStats:
    """Build or refresh ``rule``'s link in the caller's transaction (idempotent) and
    ledger ``link.build`` with its counts and hash (``trigger``: ``command`` or
    ``ingest``, the automatic refresh after an ingest into one of its sides)."""
    lock_vault(conn)
    if not has_key_table(conn):
        raise BadInput("the vault's schema predates link layout 2: run `civicvault init` "
                       "to migrate it")
    ids = dataset_ids(conn, [rule.left, rule.right])
    if len(ids) != 2:
        raise BadInput(f"link '{rule.name}': a dataset it names is not in the vault yet "
                       "(ingest both first)")
    left_id, right_id = ids[rule.left], ids[rule.right]
    spec = spec_hash(rule)
    # an id link whose right side has a blind-indexed id keeps that side by blind digest
    right_col = _blind_column(conn, right_id, rule.right_key, rule.match)
    row = conn.execute(select(T_LINK).where(T_LINK.c.name == rule.name)).first()
    key = keyring.active(conn, left_id, f"link:{rule.name}")
    if row is not None and (row.spec_hash != spec or int(row.left_dataset_id) != left_id
                            or int(row.right_dataset_id) != right_id
                            or int(row.layout or 1) != LAYOUT or row.right_blind != right_col):
        # a changed declaration or an older layout: digest everything again (the cut
        # list stays)
        conn.execute(delete(T_MEMBER).where(T_MEMBER.c.link_id == int(row.id)))
        conn.execute(delete(T_KEYS).where(T_KEYS.c.link_id == int(row.id)))
        conn.execute(update(T_LINK).where(T_LINK.c.id == int(row.id)).values(
            left_dataset_id=left_id, right_dataset_id=right_id, spec_hash=spec, left_batch=0,
            right_batch=0, key_id=key.id, layout=LAYOUT, right_blind=right_col))
        row = conn.execute(select(T_LINK).where(T_LINK.c.name == rule.name)).first()
    if row is None:
        conn.execute(insert(T_LINK).values(
            name=rule.name, left_dataset_id=left_id, right_dataset_id=right_id, key_id=key.id,
            spec_hash=spec, left_batch=0, right_batch=0, pairs_hash="", built_at=now(),
            layout=LAYOUT, right_blind=right_col))
        row = conn.execute(select(T_LINK).where(T_LINK.c.name == rule.name)).first()
    assert row is not None
    link_id = int(row.id)
    link_key = keyring.by_id(conn, int(row.key_id))
    # (a right side kept by blind digest was cut at erasure: its erased subjects have no
    # blind-index rows left)
    cut = _drop_erased(conn, link_id, LEFT, left_id) + (
        0 if right_col else _drop_erased(conn, link_id, RIGHT, right_id))
    # a build from scratch of an id link with blind indexes on both sides opens the left
    # side's records only (one per distinct id) and finds the right side's keys by
    # blind-indexing those ids under the right dataset's key (_digest_by_other_side)
    # (a right id unmatched then has no key row; so a later build that brings new left
    # ids also looks for their right subjects among all of them)
    fresh = int(row.left_batch) == 0 and int(row.right_batch) == 0
    pg = conn.dialect.name == "postgresql"
    covered_before = 0 if fresh or right_col is None else _covered(conn, link_id, right_id,
                                                                    right_col)
    if fresh:  # a bulk load: the digest index is built once after it, not row by row, and
        # PostgreSQL checks the foreign key once (ADD CONSTRAINT), not by a trigger per row
        conn.execute(sa.text(f"DROP INDEX IF EXISTS {_DIGEST_INDEX}"))
        if pg:
            conn.execute(sa.text(f"ALTER TABLE vault_link_members DROP CONSTRAINT IF EXISTS "
                                 f"{_LINK_FK}"))
    new_left, left_keys = _digest_side(conn, keyring, rule, link_id, link_key, LEFT, left_id,
                                       int(row.left_batch), keep_keys=bool(right_col))
    new_right = 0
    if not fresh or left_keys is None:
        new_right, _ = _digest_side(conn, keyring, rule, link_id, link_key, RIGHT, right_id,
                                    int(row.right_batch))
    counts = _right_counts(conn, right_id, right_col) if fresh and right_col else None
    if left_keys is not None and right_col is not None and left_keys.height:
        new_right += _digest_by_other_side(conn, keyring, link_id, RIGHT, right_id, right_col,
                                           left_keys, present=counts)
    del left_keys
    if fresh:
        conn.execute(sa.text(f"CREATE INDEX {_DIGEST_INDEX} ON vault_link_members "
                             "(link_id, digest)"))
        if pg:
            conn.execute(sa.text(f"ALTER TABLE vault_link_members ADD CONSTRAINT {_LINK_FK} "
                                 "FOREIGN KEY (link_id) REFERENCES vault_links (id)"))
            conn.execute(sa.text("ANALYZE vault_link_members"))
            conn.execute(sa.text("ANALYZE vault_link_keys"))
    result, tally = _stats(conn, rule, link_id, LAYOUT, counts)
    if right_col is not None:  # right subjects newly keyed (the key rows are per id)
        new_right = tally.covered - covered_before
    changed = result.pairs_hash != row.pairs_hash
    conn.execute(update(T_LINK).where(T_LINK.c.id == link_id).values(
        left_batch=_max_batch(conn, left_id), right_batch=_max_batch(conn, right_id),
        pairs_hash=result.pairs_hash, built_at=now()))
    ledger_store.append(conn, [EntryDraft(
        actor=actor, action=LINK_BUILD_ACTION, resource=resource_of(rule.name),
        purpose=purpose, data_hash=result.pairs_hash,
        details={**{k: v for k, v in result.to_json().items() if k != "pairs_hash"},
                 "match": rule.match, "digested_left": new_left, "digested_right": new_right,
                 "cut_now": cut, "changed": changed, "trigger": trigger, "layout": LAYOUT})])
    return result


def check_purpose(engine: Engine, principal: Any, rule: LinkRule, purpose: str | None) -> None:
    """PolicyDenied (ledgered) unless ``purpose`` is one the link declares (if it declares any)."""
    if not rule.purposes or purpose in rule.purposes:
        return
    reason = f"purpose not declared for link '{rule.name}'"
    with engine.begin() as conn:
        ledger_store.append(conn, [EntryDraft(
            actor=principal.id, action=vocab.POLICY_DENIED, resource=resource_of(rule.name),
            details={"op": LINK_PERMISSION, "role": principal.role, "reason": reason})])
    raise PolicyDenied(f"denied: link '{rule.name}' may be built only for the purposes the "
                       f"policy declares: {', '.join(sorted(rule.purposes))} (--purpose)")


def is_built(conn: Connection, rule: LinkRule) -> bool:
    """Whether ``rule``'s link has been built under its current declaration."""
    if not has_link_tables(conn):
        return False
    row = conn.execute(select(T_LINK.c.spec_hash).where(T_LINK.c.name == rule.name)).first()
    return row is not None and row.spec_hash == spec_hash(rule)


def is_current(conn: Connection, rule: LinkRule) -> bool:
    """Whether ``rule``'s link is built and neither side has newer batches (cheap: two
    max() over the batch table)."""
    try:
        current_link(conn, rule)
    except LinkOutOfDate:
        return False
    return True


def current_link(conn: Connection, rule: LinkRule) -> int:
    """The id of ``rule``'s built link; LinkOutOfDate if never built or a side has newer
    batches than it digested (a steward runs ``civicvault link build``)."""
    row = conn.execute(select(T_LINK.c.id, T_LINK.c.spec_hash, T_LINK.c.left_dataset_id,
                              T_LINK.c.right_dataset_id, T_LINK.c.left_batch,
                              T_LINK.c.right_batch).where(T_LINK.c.name == rule.name)).first()
    hint = f"run `civicvault link build {rule.name}` (a steward)"
    if row is None or row.spec_hash != spec_hash(rule):
        raise LinkOutOfDate(f"link '{rule.name}' has not been built: {hint}")
    if (_max_batch(conn, int(row.left_dataset_id)) > int(row.left_batch)
            or _max_batch(conn, int(row.right_dataset_id)) > int(row.right_batch)):
        raise LinkOutOfDate(f"link out of date: '{rule.name}' has new data since it was "
                            f"built: {hint}")
    return int(row.id)


def find_rule(links: Mapping[str, LinkRule], left: str, right: str) -> LinkRule | None:
    for rule in links.values():
        if (rule.left, rule.right) == (left, right):
            return rule
    return None


