"""Verify the ledger and the vault's state together, on the machine's cores.

``civicvault ledger verify`` runs three things that share nothing but the database:
the entries' chain and tree (``ledger.db_verify``, itself on two processes for large
logs), the stored tree nodes (``ledger.db_verify.verify_nodes``) and the tables held
against the state the entries vouch for (``vault.state_verify``). The last is mostly
SQLite/PostgreSQL work; it runs in a forked process while this one verifies the
ledger. A ledger failure is reported first (the state check trusts the entries);
otherwise the state's first difference.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any

from sqlalchemy import Engine

from ledger.db_verify import verify_nodes, verify_stored
from ledger.verify import LogVerdict
from vault.errors import StateMismatch, VaultMismatch
from vault.state_verify import StateReport, verify_database

__all__ = ["Verified", "verify_everything"]


@dataclass(frozen=True)
class Verified:
    ledger: LogVerdict
    state: StateReport
    entries_folded: int
    nodes_checked: int


def _state_child(engine: Engine, policy_bytes: bytes | None, full: bool, out: Pipe) -> None:
    engine.dispose(close=False)  # never share the parent's pooled connections
    try:
        report, n = verify_database(engine, policy_bytes=policy_bytes, full=full)
        out.send(("ok", report, n))
    except StateMismatch as exc:
        out.send(("state", exc.table, exc.row, exc.detail, exc.seq))
    except VaultMismatch as exc:
        out.send(("vault", str(exc), exc.batch))
    except BaseException as exc:  # report, never print: the parent decides
        out.send(("error", type(exc).__name__))
    finally:
        out.close()


def _raise_or_return(result: tuple[Any, ...]) -> tuple[StateReport, int]:
    kind = result[0]
    if kind == "ok":
        return result[1], int(result[2])
    if kind == "state":
        raise StateMismatch(result[1], result[2], result[3], seq=result[4])
    if kind == "vault":
        raise VaultMismatch(result[1], batch=result[2])
    raise RuntimeError(f"state verification worker failed ({result[1]})")


def verify_everything(
    engine: Engine, *, policy_bytes: bytes | None, full: bool = True,
    prefix_sizes: Collection[int] = (), after_ledger: Callable[[LogVerdict], None] | None = None,
    parallel: bool = True,
) -> Verified:
    """Ledger (chain, leaf hashes, root; with ``full`` every stored node) and state.

    ``after_ledger`` runs on the ledger's verdict before the state result is looked
    at (e.g. holding it against a signed checkpoint).
    """
    can_fork = ("fork" in multiprocessing.get_all_start_methods()
                and threading.active_count() == 1)
    if not (parallel and can_fork):
        verdict = verify_stored(engine, prefix_sizes=prefix_sizes, parallel=parallel)
        nodes = verify_nodes(engine, verdict.size) if full else 0
        if after_ledger is not None:
            after_ledger(verdict)
        report, n = verify_database(engine, policy_bytes=policy_bytes, full=full)
        return Verified(verdict, report, n, nodes)
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_state_child, args=(engine, policy_bytes, full, sender),
                        daemon=True)
    child.start()
    sender.close()
    try:
        verdict = verify_stored(engine, prefix_sizes=prefix_sizes)
        nodes = verify_nodes(engine, verdict.size) if full else 0
        if after_ledger is not None:
            after_ledger(verdict)
        try:
            result = receiver.recv()
        except EOFError:
            result = ("error", "no result")
    finally:
        receiver.close()
        child.join(timeout=1)
        if child.is_alive():
            child.kill()
            child.join()
    report, n = _raise_or_return(result)
    return Verified(verdict, report, n, nodes)
