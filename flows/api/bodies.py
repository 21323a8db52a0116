"""Request shapes of the HTTP API: query parameters and JSON bodies (pydantic models).

Numbers go through the one strict parser (``policies.validate``): a bad number is
``BadInput`` (400), a body that does not fit its model is a 422; neither echoes the
input. (FastAPI reads these annotations at run time: no postponed annotations here.)
"""

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, BeforeValidator, Field

from policies.validate import int_arg, number_value

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

