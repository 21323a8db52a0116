"""Linking datasets inside the vault, and releasing across them at the person level.

Real SQLite and PostgreSQL (``db_url``), the real write path, the real CLI. A synthetic
voter file + vote history with known link counts; a perturbed donor list against the
voter file with the true matches known.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from link_helpers import (
    DONOR_LAYOUT,
    GENERAL,
    HISTORY_LAYOUT,
    LINK_POLICY,
    PARTIES,
    PRIMARY,
    VOTER_LAYOUT,
    history,
    init_vault,
    person,
    put,
    voter_file,
)
from sqlalchemy import Engine, select

from flows.cli import main
from ledger import store as ledger_store
from vault import linkage
from vault.access import installed_policy
from vault.db import make_engine
from vault.erase import erase
from vault.home import VaultHome
from vault.keyring import Keyring
from vault.keys import provider_for
from vault.principals import add_principal
from vault.store import T_SUBJECT

BIG_BUDGET = """
[datasets."*".budget]
per_analyst = 100000.0
dataset_cap = 1000000.0
"""
LINK = "nc_voter_history"
SECRET = "Zorblax4417"  # typed text that must never be echoed


@dataclass
class Vault:
    home: VaultHome
    engine: Engine
    keyring: Keyring
    tokens: dict[str, str]


def _policy(big: bool) -> str:

    text = LINK_POLICY
    if big:  # room for near-noiseless releases in the bound tests
        text = text.replace("[datasets.nc_history.group_by]",
                            "[datasets.nc_history.budget]\nper_analyst = 100000.0\n"
                            "dataset_cap = 1000000.0\n\n[datasets.nc_history.group_by]")
        text += ("\n[datasets.nc_voters.budget]\nper_analyst = 100000.0\n"
                 "dataset_cap = 1000000.0\n")
    return text


def _make(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, *,
          big: bool = False) -> Vault:
    from policies.load import default_policy_text

    url = None if db_url.startswith("sqlite") else db_url
    home = init_vault(tmp_path / "home", "", url)
    text = default_policy_text()
    if big:
        text = text.replace("analyst_cap = 3.0", "analyst_cap = 1000000.0")
    monkeypatch.setenv("CIVICVAULT_HOME", str(home.root))
    if url:
        monkeypatch.setenv("CIVICVAULT_DB_URL", url)
    else:
        monkeypatch.delenv("CIVICVAULT_DB_URL", raising=False)
    monkeypatch.delenv("CIVICVAULT_TOKEN", raising=False)
    engine = make_engine(home.db_url)
    tokens = {"admin": home.admin_token_path.read_text().strip()}
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(text + _policy(big), encoding="utf-8")
    assert main(["--token", tokens["admin"], "policy", "apply", str(policy_file)]) == 0
    with engine.begin() as conn:
        tokens["alice"] = add_principal(conn, "alice", "analyst")
        tokens["sam"] = add_principal(conn, "sam", "steward")
    return Vault(home, engine, Keyring(provider_for(home)), tokens)


@pytest.fixture
def vault(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Vault]:
    v = _make(tmp_path, db_url, monkeypatch)
    try:
        yield v
    finally:
        v.engine.dispose()


@pytest.fixture
def big_vault(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Vault]:
    v = _make(tmp_path, db_url, monkeypatch, big=True)
    try:
        yield v
    finally:
        v.engine.dispose()


def _run(capsys: pytest.CaptureFixture[str], v: Vault, who: str, *args: str
         ) -> tuple[int, str, str]:
    code = main(["--token", v.tokens[who], *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert "Zed" not in out + err and "AA0000" not in out + err  # no identifier leaves
    return code, out, err


def _build(capsys: pytest.CaptureFixture[str], v: Vault) -> dict[str, Any]:
    code, out, err = _run(capsys, v, "sam", "link", "build", LINK, "--purpose",
                          "turnout-analysis", "--json")
    assert code == 0 and out, (out, err)
    doc: dict[str, Any] = json.loads(out)
    return doc


def _entries(v: Vault, action: str) -> list[dict[str, Any]]:
    with v.engine.connect() as conn:
        return [e for e in map(json.loads, ledger_store.iter_entries(conn))
                if e["action"] == action]


def _standard(v: Vault, n: int = 60, linked: int = 40) -> tuple[list[str], list[int]]:
    """``n`` voters; the first ``linked`` have 1..4 history rows; 5 rows of strangers."""
    voters = voter_file(n)
    put(v.engine, v.keyring, voters, "nc_voters", VOTER_LAYOUT)
    ids = voters.get_column("ncid").to_list()
    rows = [1 + i % 4 for i in range(linked)]
    put(v.engine, v.keyring, history([*ids[:linked], "ZZ0000001"], [*rows, 5]),
        "nc_history", HISTORY_LAYOUT)
    return ids, rows


def _release(capsys: pytest.CaptureFixture[str], v: Vault, *args: str) -> dict[str, Any]:
    code, out, err = _run(capsys, v, "alice", "release", "--dataset", "nc_voters", "--join",
                          "nc_history", *args, "--json")
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def test_link_counts_match_the_known_truth_and_rebuild_is_idempotent(
    vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    _ids, rows = _standard(vault)
    doc = _build(capsys, vault)
    assert doc["pairs"] == sum(rows) and doc["left_linked"] == 40
    assert doc["left_subjects"] == 60 and doc["right_subjects"] == sum(rows) + 5
    assert doc["right_matched"] == sum(rows) and doc["right_unmatched"] == 5
    assert doc["right_ambiguous"] == 0
    again = _build(capsys, vault)
    assert again == doc  # nothing new: same pairs, same hash
    [first, second] = _entries(vault, "link.build")
    assert first["data_hash"] == doc["pairs_hash"] == second["data_hash"]
    assert first["details"]["changed"] is True and second["details"]["changed"] is False
    assert second["details"]["digested_left"] == 0 and second["purpose"] == "turnout-analysis"
    # a new history file: only its rows are digested, and they link
    put(vault.engine, vault.keyring, history([_ids[50]], [3]), "nc_history", HISTORY_LAYOUT)
    third = _build(capsys, vault)
    assert third["pairs"] == sum(rows) + 3 and third["left_linked"] == 41
    assert _entries(vault, "link.build")[-1]["details"]["digested_right"] == 3


def test_no_plaintext_identifier_in_the_link_tables(
    vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    ids, _ = _standard(vault)
    _build(capsys, vault)
    with vault.engine.connect() as conn:
        blobs = [bytes(d) for d in conn.execute(select(linkage.T_MEMBER.c.digest)).scalars()]
        links = [tuple(map(str, r)) for r in conn.execute(select(linkage.T_LINK)).all()]
    assert blobs and all(len(b) == linkage.DIGEST_BYTES for b in blobs)
    for raw in ids[:5]:
        assert not any(raw.encode() in b or raw.lower().encode() in b for b in blobs)
        assert not any(raw in "".join(r) for r in links)
    # keyed: the digests are not a plain hash of the normalised id
    import hashlib

    plain = {hashlib.sha256(i.encode()).digest()[:16] for i in ids}
    assert not plain & set(blobs)


def test_unknown_link_dataset_and_column_are_exit_2_without_echo(
    vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    _standard(vault)
    _build(capsys, vault)
    base = ["release", "--dataset", "nc_voters", "--join", "nc_history", "--epsilon", "0.1"]
    cases = [
        ["release", "--dataset", "nc_voters", "--join", SECRET, "--by", "party_cd",
         "--measure", "count", "--epsilon", "0.1"],
        [*base, "--by", SECRET, "--measure", "count"],
        [*base, "--by", "party_cd", "--measure", f"sum:{SECRET}"],
        [*base, "--by", "party_cd", "--measure", SECRET],
        [*base, "--by", "party_cd", "--measure", "count", "--where", f"{SECRET}=x"],
        ["link", "build", SECRET],
        ["link", "report", SECRET, "--epsilon", "0.1"],
    ]
    for args in cases:
        who = "sam" if args[0] == "link" and args[1] == "build" else "alice"
        code, out, err = _run(capsys, vault, who, *args)
        assert code == 2, (args, err)
        assert out == "" and err.count("\n") == 1 and SECRET not in err, err
    with vault.engine.connect() as conn:
        assert SECRET.encode() not in b"\n".join(ledger_store.iter_entries(conn))


def test_denials_exit_1(vault: Vault, capsys: pytest.CaptureFixture[str]) -> None:
    _standard(vault)
    # an analyst may not build links
    code, _, err = _run(capsys, vault, "alice", "link", "build", LINK, "--purpose",
                        "turnout-analysis")
    assert code == 1 and "denied" in err
    # a purpose the link does not declare
    code, _, err = _run(capsys, vault, "sam", "link", "build", LINK, "--purpose", "gotv")
    assert code == 1 and "purpose" in err
    # no release before the link is built
    code, _, err = _run(capsys, vault, "alice", "release", "--dataset", "nc_voters",
                        "--join", "nc_history", "--by", "party_cd", "--measure", "people",
                        "--epsilon", "0.1")
    assert code == 1 and "link build" in err
    _build(capsys, vault)
    # a steward may not release (either side)
    code, _, err = _run(capsys, vault, "sam", "release", "--dataset", "nc_voters", "--join",
                        "nc_history", "--by", "party_cd", "--measure", "people",
                        "--epsilon", "0.1")
    assert code == 1 and "denied" in err
    # no link declared this way round
    code, _, err = _run(capsys, vault, "alice", "release", "--dataset", "nc_history",
                        "--join", "nc_voters", "--by", "party_cd", "--measure", "people",
                        "--epsilon", "0.1")
    assert code == 1 and "no link" in err


def test_budget_is_charged_on_both_datasets_atomically(
    vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    from vault import budget

    _standard(vault)
    _build(capsys, vault)
    doc = _release(capsys, vault, "--by", "party_cd", "--measure", "people", "--where",
                   f"election_desc={GENERAL}", "--epsilon", "0.25")
    assert doc["charged_datasets"] == ["nc_voters", "nc_history"]
    with vault.engine.connect() as conn:
        spent = {ds: budget.get_budget(conn, "alice", ds, default_total=Fraction(0)
                                       ).epsilon_spent for ds in ("nc_voters", "nc_history")}
    assert spent == {"nc_voters": Fraction(1, 4), "nc_history": Fraction(1, 4)}
    charges = _entries(vault, "release.charge")
    assert [c["details"]["dataset"] for c in charges] == ["nc_voters", "nc_history"]
    assert charges[0]["seq"] + 1 == charges[1]["seq"]
    [released] = _entries(vault, "release.dp")
    assert released["details"]["charge_seqs"] == [c["seq"] for c in charges]
    assert released["details"]["rows_per_person"] == 1
    # the history side has little left: the whole release is refused, nothing is charged
    with vault.engine.begin() as conn:
        budget.set_budget(conn, "alice", "nc_history", Fraction(3, 10), actor="admin")
    code, _, err = _run(capsys, vault, "alice", "release", "--dataset", "nc_voters",
                        "--join", "nc_history", "--by", "party_cd", "--measure", "people",
                        "--epsilon", "0.25")
    assert code == 1 and "exhausted" in err
    with vault.engine.connect() as conn:
        after = budget.get_budget(conn, "alice", "nc_voters", default_total=Fraction(0))
    assert after.epsilon_spent == Fraction(1, 4)  # the voters' side was not charged either
    assert len(_entries(vault, "release.charge")) == 2


def _total(doc: dict[str, Any], label: str = "count") -> float:
    return float(sum(r[label] for r in doc["rows"]))


def test_one_person_moves_a_count_by_at_most_the_stated_bound(
    big_vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    v = big_vault
    voters = voter_file(30)
    put(v.engine, v.keyring, voters, "nc_voters", VOTER_LAYOUT)
    ids = voters.get_column("ncid").to_list()
    # voter 0 has 60 history rows, the others 2
    put(v.engine, v.keyring, history(ids, [60] + [2] * 29, [GENERAL]), "nc_history",
        HISTORY_LAYOUT)
    _build(capsys, v)
    args = ("--by", "party_cd", "--measure", "count", "--epsilon", "2000")
    with_heavy = _release(capsys, v, *args)
    k = with_heavy["accuracy"]["privacy_unit"]["rows_per_person"]
    assert k == 12 and with_heavy["accuracy"]["privacy_unit"]["unit"] == "person"
    noise = with_heavy["accuracy"]["measures"]["count"]["accuracy"]
    assert noise < 0.5
    # the neighbouring dataset: the same vault without that person (erased)
    with v.engine.begin() as conn:
        erase(conn, v.keyring, "nc_voters", {"ncid": ids[0]}, "admin")
    _build(capsys, v)
    without = _release(capsys, v, *args)
    moved = _total(with_heavy) - _total(without)
    assert abs(moved - k) <= 6 * noise  # truncated to k of its 60 rows: moved by k, not 60
    assert abs(_total(without) - 2 * 29) <= 6 * noise


def test_erased_voter_stops_counting_and_stays_cut_after_reingest(
    big_vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    v = big_vault
    voters = voter_file(20)
    put(v.engine, v.keyring, voters, "nc_voters", VOTER_LAYOUT)
    ids = voters.get_column("ncid").to_list()
    put(v.engine, v.keyring, history(ids, [1] * 20, [GENERAL]), "nc_history", HISTORY_LAYOUT)
    assert _build(capsys, v)["pairs"] == 20
    with v.engine.begin() as conn:
        erase(conn, v.keyring, "nc_voters", {"ncid": ids[3]}, "admin")
    [cut] = _entries(v, "link.cut")
    assert cut["details"]["members_cut"] == 1 and cut["details"]["side"] == "left"
    assert _build(capsys, v)["pairs"] == 19
    # a later voter file (the erased voter in it) and a later history file
    put(v.engine, v.keyring, voter_file(20), "nc_voters", VOTER_LAYOUT)
    put(v.engine, v.keyring, history([ids[3], ids[4]], [2, 1], [PRIMARY]), "nc_history",
        HISTORY_LAYOUT)
    doc = _build(capsys, v)
    assert doc["pairs"] == 20 and doc["left_linked"] == 19  # ids[4]'s new row only
    # the erased voter's old row and its two new ones: unmatched, never linked again
    assert doc["right_unmatched"] == 3 and doc["cut"] == 1
    rel = _release(capsys, v, "--by", "party_cd", "--measure", "turnout", "--where",
                   f"election_desc={GENERAL}|{PRIMARY}", "--epsilon", "100")
    # every live voter has a row: turnout is 1 in every party (the erased one is gone)
    assert all(abs(r["mean_turnout"] - 1.0) < 0.05 for r in rel["rows"]
               if r["party_cd"] in PARTIES)
    people = _release(capsys, v, "--by", "party_cd", "--measure", "people", "--epsilon", "100")
    assert abs(_total(people) - 19) < 2


def test_ledger_verify_rederives_the_link_table(
    vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    ids, _ = _standard(vault)
    _build(capsys, vault)
    with vault.engine.begin() as conn:
        erase(conn, vault.keyring, "nc_voters", {"ncid": ids[1]}, "admin")
    code, _out, err = _run(capsys, vault, "admin", "ledger", "verify", "--json")
    assert code == 0, err
    # an operator quietly re-links a voter's history rows to another voter (the right
    # side is kept by blind digest: one key row per voter id)
    keys = linkage.T_KEYS
    with vault.engine.connect() as conn:
        first, second = conn.execute(select(keys.c.blind, keys.c.digest)
                                     .order_by(keys.c.blind).limit(2)).all()
    with vault.engine.begin() as conn:
        conn.execute(keys.update().where(keys.c.blind == first.blind)
                     .values(digest=second.digest))
    code, _, err = _run(capsys, vault, "admin", "ledger", "verify")
    assert code == 1 and "vault_link_keys" in err
    with vault.engine.begin() as conn:
        conn.execute(keys.update().where(keys.c.blind == first.blind)
                     .values(digest=first.digest))
    code, _, err = _run(capsys, vault, "admin", "ledger", "verify")
    assert code == 0, err
    # ... or moves a voter's member row to another key
    with vault.engine.begin() as conn:
        conn.execute(linkage.T_MEMBER.update().where(
            linkage.T_MEMBER.c.side == 0,
            linkage.T_MEMBER.c.subject_id == select(linkage.T_MEMBER.c.subject_id).where(
                linkage.T_MEMBER.c.side == 0).order_by(linkage.T_MEMBER.c.subject_id)
            .limit(1).scalar_subquery()).values(digest=b"\x00" * 16))
    code, _, err = _run(capsys, vault, "admin", "ledger", "verify")
    assert code == 1 and "vault_link_members" in err


def test_linked_turnout_by_party_and_age_band_is_within_the_stated_accuracy(
    vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    voters = voter_file(420)
    put(vault.engine, vault.keyring, voters, "nc_voters", VOTER_LAYOUT)
    ids = voters.get_column("ncid").to_list()
    voted = [i for i in range(420) if i % 5 != 0]  # 80% voted in the general
    put(vault.engine, vault.keyring,
        pl.concat([history([ids[i] for i in voted], [2] * len(voted)),
                   history([ids[i] for i in range(420) if i % 5 == 0], [1] * 84, [PRIMARY])]),
        "nc_history", HISTORY_LAYOUT)
    _build(capsys, vault)
    doc = _release(capsys, vault, "--by", "party_cd,age_band", "--measure", "turnout",
                   "--where", f"election_desc={GENERAL}", "--epsilon", "0.9")
    acc = doc["accuracy"]["measures"]
    a_sum, a_count = acc["sum_turnout"]["accuracy"], acc["count"]["accuracy"]
    assert doc["accuracy"]["privacy_unit"]["rows_per_person"] == 1
    truth = voters.with_row_index("i").with_columns(
        (pl.col("i") % 5 != 0).cast(pl.Int64).alias("t")).group_by("party_cd", "age_band").agg(
        pl.col("t").sum().alias("s"), pl.len().alias("n"))
    got = {(r["party_cd"], r["age_band"]): r["mean_turnout"] for r in doc["rows"]}
    for party, band, s, n in truth.iter_rows():
        lo = max(0.0, (s - 3 * a_sum) / (n + 3 * a_count))
        hi = min(1.0, (s + 3 * a_sum) / max(1.0, n - 3 * a_count))
        assert lo <= got[(party, band)] <= hi, (party, band, s, n, got[(party, band)])


def test_link_report_gives_dp_counts_by_status(
    big_vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    _standard(big_vault)
    _build(capsys, big_vault)
    code, out, err = _run(capsys, big_vault, "alice", "link", "report", LINK, "--by",
                          "election_desc", "--epsilon", "1000", "--json")
    assert code == 0, err
    doc = json.loads(out)
    counts: dict[str, float] = {}
    for r in doc["rows"]:
        counts[r["match"]] = counts.get(r["match"], 0) + r["count"]
    assert set(counts) == {"matched", "unmatched", "ambiguous"}
    assert abs(counts["matched"] - 100) < 3 and abs(counts["unmatched"] - 5) < 3
    assert "subject" not in out and doc["charged_datasets"] == ["nc_voters", "nc_history"]
    [entry] = _entries(big_vault, "link.report")
    assert entry["data_hash"] == doc["data_hash"]


def _perturb(name: str, street: str, zip_: str, i: int) -> tuple[str, str, str]:
    first, last = name.split(" ")
    name2 = [f"{last.upper()}, {first}", f"{first.lower()} {last.lower()}.",
             f" {first}  {last} "][i % 3]
    street2 = street.replace("Street", ["St", "St.", "STREET"][i % 3])
    zip2 = [zip_[:5], zip_, f"{zip_[:5]}-0000"][i % 3]
    return name2, street2, zip2


def test_perturbed_donor_list_matches_the_voter_file(
    vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    voters = voter_file(300)
    put(vault.engine, vault.keyring, voters, "nc_voters", VOTER_LAYOUT)
    true_rows = list(range(0, 300, 2))  # 150 voters gave
    names, streets, zips, truth = [], [], [], []
    for i in true_rows:
        n, s, z = _perturb(voters["name"][i], voters["street"][i], voters["zip"][i], i)
        names.append(n), streets.append(s), zips.append(z), truth.append(i)
    for j in range(30):  # strangers: not on the voter file
        names.append(f"Ann{j} Other"), streets.append(f"{9000 + j} Elm Road")
        zips.append("27599"), truth.append(-1)
    donors = pl.DataFrame({"donor_name": names, "address": streets, "zip": zips,
                           "amount": [str(10 * (k % 7 + 1)) for k in range(len(names))],
                           "county_desc": ["WAKE"] * len(names),
                           "__person": person([f"D{k}" for k in range(len(names))])})
    put(vault.engine, vault.keyring, donors, "donors", DONOR_LAYOUT)
    code, out, err = _run(capsys, vault, "sam", "link", "build", "voter_donors", "--json")
    assert code == 0, err
    with vault.engine.connect() as conn:
        def order(ds: str) -> dict[int, int]:
            ids = linkage.dataset_ids(conn, [ds])[ds]
            subs = sorted(int(s) for s in conn.execute(
                select(T_SUBJECT.c.id).where(T_SUBJECT.c.dataset_id == ids)).scalars())
            return {s: k for k, s in enumerate(subs)}
        vrow, drow = order("nc_voters"), order("donors")
        link_id = int(conn.execute(select(linkage.T_LINK.c.id).where(
            linkage.T_LINK.c.name == "voter_donors")).scalar_one())
        pairs, _ = linkage.link_pairs(conn, link_id)
    found = {(vrow[a], drow[b]) for a, b in pairs.iter_rows()}
    correct = {(truth[d], d) for d in range(len(truth)) if truth[d] >= 0}
    recall = len(found & correct) / len(correct)
    false = len(found - correct) / max(1, len(found))
    assert recall >= 0.95 and false <= 0.01, (recall, false)
    # donations by party, people-level (k = 3 of the link)
    code, out, err = _run(capsys, vault, "alice", "release", "--dataset", "nc_voters",
                          "--join", "donors", "--by", "party_cd", "--measure", "sum:amount",
                          "--epsilon", "0.5", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["accuracy"]["privacy_unit"]["rows_per_person"] == 3


def test_real_nc_voter_file_and_history(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real Chatham County files, if present: every history row's ncid is on the
    voter file (known for this extract), so the link finds them all."""
    import zipfile

    archive = shared_data / "nc_chatham_2018-12-22.zip"
    if not archive.exists():
        pytest.skip("nc_chatham_2018-12-22.zip not in the shared data")
    v = _make(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", monkeypatch)
    capsys.readouterr()  # the policy apply line
    with zipfile.ZipFile(archive) as zf:
        names = {Path(n).name: n for n in zf.namelist()}
        read = lambda n: pl.read_csv(zf.read(names[n]), separator="\t",  # noqa: E731
                                     infer_schema=False, encoding="utf8-lossy")
        voters, hist = read("ncvoter.txt"), read("ncvhis.txt")
    vf = voters.select("ncid", pl.col("last_name").alias("name"),
                       pl.col("res_street_address").alias("street"),
                       pl.col("zip_code").alias("zip"), "county_desc", "party_cd",
                       pl.lit("35-44").alias("age_band")).with_columns(
        person(voters.get_column("ncid").str.strip_chars().to_list()).alias("__person"))
    hf = hist.select("ncid", "election_desc", "voting_method").with_columns(
        person(hist.get_column("ncid").str.strip_chars().to_list()).alias("__person"))
    put(v.engine, v.keyring, vf, "nc_voters", VOTER_LAYOUT)
    put(v.engine, v.keyring, hf, "nc_history", HISTORY_LAYOUT)
    truth = hf.join(vf.select(pl.col("ncid").str.strip_chars()).unique(),
                    left_on=pl.col("ncid").str.strip_chars(), right_on="ncid").height
    doc = _build(capsys, v)
    assert doc["pairs"] == truth and doc["right_subjects"] == hf.height
    v.engine.dispose()


def test_policy_links_are_validated() -> None:
    from policies.errors import PolicyFileError
    from policies.load import default_policy_text, parse_policy

    policy = parse_policy(default_policy_text(), "default.toml")
    assert policy.links[LINK].rows_per_person == 12
    bad = default_policy_text() + '\n[links.x]\nleft = "a"\nright = "a"\nleft_key = ["k"]\n' \
        'right_key = ["k"]\n'
    with pytest.raises(PolicyFileError, match="itself"):
        parse_policy(bad, "p.toml")
    bad = default_policy_text() + '\n[links.x]\nleft = "a"\nright = "b"\nleft_key = ["k"]\n' \
        'right_key = ["k"]\nmatch = "fuzzy"\n'
    with pytest.raises(PolicyFileError, match="match"):
        parse_policy(bad, "p.toml")


def test_installed_policy_has_the_test_links(vault: Vault) -> None:
    assert set(installed_policy(vault.home).links) == {LINK, "voter_donors"}


def test_pairs_hash_is_the_same_from_lists_and_from_arrays() -> None:
    """The builder hashes NumPy arrays, verification hashes rows from SQL: one hash."""
    import numpy as np

    from vault.link_tables import hash_pairs

    left, right = [1, 2, 3, 2**40], [10, 20, 30, 7]
    assert hash_pairs(left, right) == hash_pairs(np.array(left), np.array(right))
    assert hash_pairs(left, right) != hash_pairs(right, left)
    assert hash_pairs([], []) == hash_pairs(np.array([], dtype=np.int64), np.array([]))


def test_new_rows_make_the_link_stale_until_rebuilt_and_ingest_refreshes_it(
    vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    """A side that took new rows: linked releases refuse with the one line to run; the
    refresh that every ingest runs (``Vault.refresh_links``) rebuilds a built link when
    the ingesting principal may build links, ledgered with ``trigger: ingest``."""
    from vault.service import Vault as Service

    ids, rows = _standard(vault)
    _build(capsys, vault)
    args = ("--by", "party_cd", "--measure", "people", "--epsilon", "0.1")
    put(vault.engine, vault.keyring, history([ids[55]], [2]), "nc_history", HISTORY_LAYOUT)
    code, out, err = _run(capsys, vault, "alice", "release", "--dataset", "nc_voters",
                          "--join", "nc_history", *args)
    assert code == 1 and out == ""
    assert "link out of date" in err and f"civicvault link build {LINK}" in err
    assert err.count("\n") == 1
    # an analyst's ingest may not build links: nothing happens, the link stays stale
    analyst = Service.open(vault.home, token=vault.tokens["alice"])
    assert analyst.refresh_links("nc_history") == []
    analyst.close()
    assert len(_entries(vault, "link.build")) == 1
    # a steward's ingest refreshes it (the other declared link was never built: left alone)
    steward = Service.open(vault.home, token=vault.tokens["sam"])
    assert steward.refresh_links("nc_history") == [LINK]
    assert steward.refresh_links("nc_history") == []  # current: nothing to do
    assert steward.refresh_links("nc_voters") == []
    steward.close()
    [_, auto] = _entries(vault, "link.build")
    assert auto["details"]["trigger"] == "ingest" and auto["details"]["digested_right"] == 2
    assert auto["details"]["pairs"] == sum(rows) + 2 and auto["details"]["left_linked"] == 41
    code, _, err = _run(capsys, vault, "alice", "release", "--dataset", "nc_voters",
                        "--join", "nc_history", *args)
    assert code == 0, err


def test_release_join_writes_out_and_chart_files(
    vault: Vault, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _standard(vault)
    _build(capsys, vault)
    out, chart = tmp_path / "turnout.csv", tmp_path / "turnout.png"
    doc = _release(capsys, vault, "--by", "party_cd", "--measure", "turnout", "--where",
                   f"election_desc={GENERAL}", "--epsilon", "0.5", "--out", str(out),
                   "--chart", str(chart))
    assert out.exists() and chart.exists() and chart.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "turnout.csv.tlog-proof").exists() and doc["receipt"]
    frame = pl.read_csv(out)
    assert "party_cd" in frame.columns and frame.height == len(doc["rows"])
    assert len(_entries(vault, "release.export")) == 1
    # a file that exists is refused before anything is charged (exit 2)
    before = len(_entries(vault, "release.charge"))
    code, _, err = _run(capsys, vault, "alice", "release", "--dataset", "nc_voters", "--join",
                        "nc_history", "--by", "party_cd", "--measure", "people",
                        "--epsilon", "0.1", "--out", str(out))
    assert code == 2 and err.count("\n") == 1
    # no Prefect flow for linked releases yet: said, not silently run in-process
    code, _, err = _run(capsys, vault, "alice", "release", "--dataset", "nc_voters", "--join",
                        "nc_history", "--by", "party_cd", "--measure", "people",
                        "--epsilon", "0.1", "--prefect")
    assert code == 2 and "--prefect" in err and err.count("\n") == 1
    assert len(_entries(vault, "release.charge")) == before


def test_set_based_build_agrees_with_a_reference_join_outside_the_vault(
    vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pairs of the SQL build equal the pairs computed in the clear by the test (ncid
    equality, one voter per id), subject by subject; the hash is the pairs' hash."""
    voters = voter_file(200)
    put(vault.engine, vault.keyring, voters, "nc_voters", VOTER_LAYOUT)
    ids = voters.get_column("ncid").to_list()
    counts = [(i * 7) % 5 for i in range(200)]  # 0..4 rows, some voters none
    hist = history(ids, counts)
    put(vault.engine, vault.keyring, hist, "nc_history", HISTORY_LAYOUT)
    doc = _build(capsys, vault)
    with vault.engine.connect() as conn:
        def subjects(ds: str) -> list[int]:
            ds_id = linkage.dataset_ids(conn, [ds])[ds]
            return sorted(int(s) for s in conn.execute(select(T_SUBJECT.c.id).where(
                T_SUBJECT.c.dataset_id == ds_id)).scalars())
        vs, hs = subjects("nc_voters"), subjects("nc_history")
        link_id = int(conn.execute(select(linkage.T_LINK.c.id).where(
            linkage.T_LINK.c.name == LINK)).scalar_one())
        pairs, status = linkage.link_pairs(conn, link_id)
    by_id = {v: vs[i] for i, v in enumerate(ids)}  # stored in file order
    want = sorted((by_id[h.strip().upper()], hs[k])
                  for k, h in enumerate(hist.get_column("ncid").to_list()))
    assert list(pairs.iter_rows()) == want
    assert doc["pairs"] == len(want)
    with vault.engine.connect() as conn:  # the ledgered hash: the link's stored state's
        assert doc["pairs_hash"] == linkage.state_hash(conn, link_id)
    assert set(status.get_column("status")) == {"matched"}


def test_history_before_its_voter_links_when_the_voter_arrives(
    vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    """A first build opens the voter file only (the history's members come from its blind
    index), so a history row whose voter is not on file yet has no member row; a later
    voter file brings the voter, and the rebuild finds that row among all of them."""
    voters = voter_file(30)
    put(vault.engine, vault.keyring, voters.head(20), "nc_voters", VOTER_LAYOUT)
    ids = voters.get_column("ncid").to_list()
    put(vault.engine, vault.keyring, history(ids[:25], [2] * 25), "nc_history",
        HISTORY_LAYOUT)
    first = _build(capsys, vault)
    assert first["pairs"] == 40 and first["right_unmatched"] == 10
    assert first["right_subjects"] == 50
    put(vault.engine, vault.keyring, voters.slice(20, 10), "nc_voters", VOTER_LAYOUT)
    again = _build(capsys, vault)
    assert again["pairs"] == 50 and again["left_linked"] == 25 and again["right_unmatched"] == 0
    assert _entries(vault, "link.build")[-1]["details"]["digested_right"] == 10
    code, _, err = _run(capsys, vault, "admin", "ledger", "verify")
    assert code == 0, err


def test_open_records_is_open_record_without_a_dict_per_row() -> None:
    """The link builder's batch opener gives the bytes open_record parses, and rejects a
    record moved to another subject, like open_record."""
    import orjson

    from vault import crypto
    from vault.errors import CiphertextRejected

    keys = crypto.new_subject_keys(3)
    payloads = [orjson.dumps({"ncid": f"AA{i}", "name": None}) for i in range(3)]
    sealed = crypto.seal_records(keys, 7, [11, 12, 13], [21, 22, 23], "ncid,name", payloads)
    assert crypto.open_records(keys, 7, [11, 12, 13], [21, 22, 23], ["ncid,name"] * 3,
                               sealed) == payloads
    assert crypto.open_record(keys[1], 7, 12, 22, "ncid,name", sealed[1]) == {
        "ncid": "AA1", "name": None}
    with pytest.raises(CiphertextRejected):
        crypto.open_records(keys, 7, [11, 12, 13], [21, 23, 22], ["ncid,name"] * 3, sealed)
    wrap = crypto.new_subject_keys(1)[0]
    wrapped = crypto.wrap_subject_keys(wrap, 5, 7, [21, 22, 23], keys)
    assert crypto.unwrap_subject_keys(wrap, 5, 7, [21, 22, 23], wrapped) == keys
    with pytest.raises(CiphertextRejected):
        crypto.unwrap_subject_keys(wrap, 6, 7, [21, 22, 23], wrapped)


def test_erased_history_rows_cut_their_key_and_a_later_file_does_not_relink(
    vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    """The history side is kept by blind digest (one key row per voter id): erasing a
    voter's history records cuts that key, so the voter's rows stop counting and a later
    history file with the same id is not linked; ``ledger verify`` still agrees."""
    ids, rows = _standard(vault)
    first = _build(capsys, vault)
    with vault.engine.begin() as conn:
        erase(conn, vault.keyring, "nc_history", {"ncid": ids[2]}, "admin")
    [cut] = _entries(vault, "link.cut")
    assert cut["details"]["side"] == "right" and cut["details"]["members_cut"] == 1
    assert cut["details"]["layout"] == 2
    code, _, err = _run(capsys, vault, "admin", "ledger", "verify")
    assert code == 0, err
    after = _build(capsys, vault)
    assert after["pairs"] == first["pairs"] - rows[2] and after["cut"] == 1
    assert after["left_linked"] == first["left_linked"] - 1
    put(vault.engine, vault.keyring, history([ids[2]], [2], [PRIMARY]), "nc_history",
        HISTORY_LAYOUT)
    again = _build(capsys, vault)
    assert again["pairs"] == after["pairs"] and again["right_unmatched"] == \
        after["right_unmatched"] + 2
    code, _, err = _run(capsys, vault, "admin", "ledger", "verify")
    assert code == 0, err


def test_a_link_of_the_older_layout_is_rebuilt_from_scratch(
    vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    """A link row of layout 1 (one member row per right subject, before migration 0010)
    is digested again by the next build, into layout 2, with the same counts."""
    _standard(vault)
    doc = _build(capsys, vault)
    with vault.engine.begin() as conn:
        conn.execute(linkage.T_LINK.update().values(layout=1, right_blind=None))
    again = _build(capsys, vault)
    assert {k: v for k, v in again.items() if k != "pairs_hash"} == \
        {k: v for k, v in doc.items() if k != "pairs_hash"}
    assert _entries(vault, "link.build")[-1]["details"]["layout"] == 2
    with vault.engine.connect() as conn:
        assert conn.execute(select(linkage.T_LINK.c.layout)).scalar_one() == 2
    code, _, err = _run(capsys, vault, "admin", "ledger", "verify")
    assert code == 0, err


def test_the_row_subject_column_joins_what_the_subjects_table_joins(
    vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    """A linked release reads each batch's row -> subject column (migration 0011) and the
    link's owners; a vault whose batches have none (stored before it) maps rows through
    ``vault_subjects``. Both give the same private frame, with superseded voter rows,
    an erased voter and an erased history id; and the frame is the known truth."""
    from vault.dp import linked
    from vault.dp.release import load_policy

    ids, rows = _standard(vault)
    changed = voter_file(60).with_columns(  # 5 voters move party: their old rows retire
        pl.when(pl.int_range(pl.len()) < 5).then(pl.lit("LIB")).otherwise(pl.col("party_cd"))
        .alias("party_cd"))
    put(vault.engine, vault.keyring, changed, "nc_voters", VOTER_LAYOUT)
    with vault.engine.begin() as conn:
        erase(conn, vault.keyring, "nc_voters", {"ncid": ids[7]}, "admin")
        erase(conn, vault.keyring, "nc_history", {"ncid": ids[8]}, "admin")
    _build(capsys, vault)
    policy = load_policy(vault.home)
    requests = [
        linked.LinkedRequest("nc_voters", "nc_history", ("party_cd",), ("turnout",),
                             Fraction(1), where=(("election_desc", (GENERAL,)),)),
        linked.LinkedRequest("nc_voters", "nc_history", ("party_cd", "election_desc"),
                             ("count",), Fraction(1)),
        linked.LinkedRequest("nc_voters", "nc_history", ("age_band",), ("people",),
                             Fraction(1), where=(("election_desc", (PRIMARY,)),)),
    ]

    def frames() -> list[pl.DataFrame]:
        out = []
        for request in requests:
            plan = linked.plan_linked(request, policy, dict(policy.links))
            with vault.engine.connect() as conn, conn.begin():
                link_id = linkage.current_link(conn, plan.rule)
                frame = linked._joined(conn, vault.keyring, plan, request, link_id)
            out.append(frame.sort(frame.columns))
        return out

    with vault.engine.connect() as conn:
        from vault.store import T_BATCH

        assert conn.execute(select(T_BATCH.c.row_subjects).where(
            T_BATCH.c.row_subjects.is_(None))).first() is None
    new = frames()
    # the truth, outside the vault: live voters (59), linked when among the first 40
    # and not the erased history id; voters 0..4 now LIB
    live = [i for i in range(60) if i != 7]
    voted = {i for i in range(40) if i not in (7, 8)}
    turnout = new[0]
    assert turnout.height == len(live)
    assert int(turnout.get_column("turnout").sum()) == sum(
        1 for i in voted if any(j % 2 == 0 for j in range(rows[i])))  # GENERAL rows
    assert set(turnout.filter(pl.col("party_cd") == "LIB").get_column("turnout").to_list()
               ) <= {0, 1}
    assert turnout.filter(pl.col("party_cd") == "LIB").height == 5
    assert new[1].height == sum(rows[i] for i in voted)  # one row per linked history row
    with vault.engine.begin() as conn:  # as if stored before migration 0011
        from vault.store import T_BATCH

        conn.execute(T_BATCH.update().values(row_subjects=None))
    old = frames()
    for a, b in zip(new, old, strict=True):
        assert a.equals(b), (a, b)
