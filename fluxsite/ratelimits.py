"""Rate limits for expensive or abusable actions, counted in the shared cache (django-ratelimit).

One decorator, `rate_limited(group)`, with the rates in settings.RATELIMITS ("5/h", "60/m"...).
A limited request gets HTTP 429 with Retry-After and a clear message, in the form the request
asked for: JSON for the upload script and API clients, a small fragment for HTMX, else a page.
Logins are limited separately, by django-axes (settings AXES_*).

Counting is per user when logged in, else per client address; `key` may name another function
of the request (the password reset is counted per address typed as well as per client).
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django_ratelimit.core import get_usage

WHAT = {
    "signup": "sign-ups from your network",
    "password_reset": "password reset requests",
    "upload": "uploads",
    "training_start": "training starts",
    "generate": "generations",
    "caption_start": "captioning runs",
    "checkout": "checkouts",
}


def _user_or_ip(group: str, request: HttpRequest) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{request.META.get('REMOTE_ADDR', '')}"


def posted_email(group: str, request: HttpRequest) -> str:
    """The address typed into the form, normalised and hashed (so one address is counted once)."""
    value = str(request.POST.get("email", "")).strip().lower()
    return "email:" + hashlib.sha256(value.encode()).hexdigest()


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "") or request.path.startswith("/api/")


def too_many(request: HttpRequest, group: str, retry_after: int) -> HttpResponse:
    minutes = max(1, round(retry_after / 60))
    message = (
        f"Too many {WHAT.get(group, 'requests')} for now: please wait "
        f"{minutes} minute{'s' if minutes != 1 else ''} before trying again."
    )
    if _wants_json(request):
        response: HttpResponse = JsonResponse({"error": message, "files": []}, status=429)
    elif request.headers.get("HX-Request"):
        response = HttpResponse(f'<p class="error" role="alert">{message}</p>', status=429)
    else:
        response = render(request, "429.html", {"message": message}, status=429)
    response["Retry-After"] = str(retry_after)
    return response


def axes_username(request: HttpRequest, credentials: dict | None) -> str:
    """The account a login names, the same whichever path asks: the failed-login signal carries the
    form's `username`, the backend passes our USERNAME_FIELD (`email`). Lowercased, as stored."""
    credentials = credentials or {}
    value = credentials.get("email") or credentials.get("username")
    if not value and request is not None and request.method == "POST":
        value = request.POST.get("username") or request.POST.get("email")
    return str(value or "").strip().lower()


def login_locked_out(
    request: HttpRequest, credentials: dict | None = None, *args: Any, **kwargs: Any
) -> HttpResponse:
    """django-axes' lockout answer: 429, the same page for the site's and the admin's login."""
    minutes = max(1, round(float(settings.AXES_COOLOFF_TIME) * 60))
    message = (
        f"Too many failed logins for this account from your network: wait {minutes} minutes, or reset "
        "your password."
    )
    response = render(request, "429.html", {"message": message}, status=429)
    response["Retry-After"] = str(minutes * 60)
    return response


def limit_reached(
    request: HttpRequest, group: str, *, key: str | Callable = _user_or_ip, increment: bool = True
) -> int | None:
    """Seconds until the limit resets when this request is over it (counted), else None."""
    rate = settings.RATELIMITS.get(group)
    if not rate or not getattr(settings, "RATELIMIT_ENABLE", True):
        return None
    usage = get_usage(
        request, group=f"fluxsite.{group}", key=key, rate=rate, method=["POST"], increment=increment
    )
    if usage is None or not usage["should_limit"]:
        return None
    return max(1, int(usage["time_left"]))


def client_ip(group: str, request: HttpRequest) -> str:
    return f"ip:{request.META.get('REMOTE_ADDR', '')}"


_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def log_allowed(name: str) -> bool:
    """Whether one more log line of this kind fits settings.RATELIMITS[name] (e.g. refused webhooks:
    a flood of forged deliveries must not flood the logs). Counted in the shared cache, per window."""
    from django.core.cache import cache

    count, _, period = str(settings.RATELIMITS.get(name, "")).partition("/")
    if not count.isdigit() or period not in _PERIODS:
        return True
    window = _PERIODS[period]
    key = f"fluxsite-log:{name}:{int(time.time()) // window}"
    cache.add(key, 0, window + 5)
    try:
        return cache.incr(key) <= int(count)
    except ValueError:  # the key expired between add and incr
        return True


def rate_limited(group: str, *keys: str | Callable) -> Callable:
    """Limit a view's POSTs by `group`'s rate, for each key (default: the user, or the client address)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "POST":
                for key in keys or (_user_or_ip,):
                    retry_after = limit_reached(request, group, key=key)
                    if retry_after is not None:
                        return too_many(request, group, retry_after)
            return view(request, *args, **kwargs)

        return wrapper

    return decorate
