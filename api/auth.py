"""Bearer tokens: `Authorization: Bearer fx_…`, looked up by their SHA-256 (one indexed equality)."""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer

from api.problems import Problem
from fluxsite.accounts.models import ApiToken
from fluxsite.accounts.services import api_token_authenticate


class TokenAuth(HttpBearer):
    openapi_description = "An API token from your account page (Account → API tokens): `Bearer fx_…`."

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        found = api_token_authenticate(secret=token.strip())
        if found is not None:
            # The owner-scoped selectors and the rate limits read request.user.
            request.user = found.owner
        return found


def token_of(request: HttpRequest) -> ApiToken:
    token = getattr(request, "auth", None)
    assert isinstance(token, ApiToken)
    return token


def need(request: HttpRequest, scope: str) -> ApiToken:
    """The request's token, if it has `scope`; else a 403 problem naming it."""
    token = token_of(request)
    if scope not in token.scopes:
        raise Problem(
            "insufficient-scope",
            detail=f"This token lacks the “{scope}” scope.",
            hint="Create a token with that scope on your account page (Account → API tokens).",
        )
    return token
