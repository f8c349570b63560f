from __future__ import annotations

import functools
import time
import zoneinfo
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from fluxsite.logs import HEADER, REQUEST_ID, request_id_new, request_id_valid

if TYPE_CHECKING:
    from fluxsite.accounts.models import User


class RequestIdMiddleware:
    """Every request has an id: the client's X-Request-ID when it is a sane token, else a new one.

    It is set for everything the request logs (fluxsite.logs.RequestIdFilter) and for the tasks it
    enqueues, and sent back in the X-Request-ID response header, so a user's report or the proxy's
    log names the lines to read. First in MIDDLEWARE: redirects and refusals carry it too. The id
    lives until the request is finished (its answer sent), when `request_id_clear` forgets it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_valid(request.headers.get(HEADER)) or request_id_new()
        # Not reset when this returns: Django logs a 4xx/5xx answer ("django.request") after the
        # middleware chain; request_finished clears it (fluxsite.logs.request_id_clear).
        REQUEST_ID.set(request_id)
        response = self.get_response(request)
        response.headers[HEADER] = request_id
        return response


class ContentSecurityPolicyMiddleware:
    """A strict CSP: our own scripts and styles only, no inline code anywhere; and a Permissions-Policy.

    Images may also come from the public bucket's domain (generated images) and data:/blob:
    URLs (thumbnails drawn in the browser before upload).

    The admin gets its own policy: Django's admin runs only its own static scripts (no inline
    script since Django 4.1), but one changelist template carries an inline <style>, so only
    styles are relaxed there, and only for staff pages.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        img = " ".join(["'self'", "data:", "blob:", *settings.CSP_EXTRA_IMG_SOURCES])
        self.policy = (
            "default-src 'self'; script-src 'self'; style-src 'self'; "
            f"img-src {img}; connect-src 'self'; font-src 'self'; object-src 'none'; "
            "base-uri 'self'; form-action 'self' https://checkout.stripe.com https://billing.stripe.com; "
            "frame-ancestors 'none'"
        )
        self.admin_policy = (
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src {img}; connect-src 'self'; font-src 'self'; object-src 'none'; "
            "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
        )

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = self.admin_policy if request.path.startswith("/admin/") else self.policy
        response.headers.setdefault("Content-Security-Policy", policy)
        response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response


class PrivateCacheControlMiddleware:
    """`Cache-Control: private, no-store` on every response to a signed-in user.

    A shared cache or the browser's back button must not show one person's pages to the next
    person at the same computer. Static and media files are left alone, and so is a response whose
    view chose its own caching (a private thumbnail: `private, max-age`).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or "Cache-Control" in response.headers:
            return response
        static_prefixes = tuple(f"/{p.strip('/')}/" for p in (settings.STATIC_URL, settings.MEDIA_URL) if p)
        if not request.path.startswith(static_prefixes):
            response.headers["Cache-Control"] = "private, no-store"
        return response


class SessionIdleTimeoutMiddleware:
    """Sign a user out after SESSION_IDLE_TIMEOUT_SECONDS without a request, and SESSION_COOKIE_AGE
    after signing in whatever the activity.

    Django's own expiry is reset each time the session is saved, so it alone cannot bound a busy
    session's lifetime; and SESSION_SAVE_EVERY_REQUEST would write the session row on every request.
    Here the last-seen time is written at most once a minute. Both times are first set at sign-in
    (`session_times_start`), so the first page after it costs no extra write.
    """

    SEEN = "_fluxsite_seen_at"
    STARTED = "_fluxsite_started_at"
    WRITE_EVERY_SECONDS = 60

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            now = int(time.time())
            session = request.session
            started = session.get(self.STARTED, now)
            seen = session.get(self.SEEN, now)
            if (
                now - seen > settings.SESSION_IDLE_TIMEOUT_SECONDS
                or now - started > settings.SESSION_COOKIE_AGE
            ):
                from django.contrib.auth import logout

                logout(request)  # flushes the session; the request goes on as an anonymous visitor's
            else:
                if self.STARTED not in session:
                    session[self.STARTED] = started
                if self.SEEN not in session or now - seen >= self.WRITE_EVERY_SECONDS:
                    session[self.SEEN] = now
        return self.get_response(request)


class RejectNulBytesMiddleware:
    """Answer 400 to a query string carrying a NUL byte.

    Forms refuse NUL already (Django's ProhibitNullCharactersValidator), but a raw query
    parameter used in a lookup would reach PostgreSQL, which cannot store NUL and raises a
    DataError: a 500 for what is just a malformed address.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or any(
            "\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()
        ):
            from django.http import HttpResponseBadRequest

            return HttpResponseBadRequest(
                "This address contains a character that is not allowed.", content_type="text/plain"
            )
        return self.get_response(request)


@receiver(user_logged_in)
def session_times_start(sender: type[User], request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    """Sign-in starts the session's lifetime and idle clocks (it saves the session anyway)."""
    if request is not None and hasattr(request, "session"):
        now = int(time.time())
        request.session[SessionIdleTimeoutMiddleware.STARTED] = now
        request.session[SessionIdleTimeoutMiddleware.SEEN] = now


TIME_ZONE_COOKIE = "tz"


class TimezoneMiddleware:
    """Show times in the person's own time zone: the browser's, which static/js/site.js keeps in the
    `tz` cookie (an IANA name such as "Europe/Paris"). A missing or unknown name leaves
    settings.TIME_ZONE (UTC). Only the display changes: times are stored and compared in UTC."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = _zone(request.COOKIES.get(TIME_ZONE_COOKIE, ""))
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()  # a thread serves the next request in its own zone


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    if not name or len(name) > 64:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):  # ValueError: a path such as "../x"
        return None
