"""The workbench's JSON endpoints (``/api/web/...``): each parses, calls one ``Vault``
method (which authorises and ledgers) and renders JSON, charts as SVG text inside it.

Released results stay in this process for their analyst's downloads (the last
``_KEPT`` per principal): noisy, released values only, the document whose hash the
release's ledger entry holds. A download is ledgered as that release's export (the
exact bytes sent), like ``civicvault release --out``. (FastAPI reads the annotations at
run time, so this module does not postpone them.)
"""

import csv
import io
import json
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from fastapi.responses import Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from flows.web import charts
from ledger.errors import BadInput
from policies.errors import Unauthenticated
from vault.ledger_view import EntryFilter
from vault.service import Vault

_bearer = HTTPBearer(auto_error=False)
_KEPT = 20
_FORMATS = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet",
            "json": "application/json"}


class ComposeBody(BaseModel):
    dataset: str = Field(max_length=200)
    by: list[str] = Field(min_length=1, max_length=8)
    measures: list[str] = Field(default_factory=lambda: ["count"], min_length=1,
                                max_length=8)
    epsilon: str = Field(max_length=40, description="Decimal text, e.g. '0.1' (kept exact).")
    purpose: str | None = Field(default=None, max_length=200)


class SegmentBody(BaseModel):
    dataset: str = Field(max_length=200)
    features: list[str] = Field(min_length=1, max_length=16)
    k: int = Field(ge=1, le=50)
    epsilon: str = Field(max_length=40)
    iterations: int = Field(default=5, ge=1, le=100)
    purpose: str | None = Field(default=None, max_length=200)


class _Results:
    """The last released results per principal, for downloads (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by: dict[str, OrderedDict[int, Any]] = {}

    def keep(self, principal: str, seq: int, result: Any) -> None:
        with self._lock:
            kept = self._by.setdefault(principal, OrderedDict())
            kept[seq] = result
            while len(kept) > _KEPT:
                kept.popitem(last=False)

    def get(self, principal: str, seq: int) -> Any:
        with self._lock:
            found = self._by.get(principal, OrderedDict()).get(seq)
        if found is None:
            raise BadInput("no such release of yours in this server's memory (downloads "
                           "are offered for the last releases of this session)")
        return found


def _filter(principal: str | None, action: str | None, dataset: str | None,
            section: str | None, since: str | None, until: str | None) -> EntryFilter:
    return EntryFilter(principal=principal or None, action=action or None,
                       dataset=dataset or None, section=section or None,
                       since=since or None, until=until or None)


Text = Annotated[str | None, Query(max_length=200)]


def _cell(value: object) -> str:
    """Free text for a CSV cell a spreadsheet will not run as a formula (a leading ``'``
    before = + - @ tab CR; JSONL keeps the entry's exact bytes)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_bytes(doc: dict[str, Any]) -> bytes:
    """The rows, each measure followed by its +- at the stated confidence."""
    rows = doc.get("rows") or []
    by = list(doc.get("by") or [])
    labels = [k for k in (rows[0] if rows else {}) if k not in by]
    conf = doc.get("accuracy", {}).get("confidence")
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow([*by, *[x for lab in labels for x in (lab, f"{lab}_accuracy")], "confidence",
                "epsilon"])
    for r in rows:
        w.writerow([*(r.get(c) for c in by),
                    *[x for lab in labels for x in (r.get(lab), charts.error_of(doc, lab, r))],
                    conf, doc.get("epsilon")])
    return out.getvalue().encode("utf-8")


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad input (one line, no data values)."},
    401: {"description": "Missing or unknown bearer token."},
    403: {"description": "Denied by the policy, or over budget (ledgered)."},
    409: {"description": "The vault refused the operation in its current state."},
    503: {"description": "Storage fault (disk full, database locked, ...)."},
}


