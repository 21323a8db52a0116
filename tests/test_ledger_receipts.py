"""Receipts (C2SP tlog-proof) for release, segment, erasure and reveal, checked offline.

Two witnesses on loopback cosign every checkpoint (quorum 2). A receipt verifies
with no vault home; any one-byte change of the result file, of the ledger entry
inside the receipt, or of the receipt itself makes it fail. A third party's check
(pymerkle's RFC 6962 tree, the independent recursive verifier in
``ledger_independent``, pyca's Ed25519 and a parser written here) agrees.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from ledger_independent import inclusion_root, leaf, mth
from witness_helpers import LoopbackWitness, loopback_witnesses

from flows.cli import main
from ledger.errors import VerificationFailed
from ledger.receipt import check_file, verify_receipt
from ledger.signer import Signer, parse_vkey
from vault.db import make_engine
from vault.home import VaultHome

VOTERS_RULES = """
[datasets.voters]
columns = ["county", "party", "age"]

[datasets.voters.group_by]
county = ["WAKE", "CHATHAM", "ORANGE"]
party = "dp"

[datasets.voters.bounds]
age = { lower = 18, upper = 100 }

[datasets.voters.budget]
per_analyst = 5.0
dataset_cap = 10.0
"""


def run(*argv: str, token: str | None = None, reveals: bool = False) -> tuple[int, str, str]:
    """Run the CLI in-process; no row-level value may leave, except from a reveal."""
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    err = io.StringIO()
    full = (["--token", token] if token else []) + list(argv)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(full)
    out.flush()
    text = raw.getvalue().decode("utf-8")
    assert "Traceback" not in err.getvalue()
    assert reveals or "Person Number" not in text + err.getvalue()
    return code, text, err.getvalue()


class Vault:
    def __init__(self, home: VaultHome, tmp: Path, tokens: dict[str, str],
                 witnesses: list[LoopbackWitness]) -> None:
        self.home, self.tmp, self.tokens, self.witnesses = home, tmp, tokens, witnesses
        self.vkey = tmp / "log.vkey"
        self.vkey.write_text(Signer.load(home.signing_key_path).vkey() + "\n")
        self.wkeys = []
        for w in witnesses:
            path = tmp / f"{w.folder.name}.vkey"
            path.write_text(w.cosigner.vkey() + "\n")
            self.wkeys.append(path)

    def verify_args(self) -> list[str]:
        args = ["--vkey", str(self.vkey)]
        for path in self.wkeys:
            args += ["--witness-vkey", str(path)]
        return args


@pytest.fixture
def vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Vault]:
    from dp_helpers import ALICE
    from vault_helpers import store, voters

    from policies.load import default_policy_text
    from vault.keyring import Keyring
    from vault.keys import provider_for
    from vault.principals import add_principal
    from vault.setup import init_home

    home = VaultHome(tmp_path / "home")
    monkeypatch.setenv("CIVICVAULT_HOME", str(home.root))
    for var in ("CIVICVAULT_DB_URL", "CIVICVAULT_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    init_home(home)
    home.policy_path.write_text(default_policy_text() + VOTERS_RULES, encoding="utf-8")
    engine = make_engine(home.db_url)
    try:
        store(engine, Keyring(provider_for(home)), voters(300))
        with engine.begin() as conn:
            tokens = {"alice": add_principal(conn, ALICE.id, ALICE.role),
                      "steward": add_principal(conn, "stew", "steward")}
    finally:
        engine.dispose()
    signer = Signer.load(home.signing_key_path)
    with loopback_witnesses(tmp_path, {home.identity(): [signer]}) as witnesses:
        v = Vault(home, tmp_path, tokens, witnesses)
        for w, path in zip(witnesses, v.wkeys, strict=True):
            assert run("ledger", "witnesses", "add", "--url", w.url, "--vkey", str(path))[0] == 0
        assert run("ledger", "witnesses", "quorum", "2")[0] == 0
        yield v


def _release(v: Vault, out: Path) -> dict[str, Any]:
    code, text, err = run("release", "--dataset", "voters", "--by", "county", "--measure",
                          "count", "--epsilon", "0.2", "--out", str(out), "--json",
                          token=v.tokens["alice"])
    assert code == 0, err
    doc: dict[str, Any] = json.loads(text)
    return doc


def _flip(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


def test_release_receipt_verifies_offline_and_any_changed_byte_fails(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "turnout-jane-doe-4417.csv"  # a typed path may name a person
    doc = _release(vault, out)
    sidecar = tmp_path / "turnout-jane-doe-4417.csv.tlog-proof"
    assert doc["receipt"].startswith("c2sp.org/tlog-proof@v1\n") and sidecar.exists()
    for w in vault.witnesses:
        assert f"\u2014 {w.name} " in sidecar.read_text()
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "nowhere"))  # offline, no vault
    code, text, err = run("receipt", "verify", str(out), *vault.verify_args())
    assert code == 0 and "the file matches its data_hash" in text
    assert "jane-doe-4417" not in text + err  # the path typed for FILE is not echoed
    code, text, err = run("receipt", "verify", str(out), *vault.verify_args(), "--json")
    report = json.loads(text)
    assert code == 0 and report["action"] == "release.export"
    assert report["file"] is True and "jane-doe-4417" not in text + err
    assert report["witnesses"] == sorted(w.name for w in vault.witnesses)
    # the release entry's own receipt (from --json) verifies against the same document
    saved = tmp_path / "release.json"
    saved.write_text(json.dumps(doc))
    assert run("receipt", "verify", str(saved), *vault.verify_args())[0] == 0

    keys = [parse_vkey(vault.vkey.read_text())]
    wkeys = [w.cosigner.verifier() for w in vault.witnesses]
    receipt = sidecar.read_bytes()
    data = out.read_bytes()

    def verdict(r: bytes, d: bytes) -> None:
        v = verify_receipt(r.decode("utf-8", "replace"), keys, witness_keys=wkeys, quorum=2)
        check_file(v, d)

    verdict(receipt, data)
    for i in range(len(data)):  # every byte of the result file
        with pytest.raises(VerificationFailed):
            verdict(receipt, _flip(data, i))
    for i in range(len(receipt)):  # every byte of the proof (receipt) file
        with pytest.raises(VerificationFailed):
            verdict(_flip(receipt, i), data)
    lines = receipt.split(b"\n")
    entry = base64.b64decode(lines[1].removeprefix(b"extra "))
    for i in range(len(entry)):  # every byte of the ledger entry it carries
        changed = b"extra " + base64.b64encode(_flip(entry, i))
        with pytest.raises(VerificationFailed):
            verdict(b"\n".join([lines[0], changed, *lines[2:]]), data)
    # and through the command, exit 1 for a changed result, entry or proof
    out.write_bytes(_flip(data, len(data) // 2))
    assert run("receipt", "verify", str(out), *vault.verify_args())[0] == 1
    out.write_bytes(data)
    sidecar.write_bytes(_flip(receipt, len(receipt) - 10))
    assert run("receipt", "verify", str(out), *vault.verify_args())[0] == 1
    sidecar.write_bytes(b"\n".join([lines[0], b"extra " + base64.b64encode(_flip(entry, 3)),
                                    *lines[2:]]))
    assert run("receipt", "verify", str(out), *vault.verify_args())[0] == 1
    sidecar.write_bytes(receipt)
    assert run("receipt", "verify", str(out), *vault.verify_args())[0] == 0
    # quorum: with only one witness's key and a quorum of 2 it cannot verify
    code, _, err = run("receipt", "verify", str(out), "--vkey", str(vault.vkey),
                       "--witness-vkey", str(vault.wkeys[0]), "--quorum", "2")
    assert code == 1 and "1 of the required 2" in err
    doc["rows"][0]["count"] += 1  # a changed released value in the --json result
    saved.write_text(json.dumps(doc))
    assert run("receipt", "verify", str(saved), *vault.verify_args())[0] == 1


def _parse_independently(text: str) -> tuple[bytes, int, list[bytes], str, list[str]]:
    """A tlog-proof parser written from the spec, sharing no code with ledger.receipt."""
    head, note = text.split("\n\n", 1)
    lines = head.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    entry = base64.b64decode(lines[1][len("extra "):])
    index = int(lines[2][len("index "):])
    proof = [base64.b64decode(x) for x in lines[3:]]
    body, sigs = note.rsplit("\n\n", 1)
    return entry, index, proof, body + "\n", sigs.splitlines()


def test_a_third_party_checks_a_receipt_with_independent_code(vault: Vault,
                                                              tmp_path: Path) -> None:
    pymerkle = pytest.importorskip("pymerkle")
    out = tmp_path / "r.json"
    _release(vault, out)
    entry, index, proof, body, sigs = _parse_independently(
        (tmp_path / "r.json.tlog-proof").read_text())
    origin, size_text, root_b64 = body.splitlines()
    assert origin == vault.home.identity()
    size, root = int(size_text), base64.b64decode(root_b64)
    # the log's Ed25519 signature, checked with pyca directly from the vkey text
    name, key_hex, key_b64 = vault.vkey.read_text().strip().split("+", 2)
    public = base64.b64decode(key_b64)[1:]
    log_sig = next(s for s in sigs if s.startswith(f"\u2014 {name} "))
    blob = base64.b64decode(log_sig.rsplit(" ", 1)[1])
    assert blob[:4].hex() == key_hex
    Ed25519PublicKey.from_public_bytes(public).verify(blob[4:], body.encode())
    # every witness cosignature: cosignature/v1 message with the timestamp
    for w in vault.witnesses:
        line = next(s for s in sigs if s.startswith(f"\u2014 {w.name} "))
        blob = base64.b64decode(line.rsplit(" ", 1)[1])
        message = b"cosignature/v1\ntime %d\n" % int.from_bytes(blob[4:12], "big")
        Ed25519PublicKey.from_public_bytes(w.cosigner.public_key).verify(
            blob[12:], message + body.encode())
        with pytest.raises(InvalidSignature):
            Ed25519PublicKey.from_public_bytes(w.cosigner.public_key).verify(
                blob[12:], message + body.encode().replace(b"\n", b"\n ", 1))
    # the inclusion proof, by the recursive RFC 9162 definitions
    assert inclusion_root(index, size, leaf(entry), proof) == root
    # and pymerkle (a third-party RFC 6962 implementation) over the exported log agrees
    code, export, _ = run("ledger", "export")
    assert code == 0
    leaves = [line.encode() for line in export.splitlines()[:size]]
    assert leaves[index] == entry
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    for item in leaves:
        tree.append_entry(item)
    assert tree.get_root(size) == root == mth(leaves)
    theirs = tree.prove_inclusion(index + 1, size)
    pymerkle.verify_inclusion(leaf(entry), root, theirs)
    # the file it vouches for: the export entry's data_hash is the file's SHA-256
    assert json.loads(entry)["data_hash"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_segment_erasure_and_reveal_carry_receipts(vault: Vault, tmp_path: Path) -> None:
    results = {}
    code, text, err = run("segment", "--dataset", "voters", "--features", "age", "--k", "2",
                          "--epsilon", "0.3", "--json", token=vault.tokens["alice"])
    assert code == 0, err
    results["segment"] = json.loads(text)
    code, text, err = run("reveal", "--dataset", "voters", "--match", "voter_id=NC00000007",
                          "--purpose", "legal-hold", "--json",
                          "--receipt", str(tmp_path / "reveal.tlog-proof"),
                          token=vault.tokens["steward"], reveals=True)
    assert code == 0, err
    results["reveal"] = json.loads(text)
    code, text, err = run("erase", "--dataset", "voters", "--match", "voter_id=NC00000009",
                          "--json")
    assert code == 0, err
    results["erase"] = json.loads(text)
    actions = {"segment": "release.dp", "reveal": "vault.reveal", "erase": "vault.erase"}
    for kind, doc in results.items():
        saved = tmp_path / f"{kind}.json"
        if kind == "reveal":  # the reveal's output holds opened records: keep only the proof
            doc = {"ledger_seq": doc["ledger_seq"], "receipt": doc["receipt"]}
        saved.write_text(json.dumps(doc))
        code, text, err = run("receipt", "verify", str(saved), *vault.verify_args(), "--json")
        assert code == 0, (kind, err)
        assert json.loads(text)["action"] == actions[kind]
        saved.write_text(json.dumps({**doc, "ledger_seq": doc.get("ledger_seq", 0) + 1}))
        assert run("receipt", "verify", str(saved), *vault.verify_args())[0] == 1
    assert run("receipt", "verify", str(tmp_path / "reveal.tlog-proof"),
               *vault.verify_args())[0] == 0
    if results["segment"].get("segments"):
        doc = results["segment"]
        doc["segments"][0]["size"] += 1
        (tmp_path / "seg2.json").write_text(json.dumps(doc))
        assert run("receipt", "verify", str(tmp_path / "seg2.json"), *vault.verify_args())[0] == 1
