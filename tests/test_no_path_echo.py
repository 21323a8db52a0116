"""A path the caller types may name a person (``canvass-jane-doe.csv``); error lines end
up in logs (Prefect, CI, the web service's). So a refusal names the option or argument
and the problem, in one line with exit 2 and no traceback, and never echoes the path;
nor does a ``--json`` document or a terminal line of a command that succeeded.

Every path here carries ``TOKEN``: it must appear in no output. The tests' own names
and the vault home do not carry it (tmp_path is named after the test)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ledger.signer import Signer
from tests.cli_helpers import initialised_home, run

TOKEN = "jane-doe-4417"


def refused(capsys: pytest.CaptureFixture[str], *args: str, says: str) -> str:
    """Exit 2, one ``error:`` line on stderr that says ``says``, nothing echoed."""
    code, out, err = run(capsys, *args)
    assert code == 2, (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "Traceback" not in out
    assert TOKEN not in out and TOKEN not in err, (out, err)
    assert says in err, err
    return err


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> Path:
    return initialised_home(tmp_path, monkeypatch, capsys)


@pytest.fixture
def typed(tmp_path: Path) -> Path:
    """A folder whose name names a person, for the files a caller types."""
    folder = tmp_path / f"canvass-{TOKEN}"
    folder.mkdir()
    return folder


@pytest.fixture
def vkey(tmp_path: Path) -> Path:
    """A well-formed log verifier key file (its name is not the caller's secret)."""
    path = tmp_path / "log.vkey"
    path.write_text(Signer.generate("log.example/test").vkey() + "\n", encoding="utf-8")
    return path


# -- ingest --------------------------------------------------------------------------------------


def test_ingest_of_a_missing_file_named_after_a_person_does_not_echo_it(
    typed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "h"))
    refused(capsys, "ingest", str(typed / f"{TOKEN}.csv"), "--dataset", "x",
            says="the file or folder given to ingest does not exist")


