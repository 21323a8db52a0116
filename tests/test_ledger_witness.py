"""C2SP tlog-witness and tlog-cosignature: two witnesses on loopback, attacks refused.

Every witness here is a real HTTP server on 127.0.0.1 (ephemeral port); the log
side is either a log in memory (to play a forking or rolling-back log) or the
vault itself through ``vault.transparency.publish_checkpoint``.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from witness_helpers import MemoryLog, loopback_witnesses, submit_to

from ledger.cosignature import Cosigner, parse_any_vkey, parse_cosigner_vkey, witnesses_of
from ledger.errors import VerificationFailed
from ledger.signer import Signer
from ledger.witness import Witness, WitnessState
from ledger.witness_http import collect_cosignatures, request_body

ORIGIN = "log.example/test"


def _log(n: int = 5) -> MemoryLog:
    return MemoryLog(Signer.generate(ORIGIN)).add(*(f"entry {i}".encode() for i in range(n)))


def _cosign_all(log: MemoryLog, witnesses: list, old: dict[str, int]) -> dict[str, int]:
    result = collect_cosignatures(log.checkpoint(), len(log.entries),
                                  [w.endpoint() for w in witnesses], old_sizes=old,
                                  proof_for=lambda o: log.proof(o))
    return result.witnesses


def test_cosignature_wire_format_verifies_independently() -> None:
    """The cosignature line is key ID || u64 timestamp || Ed25519 over the spec's message."""
    log = _log()
    cosigner = Cosigner.generate("witness.example/w1")
    note = log.checkpoint()
    text = note[: note.rfind("\n\n") + 1]
    line = cosigner.cosign(text, timestamp=1679315147)
    name, b64 = line.removeprefix("\u2014 ").rstrip("\n").split(" ")
    blob = base64.b64decode(b64)
    assert name == cosigner.name and len(blob) == 4 + 8 + 64
    assert blob[:4] == hashlib.sha256(name.encode() + b"\n\x04" + cosigner.public_key).digest()[:4]
    assert int.from_bytes(blob[4:12], "big") == 1679315147
    message = b"cosignature/v1\ntime 1679315147\n" + text.encode()
    Ed25519PublicKey.from_public_bytes(cosigner.public_key).verify(blob[12:], message)
    vkey = cosigner.vkey()
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == 0x04
    assert parse_any_vkey(vkey) == parse_cosigner_vkey(vkey) == cosigner.verifier()
    assert witnesses_of(note + line, [cosigner.verifier()]) == {name: 1679315147}
    assert witnesses_of(note + line, []) == {}  # unknown keys are ignored


def test_two_witnesses_cosign_and_follow_the_log(tmp_path: Path) -> None:
    log = _log(5)
    with loopback_witnesses(tmp_path, {ORIGIN: [log.signer]}) as (w1, w2):
        assert set(_cosign_all(log, [w1, w2], {})) == {w1.name, w2.name}
        log.add(b"six", b"seven", b"eight")
        # the log believes both hold size 5: proofs from 5 are sent and accepted
        assert set(_cosign_all(log, [w1, w2], {w1.name: 5, w2.name: 5})) == {w1.name, w2.name}
        # a log that forgot what they hold recovers through 409 (the witness says its size)
        log.add(b"nine")
        assert set(_cosign_all(log, [w1, w2], {})) == {w1.name, w2.name}


def test_split_view_is_refused_by_the_second_cosignature(tmp_path: Path) -> None:
    """The log shows one continuation to witness 1 and another to witness 2: each can get
    one cosignature, neither gets the second, so no view reaches a quorum of 2."""
    honest = _log(4)
    with loopback_witnesses(tmp_path, {ORIGIN: [honest.signer]}) as (w1, w2):
        assert len(_cosign_all(honest, [w1, w2], {})) == 2
        view_a = honest.fork().add(b"for the regulator")
        view_b = honest.fork().add(b"for the journalist")
        assert submit_to(w1.url, view_a, old=4)[0] == 200
        assert submit_to(w2.url, view_b, old=4)[0] == 200
        # completing the quorum for either view needs the other witness: refused
        status, ctype, body = submit_to(w2.url, view_a, old=4)
        assert (status, ctype, body) == (409, "text/x.tlog.size", b"5\n")
        status, _, _ = submit_to(w2.url, view_a, old=5, proof=[])  # same size, other root
        assert status == 422
        assert submit_to(w1.url, view_b, old=5, proof=[])[0] == 422
        got_a = _cosign_all(view_a, [w1, w2], {w1.name: 5, w2.name: 5})
        got_b = _cosign_all(view_b, [w1, w2], {w1.name: 5, w2.name: 5})
        assert set(got_a) == {w1.name} and set(got_b) == {w2.name}
        # and a longer continuation of view A cannot be proven consistent with view B
        longer_a = view_a.fork().add(b"more")
        status, _, _ = submit_to(w2.url, longer_a, old=5, proof=longer_a.proof(5))
        assert status == 422


