"""HTTP for C2SP tlog-witness: a small server around ``ledger.witness.Witness``, and the
log-side client that collects cosignatures from a quorum of witnesses.

Server (standard library, HTTP/1.1 keep-alive, one thread per connection):
``POST <prefix>/add-checkpoint`` and ``GET <prefix>/<origin hash>/checkpoint``.

Client: ``collect_cosignatures`` submits a freshly signed checkpoint to every witness
in parallel with the old size it believes the witness holds; on ``409`` it retries
once from the size the witness answers (the spec's recovery), with a consistency
proof from the caller's ``proof_for``. Cosignature lines that do not verify under
the witness's configured keys are dropped; the result is the checkpoint carrying
the log signature(s) plus every verified cosignature.
"""

from __future__ import annotations

import base64
import http.client
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from ledger.cosignature import CosignatureVerifier, signature_lines, witnesses_of
from ledger.errors import BadInput, VerificationFailed
from ledger.witness import MAX_BODY, SIZE_TYPE, Answer, Witness

__all__ = ["CollectResult", "WitnessEndpoint", "WitnessServer", "collect_cosignatures",
           "submit"]


# -- server -----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(answer.body)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path.rstrip("/") != self.server.prefix + "/add-checkpoint":
            self._send(Answer(404, "text/plain", b"not found\n"))
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(Answer(411, "text/plain", b"Content-Length required\n"))
            self.close_connection = True
            return
        if not 0 <= length <= MAX_BODY:
            self._send(Answer(413, "text/plain", b"request body too large\n"))
            self.close_connection = True
            return
        body = self.rfile.read(length)
        self._send(self.server.witness.add_checkpoint(body))

    def do_GET(self) -> None:
        parts = urlsplit(self.path).path[len(self.server.prefix):].strip("/").split("/")
        if len(parts) == 2 and parts[1] == "checkpoint":
            self._send(self.server.witness.latest(parts[0]))
        else:
            self._send(Answer(404, "text/plain", b"not found\n"))

    def log_message(self, format: str, *args: Any) -> None:
        return  # no access log: the witness keeps its state, not who asked


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    witness: Witness
    prefix: str


class WitnessServer:
    """A witness on ``host:port`` (port 0: an ephemeral port); ``url`` once started."""

    def __init__(self, witness: Witness, host: str = "127.0.0.1", port: int = 0,
                 prefix: str = "") -> None:
        self._server = _Server((host, port), _Handler)
        self._server.witness = witness
        self._server.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self._server.prefix}"

    def start(self) -> WitnessServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="witness-http")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> WitnessServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- client ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness the log asks: its name, submission URL prefix and its cosigning keys."""

    name: str
    url: str
    keys: tuple[CosignatureVerifier, ...]


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes


def submit(url: str, body: bytes, timeout: float = 5.0) -> Reply:
    """POST ``body`` to ``<url>/add-checkpoint``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput("a witness URL must be http(s)://host[:port][/prefix]")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("POST", parts.path.rstrip("/") + "/add-checkpoint", body=body,
                     headers={"Content-Type": "text/plain; charset=utf-8"})
        resp = conn.getresponse()
        data = resp.read(MAX_BODY + 1)
        return Reply(resp.status, resp.getheader("Content-Type", ""), data)
    finally:
        conn.close()


def request_body(old: int, proof: Sequence[bytes], note: str) -> bytes:
    lines = [f"old {old}\n"] + [base64.b64encode(p).decode("ascii") + "\n" for p in proof]
    return ("".join(lines) + "\n" + note).encode("utf-8")


@dataclass
class CollectResult:
    note: str                                    # the checkpoint with the verified cosignatures
    witnesses: dict[str, int] = field(default_factory=dict)   # name -> cosignature timestamp
    failures: dict[str, str] = field(default_factory=dict)    # name -> why (status, no reply)


class _Retry(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


def _ask(endpoint: WitnessEndpoint, note: str, old: int, proof: list[bytes], size: int,
         timeout: float) -> str:
    """The verified cosignature lines of one witness; ``_Retry`` on 409; else raise why not."""
    try:
        reply = submit(endpoint.url, request_body(old, proof, note), timeout)
    except OSError as exc:
        raise VerificationFailed(f"unreachable ({type(exc).__name__})") from None
    if reply.status == 409 and reply.content_type.startswith(SIZE_TYPE):
        text = reply.body.decode("ascii", "replace").strip()
        if not text.isdigit():
            raise VerificationFailed("409 without a size")
        theirs = int(text)
        if theirs > size:
            raise VerificationFailed(f"the witness has cosigned size {theirs}, larger than "
                                     f"this log's {size} (rollback or split view)")
        if theirs == old:
            raise VerificationFailed("409 for the size it reports")
        raise _Retry(theirs)
    if reply.status != 200:
        raise VerificationFailed(f"HTTP {reply.status}")
    block = reply.body.decode("utf-8", "replace")
    lines = [f"\u2014 {name} {base64.b64encode(blob).decode('ascii')}\n"
             for name, blob in signature_lines(block) if name == endpoint.name]
    if not witnesses_of(note + "".join(lines), endpoint.keys):
        raise VerificationFailed("no cosignature verifies under the configured keys")
    return "".join(lines)


def collect_cosignatures(
    note: str, size: int, witnesses: Sequence[WitnessEndpoint], *, old_sizes: dict[str, int],
    proof_for: Callable[[int], list[bytes]], timeout: float = 5.0,
) -> CollectResult:
    """Ask every witness to cosign ``note`` (a checkpoint of ``size``), in parallel.

    ``proof_for(old)`` (the consistency proof from ``old`` to ``size``) is only called
    from this thread, so it may read a database connection.
    """
    result = CollectResult(note=note)
    if not witnesses:
        return result
    added: list[str] = []
    todo = [(w, old_sizes.get(w.name, 0)) for w in witnesses]

    def one(job: tuple[WitnessEndpoint, int, list[bytes]]) -> tuple[str, str | int | None, str]:
        endpoint, old, proof = job
        try:
            return endpoint.name, _ask(endpoint, note, old, proof, size, timeout), ""
        except _Retry as again:
            return endpoint.name, again.size, ""
        except (VerificationFailed, BadInput, UnicodeDecodeError) as exc:
            return endpoint.name, None, str(exc) or type(exc).__name__

    with ThreadPoolExecutor(max_workers=min(8, len(witnesses))) as pool:
        for attempt in range(2):
            jobs = [(w, old, proof_for(old)) for w, old in todo]
            todo = []
            by_name = {w.name: w for w, _, _ in jobs}
            for name, got, failure in pool.map(one, jobs):
                if isinstance(got, str):
                    added.append(got)
                elif isinstance(got, int) and attempt == 0:
                    todo.append((by_name[name], got))
                else:
                    result.failures[name] = failure or "409 twice"
            if not todo:
                break
    result.note = note + "".join(added)
    result.witnesses = witnesses_of(result.note, [k for w in witnesses for k in w.keys])
    return result
