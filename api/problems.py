"""Every error of the API as `application/problem+json` (RFC 9457), one shape for all of them:

    {"type", "title", "status", "detail", "errors": [{"field", "message"}], "hint"}

`type` is a link to the problem's section of the reference page (/api/v1/docs#problem-<slug>).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.http import HttpResponse
from ninja import Schema

CONTENT_TYPE = "application/problem+json"

# slug → (status, title): the reference page lists them in this order.
PROBLEMS: dict[str, tuple[int, str]] = {
    "invalid-request": (422, "The request is not valid"),
    "unauthorized": (401, "A valid API token is needed"),
    "insufficient-scope": (403, "The token lacks a scope"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "insufficient-credits": (402, "Not enough credits"),
    "conflict": (409, "The object is not in a state that allows this"),
    "idempotency-key-reused": (422, "This Idempotency-Key was used with another request"),
    "idempotency-key-in-use": (409, "A request with this Idempotency-Key is still running"),
    "rate-limited": (429, "Too many requests"),
    "upstream-error": (502, "A service we depend on failed"),
    "server-error": (500, "Something went wrong on our side"),
}


class FieldErrorOut(Schema):
    field: str
    message: str


class ProblemOut(Schema):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldErrorOut]
    hint: str


@dataclass
class Problem(Exception):
    """Raise from an endpoint; the API's exception handler answers it."""

    slug: str
    detail: str = ""
    errors: list[tuple[str, str]] = field(default_factory=list)
    hint: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None

    def as_dict(self) -> dict:
        status, title = PROBLEMS[self.slug]
        return {
            "type": f"/api/v1/docs#problem-{self.slug}",
            "title": title,
            "status": self.status or status,
            "detail": self.detail or title + ".",
            "errors": [{"field": name, "message": message} for name, message in self.errors],
            "hint": self.hint,
        }

    def response(self) -> HttpResponse:
        body = self.as_dict()
        response = HttpResponse(json.dumps(body), status=body["status"], content_type=CONTENT_TYPE)
        for name, value in self.headers.items():
            response[name] = value
        return response


def form_problem(errors: dict[str, list[str]], *, detail: str = "", hint: str = "") -> Problem:
    """A Django form's (or a service's) errors as one 422 problem; `__all__` becomes field ""."""
    pairs = [
        ("" if name == "__all__" else name, str(message))
        for name, messages in errors.items()
        for message in messages
    ]
    return Problem(
        "invalid-request",
        detail=detail or (pairs[0][1] if len(pairs) == 1 else f"{len(pairs)} fields are not valid."),
        errors=pairs,
        hint=hint,
    )


# Responses every authenticated endpoint may give, for the OpenAPI document.
COMMON = {401: ProblemOut, 403: ProblemOut, 422: ProblemOut, 429: ProblemOut}