def test_rollback_is_refused(tmp_path: Path) -> None:
    log = _log(10)
    with loopback_witnesses(tmp_path, {ORIGIN: [log.signer]}, count=1) as (w1,):
        assert submit_to(w1.url, log, old=0)[0] == 200
        assert submit_to(w1.url, log, old=10, size=6)[0] == 400  # old size above the new
        status, ctype, body = submit_to(w1.url, log, old=6, size=6)
        assert (status, ctype, body) == (409, "text/x.tlog.size", b"10\n")
        assert submit_to(w1.url, log, old=0, size=6)[0] == 409


def test_status_codes_follow_the_spec(tmp_path: Path) -> None:
    log = _log(6)
    stranger = MemoryLog(Signer.generate("other.example/log")).add(b"x")
    impostor = MemoryLog(Signer.generate(ORIGIN)).add(*log.entries)  # same origin, other key
    with loopback_witnesses(tmp_path, {ORIGIN: [log.signer]}, count=1) as (w1,):
        assert submit_to(w1.url, stranger, old=0)[0] == 404
        assert submit_to(w1.url, impostor, old=0)[0] == 403
        bad_sig = log.checkpoint().replace("\u2014 " + ORIGIN + " ", "\u2014 " + ORIGIN + " A", 1)
        from ledger.witness_http import submit

        assert submit(w1.url, request_body(0, [], bad_sig)).status in (400, 403)
        empty = MemoryLog(log.signer)
        assert submit_to(w1.url, empty, old=0)[0] == 200  # size 0 with the empty root
        assert submit_to(w1.url, log, old=0, size=3, proof=[b"\x00" * 32])[0] == 422
        assert submit_to(w1.url, log, old=0, size=3)[0] == 200
        assert submit_to(w1.url, log, old=3, size=6, proof=[b"\x01" * 32] * 3)[0] == 422
        assert submit(w1.url, b"old 03\n\n" + log.checkpoint().encode()).status == 400
        assert submit(w1.url, b"old 3\nnot base64!\n\n" + log.checkpoint().encode()).status == 400
        assert submit(w1.url, b"old 3\n" + b"AAAA\n" * 64 + b"\n").status == 400
        assert submit_to(w1.url, log, old=3, size=6)[0] == 200


