"""A realistic vault to attack: built once per backend through the public CLI, then copied.

Ingest (new rows, then a file with changed and new rows: the update path), policy
apply, principals added and one revoked, a budget set, two DP releases, a
break-glass reveal, an erasure, a key rotation with re-encryption, a saved
checkpoint. Tamper tests work on *copies* (a copied SQLite home, or a PostgreSQL
database cloned from a template), never on the original.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from sqlalchemy import create_engine, text

from flows.cli import main
from policies.load import default_policy_text

RULES = """
[datasets.voters]
columns = ["county_desc", "party_cd"]

[datasets.voters.group_by]
county_desc = ["CHATHAM", "WAKE", "ORANGE"]
party_cd = ["DEM", "REP", "UNA", "LIB"]

[datasets.voters.budget]
per_analyst = 1.0
dataset_cap = 5.0
"""

DROP_CONNECTIONS = 8  # copies dropped at once (see Original.drop_copies)
ENV_KEYS = ("CIVICVAULT_HOME", "CIVICVAULT_DB_URL", "CIVICVAULT_TOKEN")


def _voter_file(path: Path, lo: int, hi: int, *, party: str | None = None) -> Path:
    ids = range(lo, hi)
    pl.DataFrame({
        "voter_reg_num": [f"{100000 + i}" for i in ids],
        "last_name": [f"Quixley{i}" for i in ids],
        "first_name": ["Ann"] * len(ids),
        "party_cd": [party or ["DEM", "REP", "UNA", "LIB"][i % 4] for i in ids],
        "birth_year": [str(1950 + i % 50) for i in ids],
        "county_desc": [["CHATHAM", "WAKE", "ORANGE"][i % 3] for i in ids],
    }).write_csv(path)
    return path


@contextmanager
def env(home: Path, db_url: str | None) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    os.environ["CIVICVAULT_HOME"] = str(home)
    os.environ.pop("CIVICVAULT_TOKEN", None)
    if db_url is None:
        os.environ.pop("CIVICVAULT_DB_URL", None)
    else:
        os.environ["CIVICVAULT_DB_URL"] = db_url
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _ok(*args: str) -> None:
    code = main(list(args))
    if code != 0:
        raise AssertionError(f"civicvault {' '.join(args[:2])} exited {code}")


def build(home: Path, db_url: str | None, work: Path) -> dict[str, str]:
    """Build the vault at ``home`` (and ``db_url``); returns the tokens made."""
    import contextlib
    import io

    work.mkdir(parents=True, exist_ok=True)
    policy = work / "policy.toml"
    policy.write_text(default_policy_text() + RULES, encoding="utf-8")
    first = _voter_file(work / "voters1.csv", 0, 160)
    second = _voter_file(work / "voters2.csv", 120, 200, party="UNA")  # 40 changed, 40 new
    tokens: dict[str, str] = {}
    with env(home, db_url), contextlib.redirect_stdout(io.StringIO()) as out:
        _ok("init")
        _ok("policy", "apply", str(policy))
        for name, role in (("alice", "analyst"), ("sam", "steward"), ("temp", "analyst")):
            _ok("principals", "add", name, "--role", role, "--json")
            tokens[name] = json.loads(out.getvalue().strip().splitlines()[-1])["token"]
        _ok("principals", "revoke", "temp")
        _ok("ingest", str(first), "--dataset", "voters", "--json")
        _ok("ingest", str(second), "--dataset", "voters", "--json")
        _ok("budget", "set", "--analyst", "alice", "--dataset", "voters", "--epsilon", "2")
        for by in ("county_desc", "party_cd"):
            _ok("--token", tokens["alice"], "release", "--dataset", "voters", "--by", by,
                "--measure", "count", "--epsilon", "0.25", "--json")
        _ok("--token", tokens["sam"], "reveal", "--dataset", "voters", "--match",
            "voter_reg_num=100003", "--purpose", "subject-access-request", "--json")
        _ok("erase", "--dataset", "voters", "--match", "voter_reg_num=100007", "--json")
        _ok("erase", "--dataset", "voters", "--match", "voter_reg_num=100130", "--json")
        _ok("keys", "rotate", "--json")
        _ok("ledger", "checkpoint")
    return tokens


@dataclass(frozen=True)
class Copy:
    home: Path
    db_url: str | None

    def verify(self, *extra: str) -> tuple[int, dict[str, object]]:
        """``civicvault ledger verify --json`` on this copy: (exit code, its JSON)."""
        import contextlib
        import io

        buf, err = io.StringIO(), io.StringIO()
        with env(self.home, self.db_url), contextlib.redirect_stdout(buf), \
                contextlib.redirect_stderr(err):
            code = main(["ledger", "verify", "--json", *extra])
        lines = buf.getvalue().strip().splitlines()
        return code, (json.loads(lines[-1]) if lines else {"stderr": err.getvalue()})

    def sql(self, *statements: str) -> None:
        """Run plain SQL on the copy's database, as an insider would."""
        if self.db_url is None:
            import sqlite3

            con = sqlite3.connect(self.home / "vault.db")
            try:
                for s in statements:
                    con.execute(s)
                con.commit()
            finally:
                con.close()
            return
        engine = create_engine(self.db_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for s in statements:
                    conn.exec_driver_sql(s)
        finally:
            engine.dispose()


class Original:
    """The built vault; ``copy()`` gives a fresh, independent copy."""

    def __init__(self, home: Path, db_url: str | None, admin_url: str | None) -> None:
        self.home, self.db_url, self.admin_url = home, db_url, admin_url
        self.copies: list[str] = []

    def copy(self, root: Path) -> Copy:
        target = root / f"copy-{secrets.token_hex(4)}"
        shutil.copytree(self.home, target)
        if self.db_url is None or self.admin_url is None:
            return Copy(target, None)
        name = f"cv_adv_{secrets.token_hex(5)}"
        template = self.db_url.rsplit("/", 1)[1]
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:  # a template must have no other sessions
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = :d AND pid <> pg_backend_pid()"),
                             {"d": template})
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        finally:
            admin.dispose()
        self.copies.append(name)
        return Copy(target, self.db_url.rsplit("/", 1)[0] + "/" + name)

    def drop_copies(self) -> None:
        """Drop every copy made. PostgreSQL (15 here) ends each ``DROP DATABASE`` with a
        forced checkpoint it waits for (0.5-1 s with fsync on, even for an empty database),
        so the ~70 copies of a module, dropped one after another, took 27-30 s. Drops issued
        together, one connection each, share checkpoints: one that starts after several
        requests satisfies them all."""
        if self.admin_url is None or not self.copies:
            return
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT",
                              pool_size=DROP_CONNECTIONS, max_overflow=0)

        def drop(name: str) -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

        try:
            with ThreadPoolExecutor(DROP_CONNECTIONS) as pool:
                list(pool.map(drop, self.copies))  # re-raises the first failure
        finally:
            admin.dispose()
        self.copies.clear()
