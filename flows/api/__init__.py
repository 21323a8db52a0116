"""The HTTP API and dashboard (``civicvault serve``): a thin shell over ``vault.Vault``.

::

    app.py       create_app(home, engine): the routes, one per operation (parse, call, return)
    bodies.py    request models and query parameters (pydantic)
    problems.py  errors as RFC 9457 problem details; the status codes in the OpenAPI
    limits.py    the body cap (before authentication) and the repeated-denial limiter (429)
    docs.py      /docs and /redoc served offline (assets from our own server)
    tiles.py     /log: the ledger as a C2SP tlog-tiles log (plain ASGI, public)
"""

from flows.api.app import create_app

__all__ = ["create_app"]
