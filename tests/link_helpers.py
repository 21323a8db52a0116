"""Synthetic voter file + vote history with known links, stored through the real write path."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine
from vault_helpers import store

from vault.identity import pseudonyms
from vault.keyring import Keyring
from vault.store import BatchResult, ColumnLayout, StoredColumn

VOTER_LAYOUT = ColumnLayout(
    columns=(
        StoredColumn("ncid", "direct", "id"),
        StoredColumn("name", "direct", "text"),
        StoredColumn("street", "direct", "text"),
        StoredColumn("zip", "attribute"),
        StoredColumn("county_desc", "attribute"),
        StoredColumn("party_cd", "attribute"),
        StoredColumn("age_band", "attribute"),
        StoredColumn("__person", "attribute"),
    ),
    identity="ncid",
)
HISTORY_LAYOUT = ColumnLayout(
    columns=(
        StoredColumn("ncid", "direct", "id"),
        StoredColumn("election_desc", "attribute"),
        StoredColumn("voting_method", "attribute"),
        StoredColumn("__person", "attribute"),
    ),
    identity=None,
)
DONOR_LAYOUT = ColumnLayout(
    columns=(
        StoredColumn("donor_name", "direct", "text"),
        StoredColumn("address", "direct", "text"),
        StoredColumn("zip", "attribute"),
        StoredColumn("amount", "attribute"),
        StoredColumn("county_desc", "attribute"),
        StoredColumn("__person", "attribute"),
    ),
    identity=None,
)
PARTIES = ["DEM", "REP", "UNA"]
BANDS = ["18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75+"]
COUNTIES = ["WAKE", "CHATHAM", "ORANGE"]
GENERAL = "11/06/2018 GENERAL"
PRIMARY = "05/08/2018 PRIMARY"
_PERSON_KEY = secrets.token_bytes(32)

LINK_POLICY = """
[datasets.nc_history]
columns = ["election_desc", "voting_method"]

[datasets.nc_history.group_by]
election_desc = ["11/06/2018 GENERAL", "05/08/2018 PRIMARY"]
voting_method = ["IN-PERSON", "ABSENTEE"]

[datasets.nc_history.privacy_unit]
rows_per_person = 20

[datasets.donors]
columns = ["county_desc", "amount"]

[datasets.donors.bounds]
amount = { lower = 0, upper = 1000 }

[datasets.donors.privacy_unit]
rows_per_person = 5

[links.voter_donors]
left = "nc_voters"
right = "donors"
left_key = ["name", "street", "zip"]
right_key = ["donor_name", "address", "zip"]
match = "name_address"
rows_per_person = 3
"""


def person(ids: list[str]) -> pl.Series:
    return pseudonyms(_PERSON_KEY, pl.Series([f"VOTER_ID:{i}" for i in ids]))


def voter_file(n: int, start: int = 0) -> pl.DataFrame:
    ids = [f"AA{start + i:06d}" for i in range(n)]
    return pl.DataFrame({
        "ncid": ids,
        "name": [f"Zed{start + i} Quill" for i in range(n)],
        "street": [f"{100 + i} Oak Street" for i in range(start, start + n)],
        "zip": [f"27{(start + i) % 1000:03d}-1234" for i in range(n)],
        "county_desc": [COUNTIES[(start + i) % 3] for i in range(n)],
        "party_cd": [PARTIES[(start + i) % 3] for i in range(n)],
        "age_band": [BANDS[(start + i) % 7] for i in range(n)],
        "__person": person(ids),
    })


def history(voter_ids: list[str], rows: list[int], elections: list[str] | None = None
            ) -> pl.DataFrame:
    """``rows[i]`` history rows for ``voter_ids[i]``; elections cycle GENERAL, PRIMARY."""
    elections = elections or [GENERAL, PRIMARY]
    ncid: list[str] = []
    elect: list[str] = []
    for v, n in zip(voter_ids, rows, strict=True):
        for j in range(n):
            ncid.append(v)
            elect.append(elections[j % len(elections)])
    return pl.DataFrame({
        # as a history file writes them: padded, lower case, leading zeros are ids too
        "ncid": [f" {x.lower()} " for x in ncid],
        "election_desc": elect,
        "voting_method": ["IN-PERSON" if i % 2 else "ABSENTEE" for i in range(len(ncid))],
        "__person": person(ncid),
    })


def put(engine: Engine, keyring: Keyring, frame: pl.DataFrame, dataset: str,
        layout: ColumnLayout) -> BatchResult:
    return store(engine, keyring, frame, dataset=dataset, layout=layout)


def init_vault(root: Path, extra_policy: str, db_url: str | None = None) -> Any:
    from policies.load import default_policy_text
    from vault.home import VaultHome
    from vault.setup import init_home

    home = VaultHome(root, db_url_override=db_url)
    init_home(home)
    home.policy_path.write_text(default_policy_text() + extra_policy, encoding="utf-8")
    return home