def build_router(public: Vault) -> APIRouter:
    router = APIRouter(prefix="/api/web", tags=["workbench"], responses=ERRORS)
    results = _Results()

    def vault_of(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Vault:
        if creds is None or creds.scheme.lower() != "bearer":
            raise Unauthenticated("missing bearer token")
        return public.acting_as(creds.credentials)

    As = Annotated[Vault, Depends(vault_of)]

    @router.get("/me")
    def me(vault: As) -> dict[str, Any]:
        """Who the token is and which operations its role is granted (nothing ledgered)."""
        return vault.whoami()

    @router.get("/catalog")
    def catalog(vault: As) -> dict[str, Any]:
        """Datasets with the group-by columns (public keys), measures and bounds allowed."""
        return {"datasets": vault.catalog()}

    @router.post("/preview")
    def preview(vault: As, body: ComposeBody) -> dict[str, Any]:
        """The accuracy of a release and its cost, before spending: free, no data read."""
        from vault.budget import format_epsilon, parse_epsilon
        from vault.dp.request import ReleaseRequest

        eps = parse_epsilon(body.epsilon)
        req = ReleaseRequest.build(body.dataset, body.by, body.measures, eps)
        return {"accuracy": vault.preview(req).to_json(),
                "cost": {"epsilon": format_epsilon(eps), "dataset": body.dataset}}

    @router.post("/releases")
    def release(vault: As, body: ComposeBody) -> dict[str, Any]:
        """Release (charged before any noise), with its chart and table."""
        from vault.budget import parse_epsilon
        from vault.dp.request import ReleaseRequest

        req = ReleaseRequest.build(body.dataset, body.by, body.measures,
                                   parse_epsilon(body.epsilon))
        result = vault.release(req, purpose=body.purpose)
        doc = result.to_json()
        if result.ledger_seq is not None:
            results.keep(vault.principal.id, result.ledger_seq, result)
        return {"result": doc, "chart_svg": charts.release_chart(doc),
                "table": charts.release_rows(doc), "seq": result.ledger_seq}

    @router.get("/releases/mine")
    def mine(vault: As) -> dict[str, Any]:
        """The caller's own releases (from the ledger), newest first."""
        return {"releases": vault.my_releases()}

    @router.get("/releases/{seq}/download", response_class=Response, responses={200: {
        "content": {m.split(";")[0]: {"schema": {"type": "string"}} for m in _FORMATS.values()}}})
    def download(vault: As, seq: Annotated[int, PathParam(ge=0, le=2**63 - 1)],
                 format: str = "csv") -> Response:
        """A released result as CSV (each value with its +-), Parquet (the accuracy in the
        file's key-value metadata) or JSON (the whole document); ledgered as an export."""
        from vault.dp.export import write_output

        if format not in _FORMATS:
            raise BadInput("format must be csv, parquet or json")
        result = results.get(vault.principal.id, seq)
        with tempfile.TemporaryDirectory(prefix="civicvault-dl-") as tmp:
            path = Path(tmp) / f"release-{seq}.{format}"
            if format == "csv":
                path.write_bytes(csv_bytes(result.to_json()))
            else:
                write_output(result, path)
            data = path.read_bytes()
            vault.record_export(result.dataset, seq, path)
        return Response(data, media_type=_FORMATS[format], headers={
            "Content-Disposition": f'attachment; filename="release-{seq}.{format}"'})

    @router.get("/budgets")
    def budgets(vault: As) -> dict[str, Any]:
        """Budgets the caller may see (its own for an analyst), with a chart."""
        found = [b.to_json() for b in vault.budget_show(None)]
        return {"budgets": found, "chart_svg": charts.budget_chart(found) if found else None}

    @router.post("/segments")
    def segment(vault: As, body: SegmentBody) -> dict[str, Any]:
        """DP k-means: centroids and segment sizes as charts."""
        from vault.budget import parse_epsilon
        from vault.dp import SegmentRequest

        req = SegmentRequest(body.dataset, tuple(body.features), body.k,
                             parse_epsilon(body.epsilon), iterations=body.iterations)
        result = vault.segment(req, purpose=body.purpose)
        doc = result.to_json()
        return {"result": doc, "charts": charts.segment_charts(doc)}

    # -- compliance ---------------------------------------------------------------------------

    @router.get("/ledger/health")
    def health(vault: As, refresh: bool = False) -> dict[str, Any]:
        """Size, latest signed checkpoint, and the verdict of a verification against it."""
        return vault.ledger_health(refresh=refresh)

    @router.get("/ledger/entries")
    def entries(vault: As, principal: Text = None, action: Text = None, dataset: Text = None,
                section: Text = None, since: Text = None, until: Text = None,
                before: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        """A page of entries, newest first; ``next_before`` is the next page's cursor."""
        flt = _filter(principal, action, dataset, section, since, until)
        return vault.ledger_page(flt, before=before, limit=limit)

    @router.get("/ledger/charts")
    def ledger_charts(vault: As, principal: Text = None, action: Text = None,
                      dataset: Text = None, section: Text = None, since: Text = None,
                      until: Text = None) -> dict[str, Any]:
        """Access timeline by principal and by action; budget spend over time."""
        flt = _filter(principal, action, dataset, section, since, until)
        found = vault.ledger_activity(flt)
        return {"timeline_action_svg": charts.timeline_chart(found["by_action"], "action"),
                "timeline_actor_svg": charts.timeline_chart(found["by_actor"], "actor"),
                "spend_svg": charts.spend_chart(found["spend"]), "spend": found["spend"]}

    @router.get("/ledger/export", response_class=StreamingResponse, responses={200: {
        "content": {"application/jsonl": {"schema": {"type": "string"}},
                    "text/csv": {"schema": {"type": "string"}}}}})
    def export(vault: As, format: str = "jsonl", principal: Text = None,
               action: Text = None, dataset: Text = None, section: Text = None,
               since: Text = None, until: Text = None) -> StreamingResponse:
        """The filtered entries (oldest first, at most 10,000) with their inclusion proofs
        against one tree size: JSONL ({"entry", "proof"}) or CSV (proof path joined)."""
        if format not in ("jsonl", "csv"):
            raise BadInput("format must be jsonl or csv")
        flt = _filter(principal, action, dataset, section, since, until)
        items = vault.ledger_export_filtered(flt)
        first = next(items, None)  # the decision: a denial is a 403 before any byte

        def jsonl() -> Iterator[bytes]:
            item = first
            while item is not None:
                raw, proof = item
                yield b'{"entry":' + raw + b',"proof":' + orjson.dumps(proof) + b"}\n"
                item = next(items, None)

        def csv_rows() -> Iterator[bytes]:
            cols = ["seq", "time", "actor", "action", "resource", "purpose", "data_hash",
                    "details", "tree_size", "leaf_hash", "root_hash", "inclusion_path"]
            yield (",".join(cols) + "\n").encode()
            item = first
            while item is not None:
                raw, proof = item
                e = orjson.loads(raw)
                out = io.StringIO()
                csv.writer(out, lineterminator="\n").writerow([
                    e.get("seq"), e.get("time"), _cell(e.get("actor")), e.get("action"),
                    _cell(e.get("resource")), _cell(e.get("purpose")),
                    e.get("data_hash") or "",
                    json.dumps(e.get("details"), sort_keys=True) if e.get("details") else "",
                    proof["tree_size"], proof["leaf_hash"], proof["root_hash"],
                    " ".join(proof["inclusion_path"])])
                yield out.getvalue().encode()
                item = next(items, None)

        media = "application/jsonl" if format == "jsonl" else "text/csv; charset=utf-8"
        return StreamingResponse(jsonl() if format == "jsonl" else csv_rows(),
                                 media_type=media, headers={
                                     "Content-Disposition":
                                         f'attachment; filename="ledger-entries.{format}"'})

    # -- steward / admin ----------------------------------------------------------------------

    @router.get("/policy")
    def policy(vault: As) -> dict[str, Any]:
        """The installed policy, its SHA-256 and the diff against the one it replaced."""
        return vault.policy_diff()

    return router
