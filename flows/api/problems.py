"""Errors as RFC 9457 problem details (``application/problem+json``), from the one error tree.

Every error answer of the API is ``{"type", "title", "status", "detail"}``:

- ``type``: ``tag:civicvault.local,2026:problem/<kind>``, one per error class of
  ``ledger.errors`` (``policy-denied``, ``budget-exhausted``, ``bad-input``, ...) and per
  HTTP-level refusal (``request-too-large``, ``invalid-request``, ``not-found``, ...);
  a tag URI: it names the problem, it is not a page to fetch.
- ``title``: the kind in words ("Policy denied"), the same for every instance.
- ``status``: the HTTP status (one table, :data:`STATUS`, most specific class first).
- ``detail``: the error's one-line message (ids and counts only, by the tree's rule)
  **unless** it contains anything the caller sent (a query or path value, a JSON
  string, number or key of the body, a word of a text body): then the class's fixed
  advice. So no detail ever echoes caller input or a data value.

401 answers carry ``WWW-Authenticate: Bearer`` (RFC 6750, with ``error="invalid_token"``
when a token was given), 429 answers ``Retry-After``. FastAPI's own validation errors
(422) name the failing locations and pydantic's error types, never the input.
:func:`declare_responses` writes the same into the OpenAPI document: every operation
lists each status it can answer with the :class:`Problem` schema.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from ledger.errors import (
    AccessDenied,
    BadInput,
    CivicVaultError,
    FlowStepFailed,
    KeyUnavailable,
    LinkOutOfDate,
    PrefectServerUnavailable,
    ReleaseFailed,
    RepeatedDenial,
    StorageFault,
    Unauthenticated,
    VerificationFailed,
)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "tag:civicvault.local,2026:problem/"
BODY_KEY = "civicvault.body"  # the request body, kept by the body limit (flows.api.limits)
MAX_DETAIL = 400

#: Status of each error class; the first class an error is an instance of wins.
STATUS: tuple[tuple[type[CivicVaultError], int], ...] = (
    (RepeatedDenial, 429),
    (Unauthenticated, 401),
    (AccessDenied, 403),
    (BadInput, 400),  # before VerificationFailed: a MalformedNote is both
    (StorageFault, 503),
    (KeyUnavailable, 503),
    (PrefectServerUnavailable, 503),
    (FlowStepFailed, 503),
    (ReleaseFailed, 500),  # a charged release that failed: the server's fault
    (VerificationFailed, 409),
    (LinkOutOfDate, 409),
    (CivicVaultError, 409),
)


class Problem(BaseModel):
    """An RFC 9457 problem detail: what went wrong, never with the caller's input."""

    type: str = Field(description="A tag URI naming the kind of problem.")
    title: str = Field(description="The kind of problem in words.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="This occurrence: ids and counts only, no input echoed.")


def status_of(exc: CivicVaultError) -> int:
    return next(code for cls, code in STATUS if isinstance(exc, cls))


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def problem(status: int, kind: str, detail: str, *,
            headers: dict[str, str] | None = None, title: str | None = None) -> Response:
    words = kind.replace("-", " ")
    body = {"type": TYPE_PREFIX + kind, "title": title or words[:1].upper() + words[1:],
            "status": status, "detail": detail[:MAX_DETAIL]}
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON,
                    headers=headers)


def problem_bytes(status: int, kind: str, detail: str) -> bytes:
    """The body of a problem answered below FastAPI (raw ASGI: the body limit)."""
    words = kind.replace("-", " ")
    return orjson.dumps({"type": TYPE_PREFIX + kind, "title": words[:1].upper() + words[1:],
                         "status": status, "detail": detail[:MAX_DETAIL]})


# -- what the caller sent (never echoed) --------------------------------------------------------


def _leaves(doc: Any) -> Iterator[str]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield str(k)
            yield from _leaves(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _leaves(v)
    elif doc is not None and not isinstance(doc, bool):
        yield str(doc)


def caller_strings(request: Request) -> set[str]:
    """Every string the caller sent: query keys and values, path values, the body's JSON
    leaves and keys (or the words of a body that is not JSON)."""
    found: set[str] = set()
    for k, v in request.query_params.multi_items():
        found.update((k, v))
    found.update(str(v) for v in request.path_params.values())
    body = request.scope.get(BODY_KEY)
    if body:
        try:
            found.update(_leaves(orjson.loads(body)))
        except orjson.JSONDecodeError:
            text = body.decode("utf-8", errors="replace")
            found.update(re.findall(r"[^\s\"'=:,\[\]{}()<>]+", text))
    return {s.lower() for s in found if s}


def echoes(text: str, sent: Iterable[str]) -> bool:
    low = text.lower()
    return any(s in low for s in sent)


def fixed_detail(cls: type[CivicVaultError]) -> str:
    doc = (cls.__doc__ or cls.__name__).strip().splitlines()[0]
    return cls.advice or doc


def safe_detail(exc: CivicVaultError, request: Request) -> str:
    """The error's first line, or its class's fixed advice if that line echoes input."""
    line = str(exc).splitlines()[0] if str(exc) else ""
    if not line or len(line) > MAX_DETAIL or echoes(line, caller_strings(request)):
        return fixed_detail(type(exc))
    return line


def _bearer_challenge(request: Request) -> str:
    given = request.headers.get("authorization", "").strip()
    return ('Bearer realm="civicvault", error="invalid_token"' if given
            else 'Bearer realm="civicvault"')


# -- handlers -----------------------------------------------------------------------------------


async def on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CivicVaultError)
    status = status_of(exc)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = _bearer_challenge(request)
    if isinstance(exc, RepeatedDenial):
        headers["Retry-After"] = str(exc.retry_after)
    return problem(status, _kebab(type(exc).__name__), safe_detail(exc, request),
                   headers=headers)


