"""PostgreSQL: keep the ingest's dedup lookups fast whatever the planner knows.

A bulk ``COPY`` leaves ``vault_subjects``, ``vault_blind_index`` and ``vault_records``
unanalysed until autovacuum gets round to them. An ingest killed after its first
batch (before the end-of-ingest ``ANALYZE`` in ``vault.store.write_batches``) left
the rerun planning its dedup lookups as if those tables held one row: the lookup of
2,000 digests became an index range scan over *every* digest of the column with the
2,000-element array as a filter, once per chunk, so a resume grew quadratically
(516 s for what a clean ingest does in ~40 s; issue 21). Two fixes, either enough:

* :func:`lookup_sql`: the lookup is one primary-key probe per wanted digest
  (``unnest`` + ``LATERAL ... OFFSET 0``, so the planner cannot flatten it into a
  hash join over the whole column): its cost follows the batch, not the table, with
  or without statistics.
* :func:`refresh_stale_statistics`: before a resumed ingest asks the database, the
  bulk tables whose rows changed by more than a fifth since their last analyse
  (or that were never analysed) are analysed: ~0.1-0.3 s, sampled by PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import Connection, LargeBinary, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import TextClause

BULK_TABLES = ("vault_subjects", "vault_blind_index", "vault_records")
STALE_FRACTION = 0.2
STALE_MIN_ROWS = 1_000

_LOOKUP = text("""
SELECT b.digest, s.id, s.fingerprint, s.wrapped_key, s.key_id, s.current_batch_id, s.current_row
FROM unnest(CAST(:wanted AS bytea[])) AS w(digest)
CROSS JOIN LATERAL (
    SELECT bi.digest, bi.subject_id FROM vault_blind_index AS bi
    WHERE bi.dataset_id = :ds AND bi."column" = :col AND bi.digest = w.digest
    OFFSET 0
) AS b
JOIN vault_subjects AS s ON s.id = b.subject_id
WHERE s.erased_at IS NULL
""").bindparams(bindparam("wanted", type_=ARRAY(LargeBinary)))


def lookup_sql() -> TextClause:
    """Live subjects by identity digest (params ``wanted``, ``ds``, ``col``): one probe each."""
    return _LOOKUP


def stale_tables(conn: Connection) -> list[str]:
    """Bulk tables the planner has no fresh statistics for."""
    rows = conn.execute(text(
        "SELECT s.relname FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid "
        "WHERE s.schemaname = current_schema() AND s.relname = ANY(:names) AND ("
        " (c.reltuples < 0 AND s.n_live_tup > 0)"
        " OR s.n_mod_since_analyze > GREATEST(:floor, :fraction * GREATEST(c.reltuples, 0)))"
        " ORDER BY s.relname"),
        {"names": list(BULK_TABLES), "floor": STALE_MIN_ROWS, "fraction": STALE_FRACTION},
    ).scalars().all()
    return [str(r) for r in rows]


def refresh_stale_statistics(conn: Connection) -> list[str]:
    """``ANALYZE`` the bulk tables whose statistics are stale; returns their names."""
    stale = stale_tables(conn)
    if stale:
        conn.execute(text("ANALYZE " + ", ".join(stale)))  # names from BULK_TABLES only
    return stale
