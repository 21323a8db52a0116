"""The HTTP layer on a real vault: problem details, body cap, 401 challenges, repeated
denials, public material, offline docs, TLS."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from flows.api import create_app
from flows.api.limits import DenialLimiter
from flows.cli import main
from ledger import store as ledger_store
from vault.db import make_engine
from vault.home import VaultHome
from vault.service import Vault

PROBLEM = "application/problem+json"
SECRET = "Zq7SecretJaneDoe"  # something a caller typed: must never come back


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Api:
    home: VaultHome
    tokens: dict[str, str]
    clock: Clock
    client: TestClient

    def entries(self) -> list[dict[str, Any]]:
        engine = make_engine(self.home.db_url)
        try:
            with engine.connect() as conn:
                return [json.loads(e) for e in ledger_store.iter_entries(conn)]
        finally:
            engine.dispose()

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def _quiet_main(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setenv("CIVICVAULT_HOME", str(tmp_path / "home"))
    for var in ("CIVICVAULT_DB_URL", "CIVICVAULT_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    assert _quiet_main("init")[0] == 0
    home = VaultHome.from_env()
    with Vault.open(home) as admin:
        tokens = {"analyst": admin.principals_add("ana", "analyst"),
                  "admin": (home.root / "admin.token").read_text().strip()}
    clock = Clock()
    engine = make_engine(home.db_url)
    app = create_app(home, engine, max_body_bytes=4096,
                     denials=DenialLimiter(30, clock=clock))
    with TestClient(app) as client:
        yield Api(home, tokens, clock, client)
    engine.dispose()


def _is_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    doc = r.json()
    assert set(doc) == {"type", "title", "status", "detail"} and doc["status"] == status
    assert doc["type"].startswith("tag:civicvault.local,2026:problem/")
    return dict(doc)


# -- problem details -----------------------------------------------------------------------------


def test_errors_are_problem_details_that_echo_no_input(api: Api) -> None:
    h = api.auth("admin")
    bad = api.client.get("/api/ledger/proof/inclusion", params={"index": 987654, "size": 2},
                         headers=h)
    doc = _is_problem(bad, 400)
    assert doc["type"].endswith("/bad-input") and "987654" not in bad.text
    denied = api.client.post("/api/releases", headers=api.auth("analyst"),
                             json={"dataset": SECRET, "by": [SECRET], "epsilon": "0.1"})
    assert denied.status_code in (400, 403) and SECRET.lower() not in denied.text.lower()
    _is_problem(denied, denied.status_code)
    unknown = api.client.post(f"/api/principals/{SECRET}/revoke", headers=h)
    assert unknown.status_code == 400 and SECRET.lower() not in unknown.text.lower()


def test_validation_errors_are_422_problems_without_the_input(api: Api) -> None:
    h = api.auth("analyst")
    short = api.client.post("/api/releases", headers=h,
                            json={"dataset": SECRET, "by": [], "epsilon": SECRET})
    doc = _is_problem(short, 422)
    assert "body.by" in doc["detail"] and SECRET.lower() not in short.text.lower()
    broken = api.client.post("/api/releases", headers={**h, "content-type": "application/json"},
                             content=b'{"dataset": "' + SECRET.encode() + b'", ')
    _is_problem(broken, 422)
    assert SECRET.lower() not in broken.text.lower()
    keyed = api.client.post("/api/erasures", headers=h,
                            json={"dataset": "d", "match": {SECRET: 5}})
    _is_problem(keyed, 422)
    assert SECRET.lower() not in keyed.text.lower()


def test_unknown_paths_and_methods_are_problems(api: Api) -> None:
    _is_problem(api.client.get(f"/api/{SECRET}"), 404)
    wrong = api.client.delete("/api/policy")
    _is_problem(wrong, 405)
    assert "GET" in wrong.headers["allow"]


def test_every_401_carries_a_bearer_challenge(api: Api) -> None:
    proof = "/api/ledger/proof/inclusion?index=0"
    missing = api.client.get(proof)
    _is_problem(missing, 401)
    assert missing.headers["www-authenticate"] == 'Bearer realm="civicvault"'
    forged = api.client.get(proof, headers={"Authorization": "Bearer cvt_" + "A" * 43})
    _is_problem(forged, 401)
    assert forged.headers["www-authenticate"].startswith("Bearer ")
    assert 'error="invalid_token"' in forged.headers["www-authenticate"]
    basic = api.client.get(proof, headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert basic.status_code == 401 and basic.headers["www-authenticate"].startswith("Bearer")


def test_openapi_declares_each_status_with_the_problem_schema(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert "Problem" in spec["components"]["schemas"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert {"413", "503"} <= codes, (method, path)
            if op.get("security"):
                assert {"400", "401", "403", "429"} <= codes, (method, path)
                assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
            if op.get("parameters") or op.get("requestBody"):
                assert "422" in codes, (method, path)
            for code in codes - {"200"}:
                assert op["responses"][code]["content"][PROBLEM]["schema"] == {
                    "$ref": "#/components/schemas/Problem"}, (method, path, code)
    public = spec["paths"]["/api/ledger/checkpoint"]["get"]
    assert not public.get("security") and "401" not in public["responses"]


# -- the body cap --------------------------------------------------------------------------------


def test_bodies_over_the_cap_are_refused_before_authentication(api: Api) -> None:
    before = len(api.entries())
    big = b'{"dataset": "' + b"x" * 8000 + b'"}'
    r = api.client.post("/api/releases", content=big,
                        headers={"content-type": "application/json"})
    doc = _is_problem(r, 413)  # not 401: nothing looked at the token or the body
    assert doc["type"].endswith("/request-too-large")
    chunked = api.client.post("/api/releases", content=iter([b"x" * 1000] * 10),
                              headers={**api.auth("admin"), "content-type": "application/json"})
    _is_problem(chunked, 413)
    assert len(api.entries()) == before
    ok = api.client.post("/api/releases", headers=api.auth("analyst"),
                         json={"dataset": "d", "by": ["a"], "epsilon": "0.1"})
    assert ok.status_code != 413


def test_a_streamed_body_is_not_read_past_the_cap(api: Api) -> None:
    """The raw ASGI app pulls no chunk after the one that crosses the cap, and answers 413."""
    app = api.client.app
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"y" * 1000, "more_body": True}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/api/releases", "raw_path": b"",
             "root_path": "", "query_string": b"",
             "headers": [(b"transfer-encoding", b"chunked"),
                         (b"authorization", f"Bearer {api.tokens['admin']}".encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    anyio.run(app, scope, receive, send)  # type: ignore[arg-type]
    assert pulled == 5  # 4096 bytes cap: the fifth 1000-byte chunk crosses it
    assert sent[0]["status"] == 413


def test_a_35_mb_unauthenticated_post_is_refused_unread(api: Api) -> None:
    started = time.perf_counter()
    r = api.client.post("/api/releases", content=b"{" + b" " * (35 << 20) + b"}",
                        headers={"content-type": "application/json"})
    _is_problem(r, 413)
    assert time.perf_counter() - started < 10


# -- repeated denials ----------------------------------------------------------------------------


def _actions(api: Api, since: int) -> list[tuple[str, str]]:
    return [(e["action"], e["actor"]) for e in api.entries()[since:]]


def test_repeated_identical_denials_are_429_and_ledgered_as_one_count(api: Api) -> None:
    h = api.auth("analyst")
    start = len(api.entries())
    first = api.client.get("/api/principals", headers=h)
    _is_problem(first, 403)
    assert _actions(api, start) == [("policy.denied", "ana")]
    for _ in range(4):
        again = api.client.get("/api/principals", headers=h)
        _is_problem(again, 429)
        assert 1 <= int(again.headers["retry-after"]) <= 30
    assert len(api.entries()) == start + 1  # the repeats were not ledgered one by one
    other = api.client.get("/api/principals?x=1", headers=h)  # not identical: decided
    _is_problem(other, 403)
    assert len(api.entries()) == start + 2

    api.clock.now += 31  # the first window closes; the next request ledgers its count
    assert api.client.get("/api/budgets", headers=h).status_code == 200
    repeated = [e for e in api.entries()[start:] if e["action"] == "policy.denied.repeated"]
    assert len(repeated) == 1
    details = repeated[0]["details"]
    assert repeated[0]["actor"] == "ana" and details["count"] == 4
    assert details["route"] == "GET /api/principals" and details["window_seconds"] == 30
    assert details["error"] == "PolicyDenied"
    after = len(api.entries())
    _is_problem(api.client.get("/api/principals", headers=h), 403)  # decided afresh
    assert _actions(api, after) == [("policy.denied", "ana")]
    with Vault.open(api.home) as admin:  # the log still verifies
        from vault.service import VerifyReport

        assert admin.verify(VerifyReport(mode="full")).size == len(api.entries()) - 1


def test_other_principals_and_allowed_requests_are_never_limited(api: Api) -> None:
    h = api.auth("analyst")
    _is_problem(api.client.get("/api/principals", headers=h), 403)
    assert api.client.get("/api/principals", headers=api.auth("admin")).status_code == 200
    for _ in range(3):
        assert api.client.get("/api/budgets", headers=h).status_code == 200


def test_counts_still_open_are_ledgered_when_the_server_stops(tmp_path: Path,
                                                              api: Api) -> None:
    engine = make_engine(api.home.db_url)
    start = len(api.entries())
    with TestClient(create_app(api.home, engine)) as client:
        for code in (403, 429, 429):
            assert client.get("/api/principals", headers=api.auth("analyst")).status_code \
                == code
        assert len(api.entries()) == start + 1
    engine.dispose()
    tail = api.entries()[start:]
    assert [e["action"] for e in tail] == ["policy.denied", "policy.denied.repeated"]
    assert tail[1]["details"]["count"] == 2


# -- public material -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/ledger/checkpoint", "/api/ledger/pubkey",
                                  "/api/ledger/pubkey?all=true", "/api/ledger/witnesses",
                                  "/log/checkpoint"])
def test_public_material_needs_no_token_and_adds_no_entry(api: Api, path: str) -> None:
    assert api.client.get("/api/ledger/checkpoint").status_code == 200  # publish once
    before = api.entries()
    for headers in ({}, {"Authorization": "Bearer cvt_" + "B" * 43}, api.auth("analyst")):
        r = api.client.get(path, headers=headers)
        assert r.status_code == 200, r.text
    assert api.entries() == before


# -- /docs and /redoc offline --------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_every_asset_from_our_server(api: Api, page: str) -> None:
    html = api.client.get(page)
    assert html.status_code == 200 and "<script>" not in html.text  # no inline script
    refs = re.findall(r'(?:src|href|spec-url|data-openapi)="([^"]+)"', html.text)
    assert refs and not re.search(r"https?:|//", html.text.replace("<!doctype html>", ""))
    fetched: list[str] = []
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
        r = api.client.get(ref)
        assert r.status_code == 200 and len(r.content) > 100, ref
        fetched.append(ref)
        if ref.endswith("swagger-init.js"):
            assert "http" not in r.text and "validatorUrl: null" in r.text
    assert "/openapi.json" in fetched
    assert api.client.get("/docs-assets/core.py").status_code == 404


# -- TLS -----------------------------------------------------------------------------------------


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.mark.parametrize("args", [
    ["--tls-cert", "missing-cert.pem", "--tls-key", "missing-key.pem"],
    ["--tls-cert", "{cert}"],
    ["--tls-cert", "{key}", "--tls-key", "{key}"],
    ["--tls-cert", "{cert}", "--tls-key", "{cert}"],
])
def test_serve_refuses_bad_tls_files_in_one_line(api: Api, tmp_path: Path,
                                                 args: list[str]) -> None:
    cert, key = _self_signed(tmp_path)
    argv = [a.format(cert=cert, key=key) for a in args]
    code, err = _quiet_main("serve", "--port", "8", *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "-----BEGIN" not in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_speaks_https_with_the_given_certificate(api: Api, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port = _free_port()
    env = {**os.environ, "CIVICVAULT_HOME": str(api.home.root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--port", str(port),
         "--tls-cert", str(cert), "--tls-key", str(key)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"https://127.0.0.1:{port}/api/ledger/checkpoint", verify=trust,
                              timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert r.status_code == 200 and r.text.startswith("civicvault.local/")
        with pytest.raises(httpx.TransportError):  # plain HTTP is not served on that port
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        with pytest.raises(httpx.ConnectError):  # an untrusted certificate is refused
            httpx.get(f"https://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_cached_checkpoint_follows_every_append(api: Api) -> None:
    """The checkpoint is cached by tree size, and the size is read on every request: an
    entry appended by anyone (here: another process's way in, the service) shows at once."""
    first = api.client.get("/api/ledger/checkpoint").text
    assert api.client.get("/api/ledger/checkpoint").text == first  # cached: same note
    with Vault.open(api.home) as admin:
        admin.annotate([("review.note", "ledger", None)])
    size = len(api.entries())
    note = api.client.get("/api/ledger/checkpoint").text
    assert int(note.splitlines()[1]) == size and note != first
    assert api.client.get("/log/checkpoint").text == note


def test_an_unexpected_error_is_a_500_problem_without_its_text(api: Api) -> None:
    app = api.client.app

    @app.get("/boom-for-test")  # type: ignore[attr-defined, untyped-decorator]
    def boom() -> None:
        raise RuntimeError(SECRET)

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/boom-for-test")
    _is_problem(r, 500)
    assert SECRET.lower() not in r.text.lower() and "Traceback" not in r.text


def test_a_revoked_token_repeating_itself_is_counted_not_ledgered_each_time(api: Api) -> None:
    with Vault.open(api.home) as admin:
        gone = admin.principals_add("gone", "analyst")
        admin.principals_revoke("gone")
    h = {"Authorization": f"Bearer {gone}"}
    start = len(api.entries())
    first = api.client.get("/api/budgets", headers=h)
    _is_problem(first, 401)
    assert 'error="invalid_token"' in first.headers["www-authenticate"]
    assert _actions(api, start) == [("auth.denied", "gone")]
    for _ in range(3):
        _is_problem(api.client.get("/api/budgets", headers=h), 429)
    assert len(api.entries()) == start + 1
    unknown = {"Authorization": "Bearer cvt_" + "C" * 43}
    for _ in range(3):  # an unknown token writes nothing and is never limited
        _is_problem(api.client.get("/api/budgets", headers=unknown), 401)
    api.clock.now += 31
    assert api.client.get("/api/budgets", headers=api.auth("analyst")).status_code == 200
    tail = [e for e in api.entries()[start:] if e["action"] == "policy.denied.repeated"]
    assert [(e["actor"], e["details"]["count"], e["details"]["error"]) for e in tail] == [
        ("gone", 3, "Unauthenticated")]


def test_the_tree_size_reader_agrees_with_the_store(engine: Any) -> None:
    """The checkpoint's cheap size query (one DB-API cursor) on SQLite and PostgreSQL."""
    from flows.api.tiles import tree_size_reader
    from ledger.entry import EntryDraft

    size = tree_size_reader(engine)
    assert size() == 0
    for n in (1, 3):
        with engine.begin() as conn:
            ledger_store.append(conn, [EntryDraft(actor="t", action="bench.note",
                                                  resource=f"r/{i}") for i in range(n)])
        with engine.connect() as conn:
            assert size() == ledger_store.size(conn)
    assert size() == 4


def test_the_denial_limiter_counts_bounds_and_keeps_what_it_could_not_ledger() -> None:
    from vault.access import Principal

    clock = Clock()
    limiter = DenialLimiter(10, clock=clock, max_windows=2)
    ana = Principal("ana", "analyst")
    keys = [limiter.fingerprint("cvt_x", "GET", "GET /api/x", f"q={i}".encode(), b"")
            for i in range(3)]
    assert len(set(keys)) == 3 and limiter.retry_after(keys[0]) is None
    limiter.denied(keys[0], ana, "GET /api/x", "PolicyDenied")
    clock.now += 4
    assert limiter.retry_after(keys[0]) == 6 and limiter.retry_after(keys[0]) == 6
    limiter.denied(keys[1], ana, "GET /api/x", "PolicyDenied")
    limiter.denied(keys[2], ana, "GET /api/x", "PolicyDenied")  # over the bound: 0 closes
    assert limiter.retry_after(keys[0]) is None
    [closed] = limiter.due()
    assert closed.count == 2 and limiter.due() == []
    limiter.keep([closed])  # e.g. the database was busy: offered again
    assert limiter.due() == [closed]
    assert limiter.retry_after(keys[1]) is not None
    clock.now += 10
    assert [w.count for w in limiter.due()] == [1]  # keys[1]'s window closed with 1 repeat
    assert limiter.due(everything=True) == []  # keys[2]: no repeat, nothing to ledger


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium not installed")
def test_docs_render_in_chromium_with_every_other_host_unreachable(api: Api) -> None:
    """Swagger UI and ReDoc draw the operations in a real browser that can reach nothing
    but our server (every other host name resolves to nothing)."""
    port = _free_port()
    env = {**os.environ, "CIVICVAULT_HOME": str(api.home.root)}
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        for page, drawn in (("/docs", 'data-path="/api/ledger/checkpoint"'),
                            ("/redoc", "/api/ledger/proof/inclusion")):
            # a loaded machine may need more (virtual) time to run ReDoc's 1 MB script
            for budget in (8_000, 30_000, 90_000):
                dom = subprocess.run(
                    ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                     "--disable-background-networking", "--no-first-run",
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                     f"--virtual-time-budget={budget}", "--dump-dom",
                     f"http://127.0.0.1:{port}{page}"],
                    capture_output=True, text=True, timeout=180).stdout
                if drawn in dom:
                    break
            assert drawn in dom, page
    finally:
        proc.terminate()
        proc.wait(timeout=30)
