"""A derived, rebuildable index of the ledger for paging, filters and charts (web views).

The ledger (``ledger_entries``: seq, leaf hash, canonical bytes) is the truth and holds
no column to filter on. Browsing a million entries by principal, action, dataset or time
needs indexed columns, so this module keeps a *cache* of a few public fields of every
entry (seq, time, actor, action, operation, section, dataset, epsilon charged) in a
SQLite file of the vault home (``cache/ledger_view.sqlite``), whatever database the
vault is on. Ledger entries hold identifiers, counts and hashes only (never personal
data), so neither does this file.

* :func:`catch_up` indexes the entries appended since the last call (one ``seq`` range
  read of ``ledger_entries``); if the entry it stopped at no longer has the leaf hash it
  indexed (the ledger was rewritten or truncated), it rebuilds from 0. Nothing here
  decides whether the ledger is intact: that is verification's job.
* :func:`page` is keyset paging (``seq < before ORDER BY seq DESC LIMIT n``) over the
  indexed columns; time ranges become seq ranges through the time index.
* Entries shown are read back from ``ledger_entries`` by seq (:func:`read_entries`):
  the cache picks *which* entries, the ledger says *what* they are.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, select

from ledger import store as ledger_store
from ledger.errors import BadInput
from policies.vocab import VAULT_REVEAL, UnknownAction, ledger_action

__all__ = ["EntryFilter", "catch_up", "index_path", "page", "read_entries", "spend",
           "timeline"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS facets (
  seq INTEGER PRIMARY KEY, t TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
  op TEXT, section TEXT, dataset TEXT, epsilon REAL);
CREATE INDEX IF NOT EXISTS facets_actor ON facets(actor, seq);
CREATE INDEX IF NOT EXISTS facets_action ON facets(action, seq);
CREATE INDEX IF NOT EXISTS facets_op ON facets(op, seq);
CREATE INDEX IF NOT EXISTS facets_section ON facets(section, seq);
CREATE INDEX IF NOT EXISTS facets_dataset ON facets(dataset, seq);
CREATE INDEX IF NOT EXISTS facets_t ON facets(t);
CREATE TABLE IF NOT EXISTS daily (
  day TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, n INTEGER NOT NULL,
  PRIMARY KEY (day, kind, key));
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""
_VERSION = "2"  # of the layout above: another one is rebuilt from the ledger
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?Z?)?")
_VALUE = re.compile(r"[A-Za-z0-9_.:/*@+-]{1,200}")
SECTIONS = ("denials", "releases", "erasures", "key_events", "reveals")
MAX_PAGE = 500
COUNT_CAP = 10_000
_CHUNK = 20_000


def index_path(home_root: Path) -> Path:
    return home_root / "cache" / "ledger_view.sqlite"


@dataclass(frozen=True)
class EntryFilter:
    """What the compliance view filters on; every field optional. Values are matched,
    never echoed (a bad one is a BadInput naming the field only)."""

    principal: str | None = None
    action: str | None = None  # a ledger action (policy.denied) or an operation (release)
    dataset: str | None = None
    section: str | None = None  # denials | releases | erasures | key_events | reveals
    since: str | None = None  # RFC 3339 (or its date), inclusive
    until: str | None = None  # RFC 3339 (or its date: the whole day), inclusive

    def __post_init__(self) -> None:
        for name in ("principal", "action", "dataset"):
            value = getattr(self, name)
            if value is not None and not _VALUE.fullmatch(value):
                raise BadInput(f"bad {name} filter (letters, digits and _ . : / - only)")
        if self.section is not None and self.section not in SECTIONS:
            raise BadInput(f"bad section filter: one of {', '.join(SECTIONS)}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and not _TIME.fullmatch(value):
                raise BadInput(f"bad {name} filter: a date (2026-01-31) or RFC 3339 UTC time")

    def where(self, conn: sqlite3.Connection) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.principal is not None:
            clauses.append("actor = ?")
            params.append(self.principal)
        if self.action is not None:
            clauses.append("(action = ? OR op = ?)" if "." not in self.action else "action = ?")
            params.extend([self.action, self.action] if "." not in self.action
                          else [self.action])
        if self.dataset is not None:
            clauses.append("dataset = ?")
            params.append(self.dataset)
        if self.section is not None:
            clauses.append("section = ?")
            params.append(self.section)
        if self.since is not None:
            # times grow with seq: the time index gives the first seq, a rowid range after
            first = conn.execute("SELECT min(seq) FROM facets WHERE t >= ?",
                                 (self.since,)).fetchone()[0]
            clauses.append("seq >= ? AND t >= ?")
            params.extend([first if first is not None else 2**62, self.since])
        if self.until is not None:
            until = self.until if "T" in self.until else self.until + "T23:59:59.999999Z"
            last = conn.execute("SELECT max(seq) FROM facets WHERE t <= ?",
                                (until,)).fetchone()[0]
            clauses.append("seq <= ? AND t <= ?")
            params.extend([last if last is not None else -1, until])
        return clauses, params

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@contextmanager
def _open(home_root: Path) -> Iterator[sqlite3.Connection]:
    path = index_path(home_root)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fresh = not path.exists()
    with closing(sqlite3.connect(path, timeout=60, isolation_level=None)) as conn:
        if fresh:
            path.chmod(0o600)  # like the rest of the home: the owner's only
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        yield conn


def _facet(raw: bytes) -> tuple[Any, ...]:
    e = orjson.loads(raw)
    action = str(e["action"])
    details = e.get("details") or {}
    section: str | None
    try:
        section = ledger_action(action, has_details=bool(details) or "data_hash" in e).section
    except UnknownAction:
        section = None
    if action == VAULT_REVEAL:  # its own section here: reveals with their purpose
        section = "reveals"
    resource = str(e.get("resource", ""))
    dataset = details.get("dataset") if isinstance(details.get("dataset"), str) else None
    if dataset is None and resource.startswith("dataset/"):
        dataset = resource.split("/", 1)[1]
    eps = details.get("epsilon_charged") if action == "release.charge" else None
    op = details.get("op")
    return (int(e["seq"]), str(e["time"]), str(e["actor"]), action,
            op if isinstance(op, str) else None, section, dataset,
            float(eps) if isinstance(eps, str | int | float) else None)


def catch_up(engine: Engine, home_root: Path) -> int:
    """Index every entry not indexed yet; returns the ledger size indexed."""
    with _open(home_root) as idx, engine.connect() as conn:
        conn.execution_options(readonly=True)
        size = ledger_store.size(conn)
        meta = dict(idx.execute("SELECT k, v FROM meta").fetchall())
        done = int(meta.get("size", 0))
        if meta.get("version", "1" if done else _VERSION) != _VERSION or (done and (
                done > size or ledger_store.leaf_hashes(conn, done - 1, done)[0].hex()
                != meta.get("last_leaf"))):
            idx.execute("BEGIN IMMEDIATE")
            for table in ("facets", "daily", "meta"):
                idx.execute(f"DELETE FROM {table}")
            idx.execute("COMMIT")
            done = 0
        if done >= size:
            return size
        idx.execute("BEGIN IMMEDIATE")
        try:
            done = int(dict(idx.execute("SELECT k, v FROM meta").fetchall()).get("size", done))
            pos = done
            for chunk, _ in ledger_store.iter_chunks(conn, done, size):
                rows = [_facet(raw) for raw in chunk]
                idx.executemany("INSERT OR REPLACE INTO facets VALUES (?,?,?,?,?,?,?,?)", rows)
                per_day: Counter[tuple[str, str, str]] = Counter()
                for r in rows:
                    per_day[(r[1][:10], "actor", r[2])] += 1
                    per_day[(r[1][:10], "action", r[3])] += 1
                idx.executemany(
                    "INSERT INTO daily VALUES (?, ?, ?, ?) ON CONFLICT (day, kind, key) "
                    "DO UPDATE SET n = n + excluded.n",
                    [(*k, n) for k, n in per_day.items()])
                pos += len(chunk)
            if pos > done:
                last = ledger_store.leaf_hashes(conn, pos - 1, pos)[0].hex()
                idx.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                [("size", str(pos)), ("last_leaf", last),
                                 ("version", _VERSION)])
            idx.execute("COMMIT")
        except BaseException:
            idx.execute("ROLLBACK")
            raise
        return pos


def page(home_root: Path, flt: EntryFilter, *, before: int | None, limit: int,
         ) -> tuple[list[int], int, int | None]:
    """(seqs newest first, how many entries match in all, the cursor of the next page).
    With a filter the count stops at ``COUNT_CAP`` + 1 (bounded work per page view: a
    caller shows "more than COUNT_CAP"); without one it is the number indexed."""
    if not 1 <= limit <= MAX_PAGE:
        raise BadInput(f"limit must be 1..{MAX_PAGE}")
    with _open(home_root) as idx:
        clauses, params = flt.where(idx)
        where = " AND ".join(clauses) or "1"
        if clauses:
            total = int(idx.execute(f"SELECT count(*) FROM (SELECT 1 FROM facets WHERE {where}"
                                    " LIMIT ?)", [*params, COUNT_CAP + 1]).fetchone()[0])
        else:
            total = int(dict(idx.execute("SELECT k, v FROM meta").fetchall()).get("size", 0))
        if before is not None:
            clauses, params = [*clauses, "seq < ?"], [*params, before]
        where = " AND ".join(clauses) or "1"
        seqs = [int(r[0]) for r in idx.execute(
            f"SELECT seq FROM facets WHERE {where} ORDER BY seq DESC LIMIT ?",
            [*params, limit + 1])]
    more = seqs[limit] if len(seqs) > limit else None
    seqs = seqs[:limit]
    return seqs, total, (seqs[-1] if more is not None else None)


def all_seqs(home_root: Path, flt: EntryFilter, *, limit: int) -> list[int]:
    """Every matching seq, oldest first, at most ``limit`` (exports)."""
    with _open(home_root) as idx:
        clauses, params = flt.where(idx)
        where = " AND ".join(clauses) or "1"
        return [int(r[0]) for r in idx.execute(
            f"SELECT seq FROM facets WHERE {where} ORDER BY seq LIMIT ?", [*params, limit])]


def read_entries(engine: Engine, seqs: Sequence[int]) -> list[bytes]:
    """The canonical bytes of entries ``seqs`` from the ledger itself, in that order."""
    if not seqs:
        return []
    t = ledger_store.entries_table
    with engine.connect() as conn:
        conn.execution_options(readonly=True)
        rows = conn.execute(select(t.c.seq, t.c.entry).where(t.c.seq.in_(list(seqs)))).all()
    found = {int(r[0]): bytes(r[1]) for r in rows}
    return [found[s] for s in seqs if s in found]


def timeline(home_root: Path, flt: EntryFilter, *, by: str) -> list[dict[str, Any]]:
    """Entries per day and principal (``by='actor'``) or action (``by='action'``)."""
    column = {"actor": "actor", "action": "action"}.get(by)
    if column is None:
        raise BadInput("timeline by actor or action")
    whole_days = all(v is None or "T" not in v for v in (flt.since, flt.until))
    if whole_days and not (flt.principal or flt.action or flt.dataset or flt.section):
        # per-day counts kept by catch_up: no scan of the entries
        with _open(home_root) as idx:
            rows = idx.execute(
                "SELECT day, key, n FROM daily WHERE kind = ? AND day >= ? AND day <= ? "
                "ORDER BY day", (by, flt.since or "", flt.until or "9999")).fetchall()
        return [{"day": d, by: k, "entries": int(n)} for d, k, n in rows]
    with _open(home_root) as idx:
        clauses, params = flt.where(idx)
        where = " AND ".join(clauses) or "1"
        rows = idx.execute(f"SELECT substr(t, 1, 10) AS d, {column}, count(*) FROM facets "
                           f"WHERE {where} GROUP BY d, {column} ORDER BY d", params).fetchall()
    return [{"day": d, by: k, "entries": int(n)} for d, k, n in rows]


def spend(home_root: Path, flt: EntryFilter) -> list[dict[str, Any]]:
    """Epsilon charged per release (``release.charge``), with the running total of each
    (analyst, dataset), oldest first."""
    with _open(home_root) as idx:
        clauses, params = flt.where(idx)
        where = " AND ".join([*clauses, "action = 'release.charge'"])
        rows = idx.execute(f"SELECT seq, t, actor, dataset, epsilon FROM facets WHERE {where} "
                           "ORDER BY seq LIMIT 20000", params).fetchall()
    totals: dict[tuple[str, str], float] = {}
    out: list[dict[str, Any]] = []
    for seq, t, actor, dataset, eps in rows:
        key = (str(actor), str(dataset))
        totals[key] = totals.get(key, 0.0) + float(eps or 0.0)
        out.append({"seq": int(seq), "time": t, "analyst": actor, "dataset": dataset,
                    "epsilon": float(eps or 0.0), "cumulative": totals[key]})
    return out
