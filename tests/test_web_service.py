"""The workbench's service methods, every role x every method (service matrix style): each
authorises through the installed policy and leaves exactly its decision on the ledger;
and the derived ledger index (``vault.ledger_view``) agrees with the ledger itself."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ledger import store as ledger_store
from policies.errors import PolicyDenied
from tests.web_helpers import ROLES, WebVault, build
from vault import ledger_view
from vault.db import make_engine
from vault.ledger_view import EntryFilter
from vault.service import Vault

ALL = frozenset(ROLES)
NONE = EntryFilter()
METHODS: dict[str, tuple[str, frozenset[str], Callable[[Vault], Any]]] = {
    "catalog": ("policy.show", ALL, lambda v: v.catalog()),
    "policy_diff": ("policy.show", ALL, lambda v: v.policy_diff()),
    "ledger_page": ("ledger.export", frozenset({"compliance", "steward", "admin"}),
                    lambda v: v.ledger_page(NONE, limit=5)),
    "ledger_export_filtered": ("ledger.export", frozenset({"compliance", "steward", "admin"}),
                               lambda v: list(v.ledger_export_filtered(NONE, limit=3))),
    "ledger_activity": ("audit.report", frozenset({"compliance", "admin"}),
                        lambda v: v.ledger_activity(NONE)),
    "my_releases": ("budget.show", frozenset({"analyst", "compliance", "admin"}),
                    lambda v: v.my_releases()),
    "ledger_health": ("ledger.verify", frozenset({"compliance", "steward", "admin"}),
                      lambda v: v.ledger_health()),
}


@pytest.fixture(scope="module")
def wv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebVault]:
    with pytest.MonkeyPatch.context() as mp:
        yield build(tmp_path_factory.mktemp("websvc"), mp)


def _entries(wv: WebVault) -> list[dict[str, Any]]:
    engine = make_engine(wv.home.db_url)
    try:
        with engine.connect() as conn:
            return [json.loads(e) for e in ledger_store.iter_entries(conn)]
    finally:
        engine.dispose()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_view_is_authorised_and_ledgered(wv: WebVault, method: str, role: str) -> None:
    op, allowed, call = METHODS[method]
    before = len(_entries(wv))
    with Vault.open(wv.home, token=wv.tokens[role]) as vault:
        if role in allowed:
            call(vault)
        else:
            with pytest.raises(PolicyDenied):
                call(vault)
    added = _entries(wv)[before:]
    expected = "policy.allowed" if role in allowed else "policy.denied"
    assert [(e["action"], e["details"]["op"], e["actor"]) for e in added] == [
        (expected, op, f"{role}-1" if role != "admin" else "admin")]


def test_whoami_ledgers_nothing(wv: WebVault) -> None:
    before = len(_entries(wv))
    with Vault.open(wv.home, token=wv.tokens["analyst"]) as vault:
        me = vault.whoami()
    assert me["role"] == "analyst" and "release" in me["operations"]
    assert "ledger.export" not in me["operations"]
    assert len(_entries(wv)) == before


def test_index_agrees_with_the_ledger_and_pages_cover_it_once(wv: WebVault) -> None:
    engine = make_engine(wv.home.db_url)
    try:
        size = ledger_view.catch_up(engine, wv.home.root)
        entries = _entries(wv)[:size]
        seen: list[int] = []
        before = None
        while True:
            seqs, total, before = ledger_view.page(wv.home.root, NONE, before=before, limit=7)
            seen += seqs
            if before is None:
                break
        assert total == size and seen == list(range(size - 1, -1, -1))
        denied = [e["seq"] for e in entries if e["action"] == "policy.denied"]
        seqs, total, _ = ledger_view.page(wv.home.root, EntryFilter(section="denials"),
                                          before=None, limit=500)
        assert sorted(seqs) == denied and total == len(denied)
        # per-day counts kept by catch_up == counting the entries
        kept = ledger_view.timeline(wv.home.root, NONE, by="actor")
        counted = Counter((e["time"][:10], e["actor"]) for e in entries)
        assert {(r["day"], r["actor"]): r["entries"] for r in kept} == dict(counted)
        scanned = ledger_view.timeline(wv.home.root, EntryFilter(since="2000-01-01T00:00Z"),
                                       by="actor")
        assert scanned == kept
    finally:
        engine.dispose()


def test_rewritten_ledger_makes_the_index_rebuild(wv: WebVault) -> None:
    """The index is a cache: if the entry it stopped at is not the one it indexed (the log
    was rewritten under it), it starts again from 0 instead of extending a wrong copy."""
    engine = make_engine(wv.home.db_url)
    try:
        size = ledger_view.catch_up(engine, wv.home.root)
        path = ledger_view.index_path(wv.home.root)
        with sqlite3.connect(path) as idx:  # poison the cache so a rebuild is visible
            idx.execute("UPDATE facets SET actor = 'forged' WHERE seq = 0")
        assert ledger_view.catch_up(engine, wv.home.root) == size  # nothing new: kept
        with sqlite3.connect(path) as idx:
            assert idx.execute("SELECT actor FROM facets WHERE seq = 0").fetchone()[0] == \
                "forged"
            # what the index remembers of its last entry no longer matches the ledger's
            # (the ledger table is append-only, so the cache's memory is what changes here)
            idx.execute("UPDATE meta SET v = ? WHERE k = 'last_leaf'", ("00" * 32,))
        assert ledger_view.catch_up(engine, wv.home.root) == size
        with sqlite3.connect(path) as idx:
            assert idx.execute("SELECT actor FROM facets WHERE seq = 0").fetchone()[0] != \
                "forged"
    finally:
        engine.dispose()


def test_bad_filters_are_refused_without_echo() -> None:
    for kwargs in ({"since": "last week"}, {"principal": "a b"}, {"section": "secrets"},
                   {"until": "2026-13"}):
        with pytest.raises(Exception) as info:
            EntryFilter(**kwargs)
        assert next(iter(kwargs.values())) not in str(info.value)


@pytest.mark.postgres
def test_paging_and_export_with_proofs_on_postgresql(
        pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The same views on a PostgreSQL vault (the index stays a SQLite file of the home)."""
    from ledger import merkle

    with pytest.MonkeyPatch.context() as mp:
        pg = build(tmp_path_factory.mktemp("webpg"), mp, pg_url)
        with Vault.open(pg.home, token=pg.tokens["compliance"]) as vault:
            first = vault.ledger_page(NONE, limit=10)
            assert first["total"] == first["size"] and len(first["entries"]) == 10
            nxt = vault.ledger_page(NONE, before=first["next_before"], limit=10)
            assert nxt["entries"][0]["seq"] == first["entries"][-1]["seq"] - 1
            exported = list(vault.ledger_export_filtered(EntryFilter(action="ingest")))
            assert exported
            for raw, proof in exported:
                assert merkle.leaf_hash(raw).hex() == proof["leaf_hash"]
                root = merkle.root_from_inclusion_proof(
                    proof["leaf_index"], proof["tree_size"], merkle.leaf_hash(raw),
                    [bytes.fromhex(h) for h in proof["inclusion_path"]])
                assert root.hex() == proof["root_hash"]
            assert vault.ledger_health()["verification"]["ok"] is True


def test_filtered_counts_stop_at_the_cap(wv: WebVault, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounded work per page view: a filtered count stops at COUNT_CAP + 1 and says so."""
    monkeypatch.setattr(ledger_view, "COUNT_CAP", 3)
    with Vault.open(wv.home, token=wv.tokens["compliance"]) as vault:
        many = vault.ledger_page(EntryFilter(action="policy.allowed"), limit=2)
        assert many["total"] == 4 and many["total_capped"] is True
        assert len(many["entries"]) == 2 and many["next_before"] is not None
        whole = vault.ledger_page(NONE, limit=2)
        assert whole["total"] == whole["size"] > 4 and whole["total_capped"] is False
