"""``civicvault ledger ...`` in-process: exit codes, exact outputs, independent checks."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.checkpoint import sign_checkpoint
from ledger.signer import Signer
from tests import ledger_independent as ind
from tests.cli_helpers import initialised_home, run

COMMANDS = ["annotate", "verify", "checkpoint", "pubkey", "export", "prove", "consistency"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
         ) -> Path:
    return initialised_home(tmp_path, monkeypatch, capsys)


def export_lines(capsys: pytest.CaptureFixture[str]) -> list[bytes]:
    code, out, _ = run(capsys, "ledger", "export")
    assert code == 0
    return [line.encode() for line in out.splitlines()]


def tamper(home: Path, sql: str, *params: object) -> None:
    db = sqlite3.connect(home / "vault.db")
    for name in ("entries_no_update", "entries_no_delete", "nodes_no_update", "nodes_no_delete"):
        db.execute(f"DROP TRIGGER IF EXISTS ledger_{name}")
    db.execute(sql, params)
    db.commit()
    db.close()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_ledger_command_answers_help(command: str, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    code, out, _ = run(capsys, "ledger", command, "--help")
    assert code == 0 and "Usage" in out


def test_annotate_then_verify(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "ledger", "annotate", "--action", "review.quarterly",
                     "--resource", "dataset/nc", "--purpose", "q3 audit")
    assert code == 0
    entries = [json.loads(line) for line in export_lines(capsys)]
    note = [e for e in entries if e["action"] == "review.quarterly"]
    assert note and note[0]["resource"] == "dataset/nc" and note[0]["purpose"] == "q3 audit"
    code, out, _ = run(capsys, "ledger", "verify", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["verified"] is True and report["size"] >= len(entries)


def test_annotate_from_jsonl_is_all_or_nothing(home: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"action": "note.bulk", "resource": f"r/{i}"}) + "\n"
                            for i in range(50)))
    assert run(capsys, "ledger", "annotate", "--from-jsonl", str(good))[0] == 0
    before = export_lines(capsys)
    assert sum(b'"note.bulk"' in line for line in before) == 50
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"action": "note.ok", "resource": "r"}\n'
                   '{"action": "note.ok", "resource": "r"}\n'
                   '{"action": "note.ok", "resource": "r", "ssn": "123-45-6789"}\n')
    code, _, err = run(capsys, "ledger", "annotate", "--from-jsonl", str(bad))
    assert code == 2
    assert "--from-jsonl line 3:" in err and "123-45" not in err
    assert "bad.jsonl" not in err  # the option, not the path typed for it
    after = export_lines(capsys)
    assert not any(b'"note.ok"' in line for line in after)
    assert after[: len(before)] == before


def test_export_lines_are_the_leaf_bytes(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = export_lines(capsys)
    prev = "0" * 64
    for i, line in enumerate(lines):
        doc = json.loads(line)
        assert doc["seq"] == i and doc["prev"] == prev
        assert line == json.dumps(doc, sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False).encode()
        prev = ind.leaf(line).hex()


def test_prove_output_verifies_independently(home: Path, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    for i in range(6):
        run(capsys, "ledger", "annotate", "--action", "note.x", "--resource", f"r/{i}")
    lines = export_lines(capsys)
    size = len(lines)
    for index in (0, 3, size - 1):
        code, out, _ = run(capsys, "ledger", "prove", "--index", str(index), "--size",
                           str(size), "--json")
        assert code == 0
        proof = json.loads(out)
        assert set(proof) == {"leaf_index", "tree_size", "leaf_hash", "root_hash",
                              "inclusion_path"}
        assert proof["tree_size"] == size and proof["leaf_index"] == index
        assert proof["leaf_hash"] == ind.leaf(lines[index]).hex()
        assert proof["root_hash"] == ind.mth(lines).hex()
        path = [bytes.fromhex(h) for h in proof["inclusion_path"]]
        assert ind.inclusion_root(index, size, ind.leaf(lines[index]), path).hex() == \
            proof["root_hash"]
    assert run(capsys, "ledger", "prove", "--index", str(size + 50), "--json")[0] == 2


def test_consistency_output_verifies_independently(home: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(5):
        run(capsys, "ledger", "annotate", "--action", "note.x", "--resource", f"r/{i}")
    lines = export_lines(capsys)
    code, out, _ = run(capsys, "ledger", "consistency", "--old", "3", "--new", str(len(lines)),
                       "--json")
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {"old_size", "new_size", "old_root", "new_root", "consistency_path"}
    assert doc["old_root"] == ind.mth(lines[:3]).hex()
    assert doc["new_root"] == ind.mth(lines).hex()
    assert ind.consistent(3, len(lines), bytes.fromhex(doc["old_root"]),
                          bytes.fromhex(doc["new_root"]),
                          [bytes.fromhex(h) for h in doc["consistency_path"]])
    assert run(capsys, "ledger", "consistency", "--old", "0", "--json")[0] == 2


def test_checkpoint_is_a_c2sp_note_anyone_can_verify(home: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, vkey, _ = run(capsys, "ledger", "pubkey")
    assert code == 0
    name, key_id, b64 = vkey.strip().split("+", 2)
    pub = base64.b64decode(b64)[1:]
    assert hashlib.sha256(name.encode() + b"\n\x01" + pub).digest()[:4].hex() == key_id
    code, note, _ = run(capsys, "ledger", "checkpoint")
    assert code == 0
    text, _, sig_line = note.rstrip("\n").rpartition("\n\n")
    origin, size, root_b64 = text.split("\n")
    dash, signer_name, sig_b64 = sig_line.split(" ")
    assert dash == "\u2014" and signer_name == origin == name
    sig = base64.b64decode(sig_b64)
    assert sig[:4].hex() == key_id
    Ed25519PublicKey.from_public_bytes(pub).verify(sig[4:], (text + "\n").encode())
    lines = export_lines(capsys)
    assert base64.b64decode(root_b64) == ind.mth(lines[: int(size)])
    saved = sorted((home / "checkpoints").glob(f"{int(size):012d}-*.checkpoint"))
    assert saved[-1].read_text() == note  # saved under the one store's naming rule


def test_verify_names_the_edited_entry(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(4):
        run(capsys, "ledger", "annotate", "--action", "note.x", "--resource", f"r/{i}")
    # init wrote 3 entries (principal.added, vault.init, policy.applied); each annotate 2
    tamper(home, "UPDATE ledger_entries SET entry = replace(entry, 'r/1', 'r/9') WHERE seq = 6")
    code, out, err = run(capsys, "ledger", "verify", "--json")
    assert code == 1
    assert "entry 6" in err
    assert json.loads(out)["first_failing_seq"] == 6


def test_verify_against_saved_checkpoint_detects_truncation(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(4):
        run(capsys, "ledger", "annotate", "--action", "note.x", "--resource", f"r/{i}")
    code, note, _ = run(capsys, "ledger", "checkpoint")
    size = int(note.split("\n")[1])
    tamper(home, "DELETE FROM ledger_entries WHERE seq >= ?", size - 2)
    code, _, err = run(capsys, "ledger", "verify")
    assert code == 1
    # verify ledgers its own access only once it passed: entry size-2 is the first missing
    assert f"entry {size - 2}" in err and "truncated" in err


def test_verify_rejects_checkpoint_from_other_origin(home: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    other = Signer.generate("someone.else/log")
    path = tmp_path / "other.checkpoint"
    path.write_text(sign_checkpoint([other], "someone.else/log", 1, bytes(32)))
    code, _, err = run(capsys, "ledger", "verify", "--checkpoint", str(path))
    assert code == 1 and "signature" in err
    mine = Signer.load(home / "ledger-signing.key")
    path.write_text(sign_checkpoint([mine], "someone.else/log", 1, bytes(32)))
    code, _, err = run(capsys, "ledger", "verify", "--checkpoint", str(path))
    assert code == 1 and "origin" in err


def test_verify_rejects_forged_checkpoint_signature(home: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _, note, _ = run(capsys, "ledger", "checkpoint")
    size = note.split("\n")[1]
    forged = note.replace(f"\n{size}\n", f"\n{int(size) - 1}\n", 1)
    path = tmp_path / "forged.checkpoint"
    path.write_text(forged)
    code, _, err = run(capsys, "ledger", "verify", "--checkpoint", str(path))
    assert code == 1 and "signature" in err
