"""A log in memory and witnesses on loopback, for the witness and receipt tests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ledger import merkle
from ledger.checkpoint import sign_checkpoint
from ledger.cosignature import Cosigner
from ledger.signer import Signer
from ledger.witness import Witness, WitnessState
from ledger.witness_http import WitnessEndpoint, WitnessServer, request_body, submit


@dataclass
class MemoryLog:
    """A log of byte entries with its own signer: enough to play an honest or forking log."""

    signer: Signer
    entries: list[bytes] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return self.signer.name

    def fork(self) -> MemoryLog:
        return MemoryLog(self.signer, list(self.entries))

    def add(self, *items: bytes) -> MemoryLog:
        self.entries.extend(items)
        return self

    def _nodes(self, size: int) -> merkle.NodeReader:
        nodes = merkle.perfect_nodes([merkle.leaf_hash(e) for e in self.entries[:size]])
        return lambda keys: {k: nodes[k] for k in keys if k in nodes}

    def root(self, size: int | None = None) -> bytes:
        n = len(self.entries) if size is None else size
        return merkle.tree_root(n, self._nodes(n))

    def proof(self, old: int, new: int | None = None) -> list[bytes]:
        n = len(self.entries) if new is None else new
        if old <= 0 or old >= n:
            return []
        return merkle.consistency_proof(old, n, self._nodes(n))

    def checkpoint(self, size: int | None = None) -> str:
        n = len(self.entries) if size is None else size
        return sign_checkpoint([self.signer], self.origin, n, self.root(n))


def submit_to(url: str, log: MemoryLog, old: int, size: int | None = None,
              proof: list[bytes] | None = None) -> tuple[int, str, bytes]:
    n = len(log.entries) if size is None else size
    body = request_body(old, log.proof(old, n) if proof is None else proof, log.checkpoint(n))
    reply = submit(url, body)
    return reply.status, reply.content_type, reply.body


@dataclass
class LoopbackWitness:
    name: str
    cosigner: Cosigner
    server: WitnessServer
    folder: Path

    @property
    def url(self) -> str:
        return self.server.url

    def endpoint(self) -> WitnessEndpoint:
        return WitnessEndpoint(self.name, self.url, (self.cosigner.verifier(),))


@contextmanager
def loopback_witnesses(tmp: Path, log_keys: dict[str, list[Signer]],
                       count: int = 2) -> Iterator[list[LoopbackWitness]]:
    """``count`` witnesses, each a real HTTP server on 127.0.0.1 (ephemeral port)."""
    with ExitStack() as stack:
        out = []
        for i in range(count):
            name = f"witness{i + 1}.test/{hashlib.sha256(str(tmp).encode()).hexdigest()[:6]}"
            cosigner = Cosigner.generate(name)
            folder = tmp / f"witness{i + 1}"
            witness = Witness([cosigner], {o: [s.verifier() for s in ks]
                                           for o, ks in log_keys.items()},
                              WitnessState(folder / "state"))
            server = stack.enter_context(WitnessServer(witness, "127.0.0.1", 0))
            out.append(LoopbackWitness(name, cosigner, server, folder))
        yield out
