"""The link tables and their verification, light enough for ``ledger verify``.

``vault.linkage`` builds links (it needs Polars and NumPy); verification only re-derives
each link's pairs in SQL and hashes them, so it lives here, with the tables, and
``vault.state_verify`` imports nothing heavy.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, func, select

__all__ = ["LAYOUT", "LEFT", "RIGHT", "T_CUT", "T_KEYS", "T_LINK", "T_MEMBER", "has_key_table",
           "has_link_tables", "hash_pairs", "pairs_sql", "state_hash", "verify_links"]

#: Sides of a link.
LEFT, RIGHT = 0, 1
#: The link table layout this code writes. 1 (migration 0009): one member row per subject
#: on both sides, ledgered with the hash of the pair list. 2 (migration 0010): a right
#: side with a blind-indexed id keeps one ``vault_link_keys`` row per distinct blind
#: digest (its subjects follow from the blind index), and the ledger vouches for the
#: hash of the link's stored state (:func:`state_hash`), from which the pairs derive.
LAYOUT = 2

_MD = sa.MetaData()
T_LINK = sa.Table(
    "vault_links", _MD,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128)),
    sa.Column("left_dataset_id", sa.Integer),
    sa.Column("right_dataset_id", sa.Integer),
    sa.Column("key_id", sa.Integer),
    sa.Column("spec_hash", sa.String(64)),
    sa.Column("left_batch", sa.BigInteger),
    sa.Column("right_batch", sa.BigInteger),
    sa.Column("pairs_hash", sa.String(64)),
    sa.Column("built_at", sa.String),
    sa.Column("layout", sa.Integer),  # migration 0010
    # layout 2: the right dataset's blind-indexed id column its members are keyed by
    # (``vault_link_keys``); NULL: one ``vault_link_members`` row per right subject
    sa.Column("right_blind", sa.String(256)),
)
T_MEMBER = sa.Table(
    "vault_link_members", _MD,
    sa.Column("link_id", sa.Integer, primary_key=True),
    sa.Column("side", sa.SmallInteger, primary_key=True),
    sa.Column("subject_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("digest", sa.LargeBinary),
)
T_CUT = sa.Table(
    "vault_link_cut", _MD,
    sa.Column("link_id", sa.Integer, primary_key=True),
    sa.Column("digest", sa.LargeBinary, primary_key=True),
    sa.Column("cut_at", sa.String),
)
T_KEYS = sa.Table(  # layout 2: right-side members by blind digest (migration 0010)
    "vault_link_keys", _MD,
    sa.Column("link_id", sa.Integer, primary_key=True),
    sa.Column("blind", sa.LargeBinary, primary_key=True),
    sa.Column("digest", sa.LargeBinary),
)



def has_link_tables(conn: Connection) -> bool:
    """False in a vault created before migration 0009 (it has no links to keep)."""
    return bool(sa.inspect(conn).has_table("vault_links"))


def has_key_table(conn: Connection) -> bool:
    """False in a vault not migrated to 0010 (``civicvault init`` migrates it)."""
    return bool(sa.inspect(conn).has_table("vault_link_keys"))


def _rows(conn: Connection, stmt: Any) -> Any:
    """The driver's rows of ``stmt``, a chunk at a time (no Row object per row; only ids
    and names are rendered into the statement)."""
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(sql)
        while rows := cur.fetchmany(100_000):
            yield rows
    finally:
        cur.close()


def state_hash(conn: Connection, link_id: int) -> str:
    """Layout 2's ledgered hash: SHA-256 over a domain tag and three sections, the link's
    stored state in primary-key order: the member rows (side, subject, digest), the right
    side's key rows (blind digest, digest) and the cut digests. A section is its row
    count (u64 little-endian) and one SHA-256 per column: int columns as little-endian
    i64, byte columns as the u32 lengths then the bytes. The pairs are a function of this
    state and of the blind index (itself vouched for by the ingest and erasure entries),
    so verifying it verifies them without reading every pair (~10 per voter in a vote
    history). Columnar: no Python object per row beyond the driver's tuples."""
    import numpy as np

    h = hashlib.sha256(b"civicvault/link-state/v2")
    sections = [
        (select(T_MEMBER.c.side, T_MEMBER.c.subject_id, T_MEMBER.c.digest)
         .where(T_MEMBER.c.link_id == link_id)
         .order_by(T_MEMBER.c.side, T_MEMBER.c.subject_id), (True, True, False)),
        (select(T_KEYS.c.blind, T_KEYS.c.digest).where(T_KEYS.c.link_id == link_id)
         .order_by(T_KEYS.c.blind), (False, False)),
        (select(T_CUT.c.digest).where(T_CUT.c.link_id == link_id)
         .order_by(T_CUT.c.digest), (False,)),
    ]
    for stmt, ints in sections:
        cols = [hashlib.sha256() for _ in ints]
        n = 0
        for rows in _rows(conn, stmt):
            n += len(rows)
            for col, is_int, values in zip(cols, ints, zip(*rows, strict=True), strict=True):
                if is_int:
                    col.update(np.asarray(values, dtype="<i8").tobytes())
                else:
                    blobs = [bytes(v) for v in values]
                    col.update(np.fromiter(map(len, blobs), dtype="<u4",
                                           count=len(blobs)).tobytes())
                    col.update(b"".join(blobs))
        h.update(struct.pack("<Q", n))
        for col in cols:
            h.update(col.digest())
    return h.hexdigest()


