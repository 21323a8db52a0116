"""HTTP API and dashboard: a thin shell over the same vault operations as the CLI.

Bearer tokens are principal tokens; every request is authenticated and goes
through the same policy and ledger path as the CLI. OpenAPI at ``/openapi.json``.
Errors map like the CLI's exit codes: bad input 400, unauthenticated 401,
denied or over budget 403; their bodies carry ids only. (FastAPI reads the
annotations at run time, so this module does not postpone them.)
"""

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, BeforeValidator, Field
from sqlalchemy import Engine

from flows import api_tiles as tiles
from ledger import store as ledger_store
from ledger.errors import AccessDenied, BadInput, CivicVaultError
from policies.errors import Unauthenticated
from policies.validate import int_arg, number_value, parse_name
from vault import access as _access
from vault.errors import StorageFault
from vault.home import VaultHome

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


def create_app(home: VaultHome, engine: Engine) -> FastAPI:
    app = FastAPI(title="civicvault", version="0.1.0",
                  description="Privacy-first civic data vault: DP releases and a verifiable "
                              "audit ledger. Authenticate with 'Authorization: Bearer <token>'.")

    def principal(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> _access.Principal:
        if creds is None or creds.scheme.lower() != "bearer":
            raise Unauthenticated("missing bearer token")
        return _access.authenticate(engine, home, creds.credentials)

    Who = Annotated[_access.Principal, Depends(principal)]

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
        from vault.transparency import log_vkeys

        return "".join(k + "\n" for k in log_vkeys(home, include_retired=all))

    @app.get("/api/ledger/checkpoint", response_class=PlainTextResponse)
    def checkpoint() -> Response:
        """The newest checkpoint (signed, with witness cosignatures), refreshed when the
        tree has grown: the same store and rules as ``civicvault ledger checkpoint``."""
        return Response(public_checkpoint(), media_type="text/plain; charset=utf-8",
                        headers={"Cache-Control": "no-cache, max-age=2"})

    public_checkpoint = tiles.public_checkpoint(home, engine)
    tiles.mount(app, engine, public_checkpoint)

    @app.get("/api/ledger/proof/inclusion")
    def prove(who: Who, index: Index, size: Size | None = None) -> dict[str, Any]:
        with _access.access(engine, home, who, "ledger.prove", "ledger") as conn:
            return ledger_store.inclusion_document(conn, index, size)

    @app.get("/api/ledger/proof/consistency")
    def consistency(who: Who, old: Size, new: Size | None = None) -> dict[str, Any]:
        with _access.access(engine, home, who, "ledger.consistency", "ledger") as conn:
            return ledger_store.consistency_document(conn, old, new)

    @app.get("/api/audit")
    def audit(who: Who, since: str | None = None) -> dict[str, Any]:
        from vault.audit import audit_vault, summarize

        with _access.access(engine, home, who, "audit.report", "ledger"):
            pass
        verdict = audit_vault(engine)
        with engine.connect() as conn:
            summary = summarize(ledger_store.iter_entries(conn), since=since)
        return {"verdict": verdict.to_json(), "summary": summary.to_json()}

    @app.get("/api/budgets")
    def budgets(who: Who, analyst: str | None = None) -> Any:
        from vault.budget import show_budgets

        if analyst is not None:
            parse_name(analyst, "principal", what="analyst name")
        target = who.id if who.role == "analyst" else analyst
        with _access.access(engine, home, who, "budget.show", f"analyst/{target or '*'}") as conn:
            return {"budgets": [b.to_json() for b in show_budgets(conn, analyst=target)]}

    @app.post("/api/releases")
    def release(who: Who, body: ReleaseBody) -> Any:
        from vault.budget import parse_epsilon
        from vault.dp.release import preview_release, run_release
        from vault.dp.request import ReleaseRequest

        eps = parse_epsilon(body.epsilon)
        req = ReleaseRequest.build(body.dataset, body.by, body.measures, eps, delta=body.delta)
        if body.preview:
            return preview_release(engine, home, who, req).to_json()
        from vault.transparency import receipts_for

        result = run_release(engine, home, who, req)
        doc = result.to_json()
        if result.ledger_seq is not None:
            doc["receipt"] = receipts_for(engine, home, [result.ledger_seq])[0][0]
        return doc

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> str:
        return (Path(__file__).with_name("templates") / "dashboard.html").read_text("utf-8")

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": "http", "detail": exc.detail}, status_code=exc.status_code)

    return app
