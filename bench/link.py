"""Benchmark: link a voter file to its vote history, then a linked turnout release.

Synthetic data only (nothing real): ``--voters`` voters (ncid, name, county, party,
age band, person id) and ``--rows-per-voter`` history rows each on average (ncid,
election, method), sealed into a SQLite vault (or ``--db-url``) through the vault
store (not timed). Then it times:

* ``link``: ``vault.linkage.build_link`` (open the ncid of every subject in memory,
  HMAC under the link key, store the digests, derive the pairs, ledger);
* ``release``: ``run_linked_release`` of turnout by party x age band in one
  election (charge on both datasets, decrypt, join, OpenDP, ledger).

Peak resident memory of the process is printed (``ru_maxrss``).

    python bench/link.py [--voters 1000000] [--rows-per-voter 10]

Goal (issue 15): 1M voters x 10M history rows, link <= 30 s, release <= 10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POLICY = """
[datasets.nc_history]
columns = ["election_desc", "voting_method"]

[datasets.nc_history.group_by]
election_desc = ["11/06/2018 GENERAL", "05/08/2018 PRIMARY"]
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--voters", type=int, default=100_000)
    ap.add_argument("--rows-per-voter", type=int, default=10)
    ap.add_argument("--batch", type=int, default=200_000)
    ap.add_argument("--db-url", default=None)
    args = ap.parse_args()

    from policies.load import default_policy_text
    from vault.access import Principal, installed_policy
    from vault.db import make_engine
    from vault.dp.linked import LinkedRequest, run_linked_release
    from vault.home import VaultHome
    from vault.identity import pseudonyms
    from vault.keyring import Keyring, now
    from vault.keys import provider_for
    from vault.linkage import build_link
    from vault.principals import add_principal
    from vault.setup import init_home
    from vault.store import T_SOURCE, ColumnLayout, StoredColumn, dataset_id, write_batch

    tmp = Path(tempfile.mkdtemp(prefix="cv-bench-link-"))
    home = VaultHome(tmp / "home", db_url_override=args.db_url)
    init_home(home)
    home.policy_path.write_text(default_policy_text().replace("analyst_cap = 3.0",
                                                              "analyst_cap = 100.0") + POLICY)
    engine = make_engine(home.db_url)
    keyring = Keyring(provider_for(home))
    person_key = secrets.token_bytes(32)
    voters_layout = ColumnLayout(columns=(
        StoredColumn("ncid", "direct", "id"), StoredColumn("party_cd", "attribute"),
        StoredColumn("age_band", "attribute"), StoredColumn("__person", "attribute")),
        identity="ncid")
    history_layout = ColumnLayout(columns=(
        StoredColumn("ncid", "direct", "id"), StoredColumn("election_desc", "attribute"),
        StoredColumn("voting_method", "attribute"), StoredColumn("__person", "attribute")))
    rng = np.random.default_rng(7)
    n = args.voters
    ids = np.array([f"BB{i:08d}" for i in range(n)])
    parties = np.array(["DEM", "REP", "UNA"])
    bands = np.array(["18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75+"])
    per = rng.poisson(args.rows_per_voter, n)
    hist_ids = np.repeat(ids, per)
    elections = np.array(["11/06/2018 GENERAL", "05/08/2018 PRIMARY"])

    def store(name: str, layout: ColumnLayout, frame: pl.DataFrame) -> None:
        with engine.begin() as conn:
            ds = dataset_id(conn, name, create_with=("bench", layout.to_json()))
            src = int(conn.execute(T_SOURCE.insert().values(
                dataset_id=ds, content_hash=secrets.token_hex(16), rows=frame.height,
                batches=1, created=now()).returning(T_SOURCE.c.id)).scalar_one())
        for b, start in enumerate(range(0, frame.height, args.batch)):
            with engine.begin() as conn:
                write_batch(conn, keyring, ds_id=ds, dataset=name, source_id=src,
                            batch_index=b, frame=frame.slice(start, args.batch), layout=layout,
                            actor="bench")

    t0 = time.perf_counter()
    store("nc_voters", voters_layout, pl.DataFrame({
        "ncid": ids, "party_cd": parties[rng.integers(0, 3, n)],
        "age_band": bands[rng.integers(0, 7, n)],
        "__person": pseudonyms(person_key, pl.Series([f"VOTER_ID:{i}" for i in ids]))}))
    store("nc_history", history_layout, pl.DataFrame({
        "ncid": hist_ids, "election_desc": elections[rng.integers(0, 2, len(hist_ids))],
        "voting_method": "IN-PERSON",
        "__person": pl.Series(["x"] * len(hist_ids))}))
    setup = time.perf_counter() - t0
    with engine.begin() as conn:
        add_principal(conn, "ana", "analyst")
    rule = installed_policy(home).links["nc_voter_history"]

    t0 = time.perf_counter()
    with engine.begin() as conn:
        stats = build_link(conn, keyring, rule, "bench")
    link_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = run_linked_release(engine, home, Principal("ana", "analyst"), LinkedRequest(
        "nc_voters", "nc_history", ("party_cd", "age_band"), ("turnout",), Fraction(1, 2),
        where=(("election_desc", ("11/06/2018 GENERAL",)),)))
    release_s = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"voters": n, "history_rows": len(hist_ids), "pairs": stats.pairs,
                      "setup_s": round(setup, 2), "link_s": round(link_s, 2),
                      "release_s": round(release_s, 2), "groups": len(result.rows),
                      "peak_rss_mb": round(peak_mb), "loadavg": os.getloadavg()[0],
                      "db": engine.dialect.name}))


if __name__ == "__main__":
    main()