def hash_pairs(left: Sequence[int] | Any, right: Sequence[int] | Any) -> str:
    """``pairs_hash``: SHA-256 over a domain tag, the pair count (u64) and each pair
    (left subject, right subject) as two little-endian i64, in the order given."""
    h = hashlib.sha256(b"civicvault/link-pairs/v1")
    h.update(struct.pack(">Q", len(left)))
    if len(left):
        if hasattr(left, "dtype"):  # NumPy arrays from the builder: no Python loop
            import numpy as np

            h.update(np.column_stack([np.asarray(left), np.asarray(right)])
                     .astype("<i8").tobytes())
        else:
            flat = list(chain.from_iterable(zip(left, right, strict=True)))
            h.update(struct.pack(f"<{len(flat)}q", *flat))
    return h.hexdigest()


def pairs_sql(conn: Connection, link_id: int) -> str:
    """``pairs_hash`` of the link computed by the database alone (no Polars: the state
    verification runs in a forked process, where Polars' thread pool may not be used)."""
    m, l2 = T_MEMBER.alias("r"), T_MEMBER.alias("l")
    unique = (select(T_MEMBER.c.digest).where(T_MEMBER.c.link_id == link_id,
                                               T_MEMBER.c.side == LEFT)
              .group_by(T_MEMBER.c.digest).having(func.count() == 1))
    stmt = (select(l2.c.subject_id, m.c.subject_id)
            .join(l2, (l2.c.link_id == m.c.link_id) & (l2.c.side == LEFT)
                  & (l2.c.digest == m.c.digest))
            .where(m.c.link_id == link_id, m.c.side == RIGHT, l2.c.digest.in_(unique))
            .order_by(l2.c.subject_id, m.c.subject_id))
    # the driver's cursor, a chunk of tuples at a time into NumPy: no Row object per pair
    # (a 10M-pair link); ids and names only are rendered into the statement
    import numpy as np

    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    chunks = []
    try:
        cur.execute(sql)
        while rows := cur.fetchmany(250_000):
            chunks.append(np.array(rows, dtype=np.int64).reshape(-1, 2))
    finally:
        cur.close()
    pairs = np.concatenate(chunks) if chunks else np.empty((0, 2), dtype=np.int64)
    return hash_pairs(pairs[:, 0], pairs[:, 1])


def verify_links(conn: Connection, expected: Mapping[str, tuple[str, int]],
                 layouts: Mapping[str, int] | None = None) -> int:
    """``ledger verify``: each link's stored state against the hash of its last
    ``link.build`` / ``link.cut`` entry (``expected``: name -> (hash, seq); ``layouts``:
    name -> the layout that entry names, 1 when it names none). Layout 2: the hash of the
    member, key and cut rows (:func:`state_hash`); layout 1: the pairs re-derived from
    ``vault_link_members``. A pair added, removed or moved in the tables is found.
    Returns links checked."""
    from vault.errors import StateMismatch

    if not has_link_tables(conn):
        if expected:
            name, (_, seq) = sorted(expected.items())[0]
            raise StateMismatch("vault_links", name, "the ledger vouches for a link but the "
                                "database has no link tables", seq=seq)
        return 0
    rows = {str(r.name): int(r.id) for r in conn.execute(select(T_LINK.c.name, T_LINK.c.id))}
    for name in sorted(set(rows) | set(expected)):
        want = expected.get(name)
        if name not in rows or want is None:
            raise StateMismatch("vault_links", name, "a link without its ledger entry, or an "
                                "entry without its link", seq=want[1] if want else None)
        layout = (layouts or {}).get(name, 1)
        got = state_hash(conn, rows[name]) if layout >= 2 else pairs_sql(conn, rows[name])
        if got != want[0]:
            raise StateMismatch("vault_link_members" if layout < 2 else
                                "vault_link_members/vault_link_keys", name,
                                "the link's stored rows differ from the hash the ledger "
                                "vouches for", seq=want[1])
    return len(rows)