def test_ingest_of_a_folder_without_data_files_does_not_name_it(
    home: Path, typed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (typed / f"{TOKEN}.xlsx").write_bytes(b"PK\x03\x04")
    refused(capsys, "ingest", str(typed), "--dataset", "x",
            says="the folder given to ingest holds no ingestible file")


def test_service_and_flow_source_files_never_name_the_path(typed: Path) -> None:
    """The same checks in the vault service (HTTP API) and the Prefect flow (its logs)."""
    from flows.ingest import source_files as flow_files
    from vault.errors import BadInput
    from vault.service import source_files as service_files

    for files in (service_files, flow_files):
        with pytest.raises(BadInput) as info:
            files(typed / f"{TOKEN}.csv")
        assert TOKEN not in str(info.value) and "given to ingest" in str(info.value)
    with pytest.raises(BadInput) as info:
        service_files(typed)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize("command", ["ingest", "classify"])
def test_a_ragged_file_named_after_a_person_is_named_the_file(
    home: Path, typed: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """The readers' errors (line and row numbers, never values) name no file either."""
    ragged = typed / f"{TOKEN}.csv"
    ragged.write_text("a,b\n1,2\n3,4,5\n", encoding="utf-8")
    args = ["--dataset", "x"] if command == "ingest" else []
    refused(capsys, command, str(ragged), *args,
            says="the file: line 3 (row 2): 3 fields, header has 2")


def test_a_bad_file_in_a_folder_is_named_by_its_place(
    home: Path, typed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (typed / f"a-{TOKEN}.csv").write_text("a,b\n1,2\n3,4,5\n", encoding="utf-8")
    (typed / "b.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    refused(capsys, "ingest", str(typed), "--dataset", "x",
            says="file 1 of 2 in the folder (by name): line 3 (row 2): 3 fields")


# -- ledger: annotations, key, checkpoint and export files ---------------------------------------


@pytest.mark.parametrize(("content", "says"), [
    (None, "--from-jsonl: cannot read the file (no such file or directory)"),
    ("folder", "--from-jsonl: cannot read the file (is a directory)"),
    ('{"action": "note.x", "resource": "r"}\nnot json\n', "--from-jsonl line 2: not a JSON object"),
    ('{"action": "note.x", "resource": "r", "ssn": "1"}\n',
     "--from-jsonl line 1: want an object with keys action, resource"),
    ('{"action": "note.x", "resource": ""}\n', "--from-jsonl line 1: ledger entry field"),
    ("\n\n", "--from-jsonl: the file holds no annotation"),
], ids=["missing", "folder", "not_json", "extra_key", "bad_note", "empty"])
def test_annotations_file_errors_name_the_option_and_line_not_the_path(
    home: Path, typed: Path, capsys: pytest.CaptureFixture[str], content: str | None, says: str
) -> None:
    notes = typed / f"{TOKEN}.jsonl"
    if content == "folder":
        notes.mkdir()
    elif content is not None:
        notes.write_text(content, encoding="utf-8")
    refused(capsys, "ledger", "annotate", "--from-jsonl", str(notes), says=says)


@pytest.mark.parametrize("missing", ["--vkey", "--checkpoint", "--export", "--witness-vkey"])
def test_outsider_verify_names_the_option_of_an_unreadable_file(
    typed: Path, vkey: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    from ledger.checkpoint import sign_checkpoint

    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "nowhere"))
    signer = Signer.generate("log.example/test")
    vkey.write_text(signer.vkey() + "\n", encoding="utf-8")
    checkpoint = tmp_path / "log.checkpoint"
    checkpoint.write_text(sign_checkpoint([signer], "log.example/test", 0, bytes(32)),
                          encoding="utf-8")
    export = tmp_path / "log.jsonl"
    export.write_bytes(b"")
    files = {"--vkey": vkey, "--checkpoint": checkpoint, "--export": export}
    args = ["ledger", "verify"]
    for option, path in files.items():
        args += [option, str(typed / f"{TOKEN}.txt") if option == missing else str(path)]
    if missing == "--witness-vkey":
        args += ["--witness-vkey", str(typed / f"{TOKEN}.vkey")]
    refused(capsys, *args, "--json",
            says=f"{missing}: cannot read the {'key ' if 'vkey' in missing else ''}file "
                 "(no such file or directory)")
    if missing == "--vkey":  # and a key file with no key in it
        (typed / f"{TOKEN}.txt").write_text("\n", encoding="utf-8")
        refused(capsys, *args, says="--vkey: no verifier key in the file")


def test_verify_against_a_typed_checkpoint_does_not_echo_its_path(
    home: Path, typed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused(capsys, "ledger", "verify", "--checkpoint", str(typed / f"{TOKEN}.checkpoint"),
            says="cannot read the checkpoint file given to verify (no such file or directory)")
    assert run(capsys, "ledger", "checkpoint")[0] == 0
    saved = sorted((home / "checkpoints").glob("*.checkpoint"))[-1]
    mine = typed / f"{TOKEN}.checkpoint"
    mine.write_bytes(saved.read_bytes())
    code, out, err = run(capsys, "ledger", "verify", "--checkpoint", str(mine), "--json")
    assert code == 0, err
    assert TOKEN not in out + err
    assert json.loads(out)["checkpoint"]["file"] is None  # the vault's own would be named
    code, out, err = run(capsys, "ledger", "verify", "--checkpoint", str(mine))
    assert code == 0 and TOKEN not in out + err and "(the --checkpoint file)" in out
    code, out, _ = run(capsys, "ledger", "verify", "--json")  # the vault's own saved one
    assert code == 0 and json.loads(out)["checkpoint"]["file"] == str(saved)


def test_witnesses_add_names_the_vkey_option(
    home: Path, typed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused(capsys, "ledger", "witnesses", "add", "--url", "http://127.0.0.1:1",
            "--vkey", str(typed / f"{TOKEN}.vkey"),
            says="--vkey: cannot read the key file (no such file or directory)")


# -- receipt verify ------------------------------------------------------------------------------


def test_receipt_verify_names_the_argument_or_option_not_the_path(
    typed: Path, vkey: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "nowhere"))
    result = typed / f"turnout-{TOKEN}.csv"
    result.write_text("county,count\nWAKE,12\n", encoding="utf-8")
    refused(capsys, "receipt", "verify", str(result), "--vkey", str(typed / f"{TOKEN}.vkey"),
            says="--vkey: cannot read the key file (no such file or directory)")
    refused(capsys, "receipt", "verify", str(result), "--vkey", str(vkey),
            says="no receipt: FILE has no .tlog-proof sidecar and no embedded receipt")
    refused(capsys, "receipt", "verify", str(result), "--vkey", str(vkey),
            "--receipt", str(typed / f"{TOKEN}.tlog-proof"),
            says="--receipt: cannot read the file (no such file or directory)")
    refused(capsys, "receipt", "verify", str(typed / f"{TOKEN}.txt"), "--vkey", str(vkey),
            says="FILE: cannot read the file (no such file or directory)")
    proof = typed / f"{TOKEN}.csv.tlog-proof"
    proof.mkdir()
    refused(capsys, "receipt", "verify", str(proof), "--vkey", str(vkey),
            says="FILE: cannot read the file (is a directory)")


# -- policy check / apply ------------------------------------------------------------------------


def test_policy_check_names_the_argument_not_the_path(
    typed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    from policies.load import default_policy_text

    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "nowhere"))
    policy = typed / f"{TOKEN}.toml"
    refused(capsys, "policy", "check", str(policy),
            says="FILE: cannot read the file (no such file or directory)")
    policy.mkdir()  # Click's own dir_okay check would echo the path
    refused(capsys, "policy", "check", str(policy),
            says="FILE: cannot read the file (is a directory)")
    policy.rmdir()
    policy.write_text(default_policy_text().replace("dataset_cap = 10.0", "dataset_cap = -1"),
                      encoding="utf-8")
    refused(capsys, "policy", "check", str(policy), says="negative budget")
    policy.write_text(default_policy_text(), encoding="utf-8")
    for args in ([], ["--json"]):
        code, out, err = run(capsys, "policy", "check", str(policy), *args)
        assert code == 0 and TOKEN not in out + err, out + err
    assert "path" not in json.loads(out)


def test_policy_apply_names_the_argument_not_the_path(
    home: Path, typed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from policies.load import default_policy_text

    policy = typed / f"{TOKEN}.toml"
    refused(capsys, "policy", "apply", str(policy),
            says="FILE: cannot read the file (no such file or directory)")
    policy.write_text(default_policy_text().replace("dataset_cap = 10.0", "dataset_cap = -1"),
                      encoding="utf-8")
    refused(capsys, "policy", "apply", str(policy), says="FILE:")


# -- serve ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["--tls-cert", "--tls-key"])
def test_serve_names_the_missing_tls_option_not_its_path(
    typed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "nowhere"))
    present = tmp_path / "tls.pem"
    present.write_text("not a certificate\n", encoding="utf-8")
    args = ["serve", "--port", "8999"]
    for option in ("--tls-cert", "--tls-key"):
        args += [option, str(typed / f"{TOKEN}.pem") if option == missing else str(present)]
    refused(capsys, *args, says=f"{missing}: no such file")


def test_deploy_names_a_missing_watch_folder_by_its_option(
    typed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "nowhere"))
    refused(capsys, "deploy", "--watch-folder", str(typed / f"drop-{TOKEN}"), "--dry-run",
            says="--watch-folder: no such folder")


# -- witness (its home is typed with --home) -----------------------------------------------------


def test_witness_home_is_named_by_its_option_not_its_path(
    typed: Path, vkey: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whome = typed / "witness"
    refused(capsys, "witness", "pubkey", "--home", str(whome),
            says="no witness key in the witness home (--home)")
    code, out, err = run(capsys, "witness", "init", "--name", "w.example/w1", "--home",
                         str(whome), "--json")
    assert code == 0 and TOKEN not in out + err and "home" not in json.loads(out)
    refused(capsys, "witness", "init", "--name", "w.example/w1", "--home", str(whome),
            says="the witness home (--home) already holds a witness")
    refused(capsys, "witness", "trust", "--vkey", str(typed / f"{TOKEN}.vkey"),
            "--home", str(whome), says="--vkey: cannot read the key file")
    [key] = (whome / "keys").glob("*.key")
    os.chmod(key, 0o644)
    refused(capsys, "witness", "pubkey", "--home", str(whome),
            says=f"witness key file {key.name} in the witness home's keys/ folder (--home) is "
                 "accessible to group or others")


# -- outputs of commands that succeeded ----------------------------------------------------------


def test_audit_report_does_not_echo_its_out_path(
    home: Path, typed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "audit", "report", "--out", str(typed / f"{TOKEN}.html"),
                         "--json")
    assert code == 0, err
    assert TOKEN not in out + err and json.loads(out)["out"] is True
    code, out, err = run(capsys, "audit", "report", "--out", str(typed / f"{TOKEN}-2.html"))
    assert code == 0 and TOKEN not in out + err and "wrote the --out file" in out


def test_a_flow_path_reference_holds_the_path_and_only_names_a_vault_home_file(
    typed: Path, tmp_path: Path
) -> None:
    """``path_ref_for`` hands a flow ``path-file:.flow-path-<hex>`` (a 0600 file in the vault
    home holding the path, removed afterwards); ``typed_path`` reads it back, passes a plain
    path through, and refuses a reference to anything else."""
    from flows.flow_runtime import PATH_REF, path_ref_for, typed_path
    from vault.errors import BadInput
    from vault.home import VaultHome

    vh = VaultHome(tmp_path / "home")
    vh.root.mkdir()
    source = typed / f"{TOKEN}.csv"
    with path_ref_for(vh, source) as ref:
        assert ref is not None and ref.startswith(PATH_REF) and TOKEN not in ref
        [held] = vh.root.glob(".flow-path-*")
        assert held.stat().st_mode & 0o077 == 0
        assert typed_path(vh, ref) == source
    assert not list(vh.root.glob(".flow-path-*"))
    assert typed_path(vh, str(source)) == source
    for bad in (ref, f"{PATH_REF}../{TOKEN}", f"{PATH_REF}.flow-path-{TOKEN}"):
        with pytest.raises(BadInput) as err:
            typed_path(vh, bad)
        assert TOKEN not in str(err.value)


def test_a_kept_path_reference_outlives_the_run_and_is_reused_for_the_same_path(
    typed: Path, tmp_path: Path
) -> None:
    """``kept_path_ref`` (a deployment's watch folder) keeps the path in a 0600 file under
    ``<home>/flow-paths/`` (0700) and gives the same reference for the same path again: a
    redeploy adds no file. ``existing_kept_path_ref`` only looks."""
    from flows.flow_runtime import (
        PATH_REF,
        existing_kept_path_ref,
        kept_path_ref,
        typed_path,
    )
    from vault.home import VaultHome

    vh = VaultHome(tmp_path / "home")
    vh.root.mkdir()
    inbox, other = typed / f"inbox-{TOKEN}", typed / f"other-{TOKEN}"
    assert existing_kept_path_ref(vh, inbox) is None
    assert not (vh.root / "flow-paths").exists()
    ref = kept_path_ref(vh, inbox)
    assert ref.startswith(PATH_REF + "flow-paths/") and TOKEN not in ref
    assert typed_path(vh, ref) == inbox
    assert kept_path_ref(vh, inbox) == ref == existing_kept_path_ref(vh, inbox)
    second = kept_path_ref(vh, other)
    assert second != ref and typed_path(vh, second) == other
    held = sorted((vh.root / "flow-paths").iterdir())
    assert len(held) == 2 and all(p.stat().st_mode & 0o077 == 0 for p in held)
    assert (vh.root / "flow-paths").stat().st_mode & 0o077 == 0
    assert typed_path(vh, ref) == inbox  # still there: nothing removes a kept reference


def test_path_ref_gives_a_deployment_a_reference_instead_of_the_path(
    home: Path, typed: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``civicvault path-ref`` (for ``prefect deployment run -p path=...`` and
    ``prefect.yaml``): a kept reference, never the path; the same one for the same path;
    one a flow resolves back to the path; a file to be written may not exist yet."""
    import re

    from flows.flow_runtime import typed_path
    from vault.home import VaultHome

    source = typed / "walk-list.csv"
    source.write_text("voter_id\n1\n", encoding="utf-8")
    code, out, err = run(capsys, "path-ref", str(source))
    assert code == 0, err
    ref = out.strip()
    assert re.fullmatch(r"path-file:flow-paths/[0-9a-f]{16}", ref), out
    assert TOKEN not in out + err
    assert typed_path(VaultHome(home), ref) == source.absolute()
    code, out, _ = run(capsys, "path-ref", str(source), "--json")
    assert code == 0 and json.loads(out) == {"ref": ref}  # the same file, not a new one
    assert len(list((home / "flow-paths").iterdir())) == 1
    out_file = typed / "release.json"  # an --out a run will write
    code, out, _ = run(capsys, "path-ref", str(out_file))
    assert code == 0 and out.strip() != ref and TOKEN not in out
    assert typed_path(VaultHome(home), out.strip()) == out_file.absolute()
    refused(capsys, "path-ref", str(typed / "gone" / "x.csv"),
            says="PATH: neither it nor its folder exists")
    monkeypatch.setenv("CIVICVAULT_HOME", str(home.parent / "no-vault-here"))
    code, _, err = run(capsys, "path-ref", str(source))
    assert code == 2 and TOKEN not in err and "civicvault init" in err


def test_an_erasure_request_that_cannot_be_read_is_named_by_its_line_not_the_path(
    typed: Path,
) -> None:
    """An ``erase-request`` task reads its own line; its error is stored by Prefect, so a
    requests file gone (or cut short) since the flow listed it is named, not echoed (an
    ``OSError``'s text carries the path)."""
    from flows.erasure import read_request
    from vault.errors import BadInput

    requests = typed / f"{TOKEN}.jsonl"
    with pytest.raises(BadInput) as gone:
        read_request(requests, 1)
    assert str(gone.value) == "the erasure requests file cannot be read"
    requests.write_text('{"dataset": "voters", "match": {"ncid": "A1"}}\n', encoding="utf-8")
    assert read_request(requests, 1) == (None, "voters", {"ncid": "A1"})
    with pytest.raises(BadInput) as cut:
        read_request(requests, 2)
    assert TOKEN not in str(cut.value) and "line 2" in str(cut.value)