def test_racing_submissions_never_roll_the_witness_back(tmp_path: Path) -> None:
    """The spec's race (check N, check N+K, store N+K, store N) cannot happen."""
    log = _log(40)
    witness = Witness([Cosigner.generate("w.test/race")], {ORIGIN: [log.signer.verifier()]},
                      WitnessState(tmp_path / "state"))
    assert witness.add_checkpoint(request_body(0, [], log.checkpoint(1))).status == 200
    statuses: list[int] = []

    def go(size: int) -> None:
        body = request_body(1, log.proof(1, size), log.checkpoint(size))
        statuses.append(witness.add_checkpoint(body).status)

    threads = [threading.Thread(target=go, args=(s,)) for s in range(2, 40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(200) == 1 and set(statuses) <= {200, 409}
    kept = witness.state.load(ORIGIN)
    assert kept is not None and kept.size >= 2
    # a restarted witness reads the same state and still refuses to go back
    again = Witness(witness.cosigners, witness.logs, WitnessState(tmp_path / "state"))
    assert again.add_checkpoint(request_body(1, log.proof(1, 2),
                                             log.checkpoint(2))).status in (409, 422)


def test_witness_key_rotation_keeps_old_cosignatures_verifiable(tmp_path: Path) -> None:
    log = _log(3)
    old_key = Cosigner.generate("w.test/rot")
    state = WitnessState(tmp_path / "state")
    w = Witness([old_key], {ORIGIN: [log.signer.verifier()]}, state)
    first = log.checkpoint() + w.add_checkpoint(request_body(0, [], log.checkpoint())).body.decode()
    new_key = Cosigner.generate("w.test/rot")
    w = Witness([old_key, new_key], w.logs, state)  # overlap: both keys cosign
    log.add(b"d")
    reply = w.add_checkpoint(request_body(3, log.proof(3), log.checkpoint())).body.decode()
    assert reply.count("\u2014 w.test/rot ") == 2
    second = log.checkpoint() + reply
    w = Witness([new_key], w.logs, state)  # old key retired
    log.add(b"e")
    third = log.checkpoint() + w.add_checkpoint(
        request_body(4, log.proof(4), log.checkpoint())).body.decode()
    both = [old_key.verifier(), new_key.verifier()]
    assert set(witnesses_of(first, both)) == {"w.test/rot"}  # still verifies after rotation
    assert set(witnesses_of(second, [new_key.verifier()])) == {"w.test/rot"}
    assert witnesses_of(third, [old_key.verifier()]) == {}  # a retired key signs nothing new
    assert set(witnesses_of(third, both)) == {"w.test/rot"}  # one witness counts once
    head, _, b64 = third.rstrip("\n").rpartition(" ")
    blob = bytearray(base64.b64decode(b64))
    blob[-1] ^= 1  # the new key's signature, one bit off: a known key that fails
    forged = head + " " + base64.b64encode(bytes(blob)).decode() + "\n"
    with pytest.raises(VerificationFailed):
        witnesses_of(forged, both)


def test_retire_key_takes_a_key_id_only(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`witness retire-key` names a file under the keys folder by the ID it is given: a
    path (``../x``) or anything but 8 hex digits is refused (exit 2, nothing moved); a
    real ID of a rotated witness is retired."""
    from flows.cli import main

    home = tmp_path / "w"
    assert main(["witness", "init", "--name", "w.test/ret", "--home", str(home)]) == 0
    assert main(["witness", "rotate-key", "--home", str(home)]) == 0
    capsys.readouterr()
    outside = tmp_path / "outside.key"
    outside.write_text("not a witness key")
    keys = sorted(p.name for p in (home / "keys").iterdir())
    for bad in ("../../outside", "../keys/" + keys[0][:-4], keys[0][:-4] + "0", "zzzzzzzz", ""):
        assert main(["witness", "retire-key", bad, "--home", str(home)]) == 2
        err = capsys.readouterr().err
        assert "KEY_ID must be a witness key ID" in err and err.count("\n") == 1, err
    assert outside.exists() and sorted(p.name for p in (home / "keys").iterdir()) == keys
    assert not (home / "retired").exists()
    assert main(["witness", "retire-key", keys[0][:-4].upper(), "--home", str(home)]) == 0
    assert f"retired witness key {keys[0][:-4]}" in capsys.readouterr().out
    assert [p.name for p in (home / "retired").iterdir()] == [keys[0]]


@pytest.mark.slow
def test_witness_serve_command_cosigns_over_http(tmp_path: Path) -> None:
    """`civicvault witness init | trust | serve --port 0` as a separate process."""
    import subprocess
    import sys

    log = _log(3)
    (tmp_path / "log.vkey").write_text(log.signer.vkey() + "\n")
    home = tmp_path / "w"
    base = [sys.executable, "-m", "flows.cli", "witness"]
    vkey = subprocess.run([*base, "init", "--name", "w.test/cli", "--home", str(home)],
                          check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([*base, "trust", "--vkey", str(tmp_path / "log.vkey"), "--home", str(home)],
                   check=True, capture_output=True)
    proc = subprocess.Popen([*base, "serve", "--port", "0", "--home", str(home)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:")
        status, _, body = submit_to(url, log, old=0)
        assert status == 200
        assert set(witnesses_of(log.checkpoint() + body.decode(),
                                [parse_cosigner_vkey(vkey)])) == {"w.test/cli"}
        from urllib.request import urlopen

        digest = hashlib.sha256(ORIGIN.encode()).hexdigest()
        with urlopen(f"{url}/{digest}/checkpoint", timeout=10) as resp:
            assert resp.read().decode().startswith(f"{ORIGIN}\n3\n")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
