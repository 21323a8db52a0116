"""Workbench benchmark: the compliance view's pages at 1,000,000 ledger entries.

    python bench/web.py --fixture          # once: a 1M-entry vault under /var/tmp/bench/web
    python bench/web.py                    # time the endpoints (medians of --runs)

The fixture step (cached; ``--rebuild`` to redo) initialises a vault home, adds a
compliance officer, appends ``--entries`` synthetic access decisions (allowed and denied,
20 principals, several operations and datasets) through the ledger's own append path,
saves a signed checkpoint, builds the derived index (``vault.ledger_view``) and runs the
health verification once (its verdict is kept in the server process, so the timing run
does it once too, in the warm-up, and reports it on its own line).

Timed, in process through the ASGI app (FastAPI TestClient: server time plus an in-memory
client), each a median of ``--runs`` after one warm-up: the first page, a filtered page
(one principal's denials), a denials page, a page deep in the log (keyset cursor), the
health view (kept verdict) and the charts. Every request is authenticated, authorised and
ledgered like any other (so the log grows by one entry per request). Baseline in the same
run: a bare SQLite ``SELECT`` of one page of 50 entry rows by seq. Goal (issue 14): first
page and filtered page <= 300 ms each.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import median_time

ROOT = Path(os.environ.get("CIVICVAULT_BENCH_WEB", "/var/tmp/bench/web"))
HOME = ROOT / "home"
TOKEN = ROOT / "compliance.token"
DONE = ROOT / "fixture.done"
OPS = ("release", "ledger.export", "budget.show", "policy.show", "audit.report", "segment")
DATASETS = ("nc_voters", "nc_history", "donors", "volunteers")


def build_fixture(entries: int) -> None:
    import shutil

    from flows.cli import main
    from ledger import store
    from ledger.entry import EntryDraft
    from vault import ledger_view
    from vault.db import make_engine
    from vault.home import VaultHome
    from vault.service import Vault

    if HOME.exists():
        shutil.rmtree(HOME)
    ROOT.mkdir(parents=True, exist_ok=True)
    os.environ["CIVICVAULT_HOME"] = str(HOME)
    os.environ.pop("CIVICVAULT_DB_URL", None)
    assert main(["init"]) == 0
    home = VaultHome.from_env()
    with Vault.open(home) as admin:
        TOKEN.write_text(admin.principals_add("compliance-1", "compliance") + "\n")
        TOKEN.chmod(0o600)
    engine = make_engine(home.db_url)
    t0 = time.perf_counter()
    batch = 10_000
    for lo in range(0, entries, batch):
        drafts = []
        for i in range(lo, min(lo + batch, entries)):
            actor = f"principal-{i % 20:02d}"
            op = OPS[i % len(OPS)]
            ds = DATASETS[(i // 7) % len(DATASETS)]
            if i % 97 == 0:
                drafts.append(EntryDraft(actor=actor, action="policy.denied",
                                         resource=f"dataset/{ds}",
                                         details={"op": op, "role": "analyst",
                                                  "reason": f"role 'analyst' may not {op}"}))
            else:
                drafts.append(EntryDraft(actor=actor, action="policy.allowed",
                                         resource=f"dataset/{ds}",
                                         details={"op": op, "role": "analyst"}))
        with engine.begin() as conn:
            store.append(conn, drafts)
        if lo % 200_000 == 0:
            print(f"  appended {lo + len(drafts):,} entries", flush=True)
    print(f"appended {entries:,} entries in {time.perf_counter() - t0:.1f} s", flush=True)
    with Vault.open(home) as admin:
        admin.checkpoint()
    t0 = time.perf_counter()
    ledger_view.catch_up(engine, home.root)
    print(f"built the derived index in {time.perf_counter() - t0:.1f} s (one-off)", flush=True)
    engine.dispose()
    DONE.write_text(f"{entries}\n")


def bare_page(db: Path, before: int) -> None:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT seq, entry FROM ledger_entries WHERE seq < ? "
                            "ORDER BY seq DESC LIMIT 50", (before,)).fetchall()
        assert len(rows) == 50


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixture", action="store_true", help="build the fixture if missing")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the fixture")
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    if args.fixture or args.rebuild:
        if args.rebuild or not DONE.exists():
            build_fixture(args.entries)
        else:
            from vault import ledger_view
            from vault.db import make_engine

            engine = make_engine(f"sqlite:///{HOME / 'vault.db'}")
            t0 = time.perf_counter()
            ledger_view.catch_up(engine, HOME)  # a new index layout is rebuilt here
            engine.dispose()
            print(f"fixture ready: {ROOT} ({DONE.read_text().strip()} entries; index "
                  f"caught up in {time.perf_counter() - t0:.1f} s)")
        return
    if not DONE.exists():
        sys.exit(f"no fixture: run 'python bench/web.py --fixture' first ({ROOT})")

    from fastapi.testclient import TestClient

    from flows.api import create_app
    from vault.db import make_engine
    from vault.home import VaultHome

    os.environ["CIVICVAULT_HOME"] = str(HOME)
    os.environ.pop("CIVICVAULT_DB_URL", None)
    home = VaultHome.from_env()
    engine = make_engine(home.db_url)
    client = TestClient(create_app(home, engine))
    auth = {"Authorization": f"Bearer {TOKEN.read_text().strip()}"}

    def get(path: str, **params: object) -> dict[str, object]:
        r = client.get(path, params=params, headers=auth)
        assert r.status_code == 200, r.text[:300]
        out: dict[str, object] = r.json()
        return out

    t0 = time.perf_counter()
    health = get("/api/web/ledger/health")
    first_verify = time.perf_counter() - t0
    size = int(str(health["size"]))
    cases: dict[str, Callable[[], dict[str, object]]] = {
        "first page (50 newest)": lambda: get("/api/web/ledger/entries", limit=50),
        "filtered page (one principal's denials)":
            lambda: get("/api/web/ledger/entries", principal="principal-07",
                        action="policy.denied", limit=50),
        "filtered page (dataset + operation)":
            lambda: get("/api/web/ledger/entries", dataset="donors", action="segment",
                        limit=50),
        "denials tab (section)": lambda: get("/api/web/ledger/entries", section="denials"),
        "deep page (cursor at the middle)":
            lambda: get("/api/web/ledger/entries", before=size // 2, limit=50),
        "health (kept verdict)": lambda: get("/api/web/ledger/health"),
        "charts (timelines + spend, whole log)": lambda: get("/api/web/ledger/charts"),
    }
    db = home.db_path
    print(f"ledger entries: {size:,}   runs: {args.runs} (medians)   "
          f"load: {os.getloadavg()[0]:.2f}")
    print(f"{'what':46} {'median':>10}  goal")
    base = median_time(lambda: bare_page(db, size // 2), args.runs)
    print(f"{'baseline: bare SELECT of one page of 50':46} {base * 1000:8.1f} ms")
    print(f"{'health, first call (verifies the whole log)':46} {first_verify * 1000:8.1f} ms")
    for name, fn in cases.items():
        fn()  # warm-up
        t = median_time(fn, args.runs)
        goal = "<= 300 ms" if name.startswith(("first page", "filtered page")) else ""
        print(f"{name:46} {t * 1000:8.1f} ms  {goal}")
    client.close()
    engine.dispose()


if __name__ == "__main__":
    main()
