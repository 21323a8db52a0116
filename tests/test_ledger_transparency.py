"""The vault's checkpoints: one store, witnesses and quorum, public material, key rotation,
and verification by an outsider with no vault home."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from witness_helpers import LoopbackWitness, loopback_witnesses

from flows.cli import main
from ledger import store as ledger_store
from ledger.checkpoint_store import CheckpointStore
from ledger.errors import LedgerTampered
from ledger.signer import Signer
from vault.db import make_engine
from vault.home import VaultHome
from vault.transparency import checkpoint_store, publish_checkpoint


def run(*argv: str) -> tuple[int, str, str]:
    raw = io.BytesIO()  # `ledger export` writes bytes to sys.stdout.buffer
    out = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    err = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    out.flush()
    assert "Traceback" not in err.getvalue()
    return code, raw.getvalue().decode("utf-8"), err.getvalue()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> VaultHome:
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    for var in ("CIVICVAULT_DB_URL", "CIVICVAULT_TOKEN", "CIVICVAULT_WITNESS_HOME"):
        monkeypatch.delenv(var, raising=False)
    assert run("init")[0] == 0
    return VaultHome.from_env()


def _entries(home: VaultHome) -> list[dict[str, object]]:
    engine = make_engine(home.db_url)
    try:
        with engine.connect() as conn:
            return [json.loads(e) for e in ledger_store.iter_entries(conn)]
    finally:
        engine.dispose()


@contextlib.contextmanager
def witnessed(home: VaultHome, tmp: Path, quorum: int = 2) -> Iterator[list[LoopbackWitness]]:
    signer = Signer.load(home.signing_key_path)
    with loopback_witnesses(tmp, {home.identity(): [signer]}) as witnesses:
        for w in witnesses:
            vkey = tmp / f"{w.folder.name}.vkey"
            vkey.write_text(w.cosigner.vkey() + "\n")
            assert run("ledger", "witnesses", "add", "--url", w.url, "--vkey", str(vkey))[0] == 0
        assert run("ledger", "witnesses", "quorum", str(quorum))[0] == 0
        yield witnesses


def test_checkpoint_and_pubkey_are_public_and_write_no_entry(home: VaultHome) -> None:
    before = len(_entries(home))
    code, note, _ = run("--token", "cvt_" + "A" * 43, "ledger", "checkpoint")  # forged token
    assert code == 0 and note.startswith(home.identity() + "\n")
    code, vkey, _ = run("ledger", "pubkey")
    assert code == 0 and vkey.strip() == Signer.load(home.signing_key_path).vkey()
    assert len(_entries(home)) == before  # public material is not an access
    # the tree did not grow: the same saved checkpoint is served, nothing is re-signed
    assert run("ledger", "checkpoint")[1] == note
    assert len(checkpoint_store(home).files()) == 1


def test_api_serves_checkpoint_and_pubkey_without_a_token(home: VaultHome) -> None:
    from fastapi.testclient import TestClient

    from flows.api import create_app

    engine = make_engine(home.db_url)
    client = TestClient(create_app(home, engine))
    before = len(_entries(home))
    note = client.get("/api/ledger/checkpoint").text
    assert client.get("/api/ledger/pubkey").text.strip() == Signer.load(
        home.signing_key_path).vkey()
    assert len(_entries(home)) == before
    assert client.get("/log/checkpoint").text == note  # the tlog-tiles checkpoint: same store
    assert client.get("/api/ledger/proof/inclusion", params={"index": 0}).status_code == 401
    saved = checkpoint_store(home).latest()
    assert saved is not None and saved.note == note


def test_one_store_across_cli_api_audit_flow_and_report(home: VaultHome, tmp_path: Path) -> None:
    """Whoever saved the newest checkpoint, everyone reads that one (no naming divergence)."""
    from fastapi.testclient import TestClient

    from flows.api import create_app

    assert run("ledger", "checkpoint")[0] == 0
    assert run("ledger", "annotate", "--action", "note.a", "--resource", "r")[0] == 0
    engine = make_engine(home.db_url)
    api_note = TestClient(create_app(home, engine)).get("/api/ledger/checkpoint").text
    newest = checkpoint_store(home).latest()
    assert newest is not None and newest.note == api_note and newest.size >= 3
    code, out, _ = run("ledger", "verify", "--json")
    assert code == 0 and json.loads(out)["checkpoint"]["size"] == newest.size
    report = tmp_path / "r.html"
    assert run("audit", "report", "--out", str(report))[0] == 0
    assert newest.note.split("\n")[2] in report.read_text()  # the report embeds the newest
    from flows.audit import previous_checkpoint

    prev = previous_checkpoint(home)
    assert prev is not None and prev[0] == newest.path


def test_store_refuses_a_checkpoint_that_does_not_extend_the_last(home: VaultHome,
                                                                  tmp_path: Path) -> None:
    assert run("ledger", "annotate", "--action", "note.a", "--resource", "r")[0] == 0
    engine = make_engine(home.db_url)
    published = publish_checkpoint(engine, home)
    signer = Signer.load(home.signing_key_path)
    store = CheckpointStore(home.checkpoints_dir, home.identity(), [signer.vkey()])
    from ledger.checkpoint import sign_checkpoint

    forked = sign_checkpoint([signer], home.identity(), published.saved.size, b"\x07" * 32)
    with pytest.raises(LedgerTampered):
        store.save(forked)
    with engine.connect() as conn:
        smaller = sign_checkpoint([signer], home.identity(), 1, ledger_store.root(conn, 1))
    with pytest.raises(LedgerTampered):
        store.save(smaller)  # a rollback
    other_key = sign_checkpoint([Signer.generate(home.identity())], home.identity(),
                                published.saved.size, published.saved.checkpoint.root)
    with pytest.raises(Exception, match="does not verify"):
        store.save(other_key)
    assert store.latest() == published.saved


def test_cosigned_checkpoint_and_quorum_enforced(home: VaultHome, tmp_path: Path) -> None:
    with witnessed(home, tmp_path) as (w1, w2):
        code, note, _ = run("ledger", "checkpoint")
        assert code == 0
        assert f"\u2014 {w1.name} " in note and f"\u2014 {w2.name} " in note
        cp = tmp_path / "cp"
        cp.write_text(note)
        assert run("ledger", "verify", "--checkpoint", str(cp))[0] == 0
        assert run("ledger", "annotate", "--action", "note.a", "--resource", "r")[0] == 0
        w2.server.stop()  # one witness down: the quorum of 2 is not met
        code, note2, err = run("ledger", "checkpoint", "--json")
        assert code == 1 and "1 of the required 2" in err
        assert json.loads(note2)["witnesses"] == [w1.name]
        cp2 = tmp_path / "cp2"
        cp2.write_text(json.loads(note2)["note"])
        code, _, err = run("ledger", "verify", "--checkpoint", str(cp2))
        assert code == 1 and "1 of the required 2" in err
        assert run("ledger", "verify", "--checkpoint", str(cp2), "--quorum", "1")[0] == 0


def test_outsider_verifies_an_export_with_no_vault_home(home: VaultHome, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with witnessed(home, tmp_path) as (w1, w2):
        assert run("ledger", "annotate", "--action", "note.a", "--resource", "r")[0] == 0
        note = run("ledger", "checkpoint")[1]
    export = run("ledger", "export")[1]
    files = {"export": export, "cp": note, "vkey": run("ledger", "pubkey")[1],
             "w1": w1.cosigner.vkey() + "\n", "w2": w2.cosigner.vkey() + "\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "nowhere"))  # no vault here
    argv = ["ledger", "verify", "--export", str(tmp_path / "export"), "--checkpoint",
            str(tmp_path / "cp"), "--vkey", str(tmp_path / "vkey"), "--json"]
    code, out, err = run(*argv, "--witness-vkey", str(tmp_path / "w1"),
                       "--witness-vkey", str(tmp_path / "w2"))
    assert code == 0, err
    assert json.loads(out)["witnesses"] == sorted([w1.name, w2.name])
    assert not (tmp_path / "nowhere").exists()
    lines = export.splitlines(keepends=True)
    lines[1] = lines[1].replace('"seq":1', '"seq":1 ', 1)
    (tmp_path / "export").write_text("".join(lines))
    code, out, _ = run(*argv)
    assert code == 1 and json.loads(out)["verified"] is False
    (tmp_path / "export").write_text("".join(export.splitlines(keepends=True)[:2]))
    assert run(*argv)[0] == 1  # truncated below the checkpoint
    (tmp_path / "export").write_text(export)
    other = tmp_path / "other.vkey"
    other.write_text(Signer.generate(home.identity()).vkey() + "\n")
    assert run(*argv[:-2], str(other), "--json")[0] == 1
    assert run("ledger", "verify", "--export", str(tmp_path / "export"))[0] == 2


def test_log_key_rotation_keeps_older_checkpoints_verifiable(home: VaultHome,
                                                             tmp_path: Path) -> None:
    old_note = run("ledger", "checkpoint")[1]
    old_vkey = run("ledger", "pubkey")[1]
    code, out, _ = run("ledger", "rotate-key", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["old_vkey"] == old_vkey.strip() and doc["vkey"] != doc["old_vkey"]
    transition = checkpoint_store(home).latest()
    assert transition is not None and transition.note.count("\u2014 ") == 2  # both keys
    assert run("ledger", "annotate", "--action", "note.a", "--resource", "r")[0] == 0
    new_note = run("ledger", "checkpoint")[1]
    assert new_note.count("\u2014 ") == 1
    (tmp_path / "old.cp").write_text(old_note)
    assert run("ledger", "verify", "--checkpoint", str(tmp_path / "old.cp"))[0] == 0
    assert run("ledger", "pubkey", "--all")[1].splitlines() == [doc["vkey"], doc["old_vkey"]]
    # an outsider holding only the old key follows the transition checkpoint
    export = tmp_path / "export"
    export.write_text(run("ledger", "export")[1])
    (tmp_path / "old.vkey").write_text(old_vkey)
    (tmp_path / "t.cp").write_text(transition.note)
    (tmp_path / "new.cp").write_text(new_note)
    base = ["ledger", "verify", "--export", str(export), "--vkey", str(tmp_path / "old.vkey")]
    assert run(*base, "--checkpoint", str(tmp_path / "t.cp"))[0] == 0
    assert run(*base, "--checkpoint", str(tmp_path / "new.cp"))[0] == 1  # old key: not after
    assert any(e["action"] == "ledger.key.rotated" for e in _entries(home))
