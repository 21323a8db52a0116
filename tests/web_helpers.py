"""A small synthetic vault for the workbench tests (no real data): three counties, four
parties, made-up names; an analyst, a compliance officer and a steward with tokens."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest

from flows.cli import main
from vault.home import VaultHome
from vault.service import Vault

ROLES = ("analyst", "compliance", "steward", "admin", "ingestor")


@dataclass(frozen=True)
class WebVault:
    tmp: Path
    home: VaultHome
    tokens: dict[str, str]  # role -> token (admin: the home's admin token)


def synthetic_csv(path: Path, rows: int = 400) -> Path:
    parties = ["DEM", "REP", "UNA", "LIB"]
    counties = ["CHATHAM", "WAKE", "DURHAM"]
    lines = ["voter_reg_num,first_name,last_name,county_desc,party_cd,birth_age"]
    for i in range(rows):
        lines.append(f"{8_100_000 + i},Qwilla,Zyxquor{i:04d},{counties[i % 3]},"
                     f"{parties[(i * 5) % 7 % 4]},{20 + (i * 7) % 70}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def build(tmp: Path, mp: pytest.MonkeyPatch, db_url: str | None = None) -> WebVault:
    mp.setenv("CIVICVAULT_HOME", str(tmp / "home"))
    for var in ("CIVICVAULT_DB_URL", "CIVICVAULT_TOKEN", "CIVICVAULT_KEK", "PREFECT_API_URL"):
        mp.delenv(var, raising=False)
    if db_url is not None:
        mp.setenv("CIVICVAULT_DB_URL", db_url)
    home = VaultHome.from_env()
    assert main(["init"]) == 0
    with Vault.open(home) as admin:
        tokens = {role: admin.principals_add(f"{role}-1", role) for role in ROLES
                  if role != "admin"}
        tokens["admin"] = home.admin_token_path.read_text().strip()
        admin.ingest(synthetic_csv(tmp / "voters.csv"), "voters")
        admin.budget_set("analyst-1", "voters", Fraction(2))
        admin.checkpoint()  # a saved, signed checkpoint for the health view
    return WebVault(tmp, home, tokens)
