"""The HTTP API app: a thin shell over the vault service, like the CLI.

Bearer tokens are principal tokens; every request is authenticated and calls one
method of ``vault.service.Vault`` (which authorises, works and ledgers: the same
path as the CLI, so both agree on every decision). OpenAPI at ``/openapi.json``,
Swagger UI at ``/docs`` and ReDoc at ``/redoc`` (offline: ``flows.api.docs``).
Errors are RFC 9457 problem details mapped from the one error tree
(``flows.api.problems``): bad input 400, unauthenticated 401 (``WWW-Authenticate:
Bearer``), denied or over budget 403, a repeat of a request just denied 429
(``flows.api.limits``), body over the cap 413 (refused before authentication and
parsing). The checkpoint, the verifier key and the tiles are public: no token, no
ledger entry. (FastAPI reads the annotations at run time, so this module does not
postpone them.)

Adding an endpoint for an existing operation touches this file only: one route
that parses, calls the ``Vault`` method and returns its JSON (its body model, if
new, in ``flows/api/bodies.py``).
"""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from flows.api import docs, problems, tiles
from flows.api.bodies import (
    BudgetBody,
    Index,
    LinkBuildBody,
    LinkReportBody,
    MatchBody,
    NoteBody,
    NotesBody,
    PrincipalBody,
    ReleaseBody,
    SegmentBody,
    Size,
    SourceBody,
)
from flows.api.limits import MAX_BODY_BYTES, BodyLimit, DenialLimiter
from ledger.errors import (
    AccessDenied,
    BadInput,
    CivicVaultError,
    RepeatedDenial,
    Unauthenticated,
)
from vault.access import Principal
from vault.home import VaultHome
from vault.service import Vault

_bearer = HTTPBearer(auto_error=False)
_DENIAL = "civicvault.denial"  # scope key: (fingerprint, principal, route) of this request


def _with_receipt(vault: Vault, result: Any) -> dict[str, Any]:
    """A charged result's JSON with the tlog-proof receipt of its ledger entry."""
    doc: dict[str, Any] = result.to_json()
    if result.ledger_seq is not None:
        doc["receipt"] = vault.receipts([result.ledger_seq])[0][0]
    return doc


def create_app(home: VaultHome, engine: Engine, *, max_body_bytes: int = MAX_BODY_BYTES,
               denials: DenialLimiter | None = None) -> FastAPI:
    """The API over the vault at ``home``/``engine``. ``max_body_bytes``: the body cap;
    ``denials``: the repeated-denial limiter (a fresh 30 s one by default)."""
    public = Vault(home, engine, None)  # public material only; requests act as a principal
    limiter = denials if denials is not None else DenialLimiter()

    def ledger_repeats(*, everything: bool = False) -> None:
        """Ledger the counts of closed windows; one that cannot be written now (storage
        busy, full) is kept for the next time, and the request that flushes goes on."""
        due = limiter.due(everything=everything)
        for i, w in enumerate(due):
            try:
                public.as_principal(w.principal).denials_repeated(
                    w.count, route=w.route, request=w.request, error=w.error,
                    window_seconds=limiter.window_seconds)
            except CivicVaultError:
                limiter.keep(due[i:])
                return

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        ledger_repeats(everything=True)  # the server stops: no count is lost

    app = FastAPI(title="civicvault", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Privacy-first civic data vault: DP releases and a verifiable "
                              "audit ledger. Authenticate with 'Authorization: Bearer <token>'. "
                              "Errors are RFC 9457 problem details.")
    app.state.denials = limiter

    from flows import web  # the workbench: pages, headers, /api/web (before "/" below)

    web.install(app, public)

    def vault_of(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Vault:
        if creds is None or creds.scheme.lower() != "bearer":
            raise Unauthenticated("missing bearer token")
        route = request.scope.get("route")
        where = f"{request.method} {route.path if isinstance(route, APIRoute) else '?'}"
        # the request as the limiter knows it: the token (one principal's) and every byte
        key = limiter.fingerprint(creds.credentials, request.method, where,
                                  request.scope.get("query_string", b""),
                                  request.scope.get(problems.BODY_KEY, b""))
        wait = limiter.retry_after(key)
        if wait is not None:
            raise RepeatedDenial(wait)
        try:
            vault = public.acting_as(creds.credentials)
        except Unauthenticated as exc:  # a revoked principal's refusal is ledgered: limit it
            if exc.revoked is not None:
                limiter.denied(key, Principal(*exc.revoked), where, type(exc).__name__)
            raise
        ledger_repeats()
        request.scope[_DENIAL] = (key, vault.principal, where)
        return vault

    As = Annotated[Vault, Depends(vault_of)]

    problems.install(app)

    @app.exception_handler(AccessDenied)
    async def _denied(request: Request, exc: Exception) -> Response:
        mark: tuple[str, Principal, str] | None = request.scope.get(_DENIAL)
        if (mark is not None and not isinstance(exc, (Unauthenticated, RepeatedDenial))):
            limiter.denied(mark[0], mark[1], mark[2], type(exc).__name__)
        return await problems.on_error(request, exc)

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
    docs.mount(app)

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

    @app.get("/api/ledger/export", response_class=StreamingResponse,
             responses={200: {"content": {"application/jsonl": {"schema": {"type": "string"}}}}})
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
        return _with_receipt(vault, result)

    @app.post("/api/segments")
    def segment(vault: As, body: SegmentBody) -> Any:
        from vault.budget import parse_epsilon
        from vault.dp import SegmentRequest

        req = SegmentRequest(body.dataset, tuple(body.features), body.k,
                             parse_epsilon(body.epsilon), iterations=body.iterations)
        result = vault.segment(req, purpose=body.purpose)
        return _with_receipt(vault, result)

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
        return _with_receipt(vault, result)

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

    problems.declare_responses(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)  # before auth, parsing
    app.add_middleware(web.SecurityHeaders)  # outermost: every answer, a 413 too, gets them
    return app
