"""HTTP API and dashboard: a thin shell over the vault service, like the CLI.

Bearer tokens are principal tokens; every request is authenticated and calls one
method of ``vault.service.Vault`` (which authorises, works and ledgers: the same
path as the CLI, so both agree on every decision). OpenAPI at ``/openapi.json``.
Errors map like the CLI's exit codes: bad input 400, unauthenticated 401,
denied or over budget 403; their bodies carry ids only. The checkpoint, the
verifier key and the tiles are public: no token, no ledger entry. (FastAPI reads
the annotations at run time, so this module does not postpone them.)

Adding an endpoint for an existing operation touches this file only: one route
that parses, calls the ``Vault`` method and returns its JSON.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, BeforeValidator, Field
from sqlalchemy import Engine

from flows import api_tiles as tiles
from ledger.errors import AccessDenied, BadInput, CivicVaultError
from policies.errors import Unauthenticated
from policies.validate import int_arg, number_value
from vault.errors import StorageFault
from vault.home import VaultHome
from vault.service import Vault

_bearer = HTTPBearer(auto_error=False)
_MAX_SIZE = 2**63 - 1


def _delta(value: object) -> float | None:
    """JSON number or decimal text, through the one strict number parser (BadInput -> 400)."""
    return None if value is None else float(number_value(value, what="delta", above=0,
                                                         maximum=1))


Index = Annotated[int, BeforeValidator(int_arg("index", minimum=0, maximum=_MAX_SIZE)),
                  Query(ge=0)]
Size = Annotated[int, BeforeValidator(int_arg("size", minimum=1, maximum=_MAX_SIZE)),
                 Query(ge=1)]


class ReleaseBody(BaseModel):
    dataset: str
    by: list[str] = Field(min_length=1)
    measures: list[str] = Field(default_factory=lambda: ["count"])
    epsilon: str = Field(description="Decimal text, e.g. '0.1' (kept exact).")
    delta: Annotated[float | None, BeforeValidator(_delta)] = None
    preview: bool = False
    purpose: str | None = None


class SegmentBody(BaseModel):
    dataset: str
    features: list[str] = Field(min_length=1)
    k: int = Field(ge=1, le=1_000)
    epsilon: str = Field(description="Decimal text, e.g. '0.1' (kept exact).")
    iterations: int = Field(default=5, ge=1, le=1_000)
    purpose: str | None = None


class LinkBuildBody(BaseModel):
    purpose: str | None = None


class LinkReportBody(BaseModel):
    epsilon: str = Field(description="Decimal text, e.g. '0.2', charged on both datasets.")
    by: str | None = Field(default=None, description="A public segment column (policy keys).")
    purpose: str | None = None


class SourceBody(BaseModel):
    path: str = Field(description="A file on the server's file system (as the watch folder).")
    dataset: str | None = None


class BudgetBody(BaseModel):
    analyst: str
    dataset: str
    epsilon: str
    delta: str | None = None


class MatchBody(BaseModel):
    dataset: str
    match: dict[str, str] = Field(min_length=1)
    purpose: str | None = None


class PrincipalBody(BaseModel):
    name: str
    role: str


class NoteBody(BaseModel):
    action: str
    resource: str
    purpose: str | None = None


class NotesBody(BaseModel):
    notes: list[NoteBody] = Field(min_length=1)


def create_app(home: VaultHome, engine: Engine) -> FastAPI:
    app = FastAPI(title="civicvault", version="0.1.0",
                  description="Privacy-first civic data vault: DP releases and a verifiable "
                              "audit ledger. Authenticate with 'Authorization: Bearer <token>'.")
    public = Vault(home, engine, None)  # public material only; requests act as a principal
    from flows import web  # the workbench: pages, headers, /api/web (before "/" below)

    web.install(app, public)

    def vault_of(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Vault:
        if creds is None or creds.scheme.lower() != "bearer":
            raise Unauthenticated("missing bearer token")
        return public.acting_as(creds.credentials)

    As = Annotated[Vault, Depends(vault_of)]

    @app.exception_handler(CivicVaultError)
    async def _errors(_: Request, exc: CivicVaultError) -> JSONResponse:
        status = 401 if isinstance(exc, Unauthenticated) else 403 if isinstance(
            exc, AccessDenied) else 400 if isinstance(exc, BadInput) else 503 if isinstance(
            exc, StorageFault) else 409
        line = exc.diagnostics().splitlines()[0] if str(exc) else type(exc).__name__
        return JSONResponse({"error": type(exc).__name__, "detail": line}, status_code=status)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # -- public, read-only transparency material: no token, no ledger entry -----------------

    @app.get("/api/ledger/pubkey", response_class=PlainTextResponse)
    def pubkey(all: bool = False) -> str:
        """The log's verifier key (C2SP vkey); with ``all``, the retired ones too."""
        return "".join(k + "\n" for k in public.pubkey(include_retired=all))

    @app.get("/api/ledger/checkpoint", response_class=PlainTextResponse)
    def checkpoint() -> Response:
        """The newest checkpoint (signed only if it extends the last saved one, with witness
        cosignatures, saved): the same store and rules as ``civicvault ledger checkpoint``."""
        return Response(public_checkpoint(), media_type="text/plain; charset=utf-8",
                        headers={"Cache-Control": "no-cache, max-age=2"})

    public_checkpoint = tiles.public_checkpoint(public)
    tiles.mount(app, engine, public_checkpoint)

    @app.get("/api/ledger/witnesses")
    def witnesses() -> dict[str, Any]:
        """The configured witnesses and quorum (public configuration)."""
        return public.witnesses().to_json()

    # -- the ledger ---------------------------------------------------------------------------

    @app.get("/api/ledger/proof/inclusion")
    def prove(vault: As, index: Index, size: Size | None = None) -> dict[str, Any]:
        return vault.prove(index, size)

    @app.get("/api/ledger/proof/consistency")
    def consistency(vault: As, old: Size, new: Size | None = None) -> dict[str, Any]:
        return vault.consistency(old, new)

    @app.get("/api/ledger/export")
    def export(vault: As) -> StreamingResponse:
        """Every entry as JSONL: line i is entry i's canonical JSON (its leaf bytes)."""
        chunks = vault.export()
        first = next(chunks, None)  # the decision (a denial is a 403 before any byte)

        def lines() -> Iterator[bytes]:
            chunk = first
            while chunk is not None:
                yield b"\n".join(chunk) + b"\n"
                chunk = next(chunks, None)

        return StreamingResponse(lines(), media_type="application/jsonl")

    @app.post("/api/ledger/annotations")
    def annotate(vault: As, body: NoteBody | NotesBody) -> dict[str, Any]:
        if isinstance(body, NotesBody):
            seqs = vault.annotate([(n.action, n.resource, n.purpose) for n in body.notes],
                                  many=True)
        else:
            seqs = vault.annotate([(body.action, body.resource, body.purpose)])
        return {"count": len(seqs), "first_seq": seqs[0], "last_seq": seqs[-1]}

    @app.post("/api/ledger/verify")
    def verify(vault: As, fast: bool = False) -> dict[str, Any]:
        from vault.service import VerifyReport

        found = vault.verify(VerifyReport(mode="fast" if fast else "full"))
        state = found.state
        return {**found.to_json(), "verified": True,
                "vault": {"batches": state.batches, "records": state.records},
                "state": {**state.to_json(), "entries_folded": found.entries_folded,
                          "tree_nodes_checked": found.nodes_checked}}

    @app.get("/api/audit")
    def audit(vault: As, since: str | None = None) -> dict[str, Any]:
        done = vault.audit(since=since)
        return {"verdict": done.verdict.to_json(), "summary": done.summary.to_json(),
                "checkpoint": done.checkpoint}

    # -- budgets and releases -----------------------------------------------------------------

    @app.get("/api/budgets")
    def budgets(vault: As, analyst: str | None = None) -> Any:
        """Budgets: an analyst sees its own; roles allowed to see all see every analyst's
        (the same method, decision and ledger entry as ``civicvault budget show``)."""
        return {"budgets": [b.to_json() for b in vault.budget_show(analyst)]}

    @app.put("/api/budgets")
    def budget_set(vault: As, body: BudgetBody) -> Any:
        from vault.budget import parse_delta, parse_epsilon

        b = vault.budget_set(body.analyst, body.dataset, parse_epsilon(body.epsilon),
                             delta=parse_delta(body.delta) if body.delta is not None else None)
        return {"budgets": [b.to_json()]}

    @app.post("/api/releases")
    def release(vault: As, body: ReleaseBody) -> Any:
        from vault.budget import parse_epsilon
        from vault.dp.request import ReleaseRequest

        eps = parse_epsilon(body.epsilon)
        req = ReleaseRequest.build(body.dataset, body.by, body.measures, eps, delta=body.delta)
        if body.preview:
            return vault.preview(req).to_json()
        result = vault.release(req, purpose=body.purpose)
        doc = result.to_json()
        if result.ledger_seq is not None:
            doc["receipt"] = vault.receipts([result.ledger_seq])[0][0]
        return doc

    @app.post("/api/segments")
    def segment(vault: As, body: SegmentBody) -> Any:
        from vault.budget import parse_epsilon
        from vault.dp import SegmentRequest

        req = SegmentRequest(body.dataset, tuple(body.features), body.k,
                             parse_epsilon(body.epsilon), iterations=body.iterations)
        result = vault.segment(req, purpose=body.purpose)
        doc = result.to_json()
        if result.ledger_seq is not None:
            doc["receipt"] = vault.receipts([result.ledger_seq])[0][0]
        return doc

    @app.post("/api/links/{name}/build")
    def link_build(vault: As, name: str, body: LinkBuildBody) -> Any:
        """Build or refresh a link between two datasets (idempotent; counts, no list)."""
        return vault.link_build(name, purpose=body.purpose).to_json()

    @app.post("/api/links/{name}/report")
    def link_report(vault: As, name: str, body: LinkReportBody) -> Any:
        """DP counts of a link's matched, unmatched and ambiguous records (costs budget)."""
        from vault.budget import parse_epsilon

        result = vault.link_report(name, body.by, parse_epsilon(body.epsilon),
                                   purpose=body.purpose)
        doc = result.to_json()
        if result.ledger_seq is not None:
            doc["receipt"] = vault.receipts([result.ledger_seq])[0][0]
        return doc

    # -- data in and out of the vault ---------------------------------------------------------

    @app.post("/api/ingest")
    def ingest(vault: As, body: SourceBody) -> Any:
        """Ingest a file already on the server (as the watch folder does)."""
        if not body.dataset:
            raise BadInput("dataset is required")
        return vault.ingest(Path(body.path), body.dataset)

    @app.post("/api/classify")
    def classify(vault: As, body: SourceBody) -> Any:
        done = vault.classify(Path(body.path))
        return {"rows": done.rows, "columns": [c.as_json() for c in done.classes]}

    @app.post("/api/erasures")
    def erase(vault: As, body: MatchBody) -> Any:
        report, seq = vault.erase(body.dataset, body.match, purpose=body.purpose)
        receipt = vault.receipts([seq])[0][0] if seq is not None else None
        return {**report.__dict__, "ledger_seq": seq, "receipt": receipt}

    @app.post("/api/reveals")
    def reveal(vault: As, body: MatchBody) -> Any:
        if not body.purpose:
            raise BadInput("a reveal needs a purpose")
        done = vault.reveal(body.dataset, body.match, body.purpose)
        return {"dataset": done.dataset, "purpose": done.purpose,
                "subjects": [{"subject": sid, "records": recs} for sid, recs in done.subjects],
                "ledger_seq": done.ledger_seq,
                "receipt": vault.receipts([done.ledger_seq])[0][0]}

    # -- administration -------------------------------------------------------------------------

    @app.post("/api/keys/rotate")
    def keys_rotate(vault: As, reencrypt: bool = True) -> Any:
        done = vault.keys_rotate(reencrypt=reencrypt)
        return {"batches_resealed": 0, "subject_keys_rewrapped": 0, "keys_destroyed": 0,
                **done}

    @app.post("/api/principals")
    def principals_add(vault: As, body: PrincipalBody) -> Any:
        return {"name": body.name, "role": body.role,
                "token": vault.principals_add(body.name, body.role)}

    @app.get("/api/principals")
    def principals_list(vault: As) -> Any:
        return {"principals": [p.to_json() for p in vault.principals_list()]}

    @app.post("/api/principals/{name}/revoke")
    def principals_revoke(vault: As, name: str) -> Any:
        return vault.principals_revoke(name).to_json()

    @app.get("/api/policy")
    def policy_show(vault: As) -> Any:
        return vault.policy_show().summary()

    @app.put("/api/policy")
    def policy_apply(vault: As, text: Annotated[str, Body(media_type="text/plain")]) -> Any:
        policy, previous = vault.policy_apply(text.encode("utf-8"), "policy (HTTP)")
        return {"applied": True, "sha256": policy.sha256, "previous": previous}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> str:
        return (Path(__file__).with_name("templates") / "dashboard.html").read_text("utf-8")

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": "http", "detail": exc.detail}, status_code=exc.status_code)

    return app