async def on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    names = _schema_names(request.app)
    where = []
    for err in list(exc.errors())[:8]:
        loc = ".".join(str(p) if isinstance(p, int) or p in names else "?"
                       for p in err.get("loc", ()))
        where.append(f"{loc} ({err.get('type', 'invalid')})")
    return problem(422, "invalid-request",
                   "the request does not fit the operation's schema: " + "; ".join(where))


async def on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) else phrase
    if echoes(detail, caller_strings(request)):
        detail = phrase
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = _bearer_challenge(request)
    return problem(exc.status_code, _kebab(phrase.replace(" ", "")), detail, headers=headers,
                   title=phrase)


def _schema_names(app: FastAPI) -> frozenset[str]:
    """The names the OpenAPI document defines (fields, parameters, models): a validation
    error's location is shown only through these, so a caller's own key never is."""
    cached: frozenset[str] | None = getattr(app.state, "schema_names", None)
    if cached is not None:
        return cached
    names = {"body", "query", "path", "header", "cookie"}

    def walk(doc: Any) -> None:
        if isinstance(doc, dict):
            for key, value in doc.items():
                if key in ("properties", "schemas") and isinstance(value, dict):
                    names.update(value)
                if key == "parameters" and isinstance(value, list):
                    names.update(p.get("name", "") for p in value if isinstance(p, dict))
                walk(value)
        elif isinstance(doc, list):
            for value in doc:
                walk(value)

    walk(app.openapi())
    app.state.schema_names = frozenset(names)
    return app.state.schema_names  # type: ignore[no-any-return]


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """A bug: a 500 problem with a fixed detail (the exception's text could hold data);
    the server still logs it (Starlette re-raises after answering)."""
    return problem(500, "internal-error", "an unexpected error: nothing of it is shown here; "
                   "the server's log has it")


def install(app: FastAPI) -> None:
    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(CivicVaultError, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)


# -- OpenAPI ------------------------------------------------------------------------------------

_REF = {"$ref": "#/components/schemas/Problem"}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "Bearer (RFC 6750)",
                               "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds until the request is decided again",
                          "schema": {"type": "integer"}}},
}
_WHY = {
    400: "Bad input (the message names the argument; nothing was written)",
    401: "No, unknown or revoked bearer token",
    403: "The policy or the privacy budget denies it (ledgered)",
    404: "No such item",
    409: "The vault's state refuses it (verification failed, link out of date, ...)",
    413: "Request body over the cap (refused before authentication and parsing)",
    422: "The request does not fit the operation's schema",
    429: "The same request was denied moments ago (counted, not ledgered singly)",
    500: "A charged release failed (the charge is kept and ledgered)",
    503: "Storage or a key provider is unavailable (nothing was written)",
}


def _codes(path: str, op: dict[str, Any]) -> set[int]:
    """The statuses an operation of the OpenAPI document can answer, read off the document
    itself (so routes of included routers count the same as the app's own): 422 when it
    takes parameters or a body; 401/403/429 when it asks for a bearer token."""
    codes = {413, 503}
    if op.get("parameters") or op.get("requestBody"):
        codes.add(422)
    if op.get("security"):
        codes |= {400, 401, 403, 409, 429}
    else:
        codes |= {400, 409}
    if path in ("/api/releases", "/api/segments", "/api/links/{name}/report"):
        codes.add(500)
    return codes


def declare_responses(app: FastAPI) -> None:
    """Make ``app.openapi()`` list, for every operation, each status it can answer (with
    the :class:`Problem` schema under ``application/problem+json``)."""
    make = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = make()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema()
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for path, ops in schema.get("paths", {}).items():
            for op in ops.values():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                responses = op["responses"]
                responses.pop("422", None)
                for code in sorted(_codes(path, op)):
                    answer: dict[str, Any] = {"description": _WHY[code],
                                              "content": {PROBLEM_JSON: {"schema": _REF}}}
                    if code in _HEADERS:
                        answer["headers"] = _HEADERS[code]
                    responses[str(code)] = answer
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
