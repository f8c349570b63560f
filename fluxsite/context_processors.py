from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from fluxsite.fragments import FRAGMENT_SECONDS


def site(request: HttpRequest) -> dict:
    """What the base layout needs on every page: the sandbox banner and the credit balance."""
    balance = None
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        from billing.selectors import balance_shown

        balance = balance_shown(user)
    return {
        "SANDBOX_MODE": settings.SANDBOX_MODE,
        "credit_balance": balance,
        "FRAGMENT_SECONDS": FRAGMENT_SECONDS,  # how long {% cache %} keeps a fragment (fluxsite.fragments)
    }
