"""Audit: is the ledger intact and does the vault still match it? Who did what, when, why?

``audit_vault`` verifies the whole stored ledger (chain, tree, stored nodes) and
cross-checks every stored batch against its ledger ``data_hash``; it never raises
for a failed verification, it reports it, so reports and flows can show the
verdict. ``summarize`` condenses entries (bytes) for compliance officers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Engine

from ledger import store as ledger_store
from ledger.db_verify import verify_stored
from ledger.errors import LedgerTampered, UnknownAction, VerificationFailed
from vault.crosscheck import verify_vault
from vault.vocab import ledger_action

if TYPE_CHECKING:
    from ledger.checkpoint import Checkpoint


@dataclass(frozen=True)
class AuditVerdict:
    ok: bool
    ledger_size: int
    root: str
    batches_checked: int
    records_checked: int
    problem: str | None = None
    failing_seq: int | None = None
    checkpoint_size: int | None = None  # the saved checkpoint the ledger was held against

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def audit_vault(engine: Engine, checkpoint: Checkpoint | None = None) -> AuditVerdict:
    """Verify the ledger (held against ``checkpoint``, the newest saved one, if given), then
    the vault against it; failures come back as the verdict."""
    from ledger.verify import verify_against_checkpoint

    held = checkpoint.size if checkpoint is not None else None
    try:
        verdict = verify_stored(engine, prefix_sizes={held} if held is not None else ())
        if checkpoint is not None:
            verify_against_checkpoint(verdict, checkpoint)
    except LedgerTampered as exc:
        with engine.connect() as conn:
            n = ledger_store.size(conn)
        return AuditVerdict(False, n, "", 0, 0, exc.diagnostics().splitlines()[0], exc.seq,
                            held)
    except VerificationFailed as exc:
        return AuditVerdict(False, 0, "", 0, 0, exc.diagnostics().splitlines()[0],
                            checkpoint_size=held)
    try:
        with engine.connect().execution_options(readonly=True) as conn, conn.begin():
            report = verify_vault(conn, ledger_store.iter_entries(conn, 0, verdict.size))
    except VerificationFailed as exc:
        return AuditVerdict(False, verdict.size, verdict.root.hex(), 0, 0,
                            exc.diagnostics().splitlines()[0], checkpoint_size=held)
    return AuditVerdict(True, verdict.size, verdict.root.hex(), report.batches, report.records,
                        checkpoint_size=held)


@dataclass
class AuditSummary:
    entries: int = 0
    first_time: str | None = None
    last_time: str | None = None
    by_action: Counter[str] = field(default_factory=Counter)
    by_actor: Counter[str] = field(default_factory=Counter)
    denials: list[dict[str, Any]] = field(default_factory=list)
    releases: list[dict[str, Any]] = field(default_factory=list)
    erasures: list[dict[str, Any]] = field(default_factory=list)
    key_events: list[dict[str, Any]] = field(default_factory=list)
    unknown_actions: Counter[str] = field(default_factory=Counter)
    recent: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"entries": self.entries, "first_time": self.first_time,
                "last_time": self.last_time, "by_action": dict(self.by_action),
                "by_actor": dict(self.by_actor), "denials": self.denials,
                "releases": self.releases, "erasures": self.erasures,
                "key_events": self.key_events, "unknown_actions": dict(self.unknown_actions)}


def summarize(entries: Iterable[bytes], *, since: str | None = None,
              recent: int = 200) -> AuditSummary:
    """Counts and notable events of the entries with ``time >= since`` (RFC 3339 prefix)."""
    out = AuditSummary()
    tail: list[dict[str, Any]] = []
    for raw in entries:
        e = orjson.loads(raw)
        if since is not None and str(e["time"]) < since:
            continue
        out.entries += 1
        out.first_time = out.first_time or e["time"]
        out.last_time = e["time"]
        action = str(e["action"])
        out.by_action[action] += 1
        out.by_actor[str(e["actor"])] += 1
        brief = {k: e.get(k) for k in ("seq", "time", "actor", "action", "resource", "purpose")}
        details = e.get("details") or {}
        try:  # the report section of each action is the vocabulary's (vault.vocab)
            section = ledger_action(action, has_details=bool(details) or "data_hash" in e).section
        except UnknownAction:  # shown, never skipped: verification fails on it too
            out.unknown_actions[action] += 1
            section = None
        if section == "denials":
            out.denials.append({**brief, "reason": details.get("reason"),
                                "op": details.get("op")})
        elif section == "releases":
            # one line per release (release.dp), export or failed release; its charge
            # entry (release.charge) is counted in by_action
            out.releases.append({**brief, "epsilon": details.get("epsilon"),
                                 "data_hash": e.get("data_hash")})
        elif section == "erasures":
            out.erasures.append({**brief, "subjects": len(details.get("subjects", []))})
        elif section == "key_events":
            out.key_events.append(brief)
        tail.append({**brief, "data_hash": e.get("data_hash")})
        if len(tail) > recent:
            del tail[0]
    out.recent = tail
    return out
