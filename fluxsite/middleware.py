from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class ContentSecurityPolicyMiddleware:
    """A strict CSP: our own scripts and styles only, no inline code anywhere.

    Images may also come from the public bucket's domain (generated images) and data:/blob:
    URLs (thumbnails drawn in the browser before upload).
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

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # The admin ships inline scripts of its own; it is staff-only and keeps Django's defaults.
        if not request.path.startswith("/admin/"):
            response.headers.setdefault("Content-Security-Policy", self.policy)
        return response


class RejectNulBytesMiddleware:
    """Answer 400 to a query string carrying a NUL byte.

    Forms refuse NUL already (Django's ProhibitNullCharactersValidator), but a raw query
    parameter used in a lookup would reach PostgreSQL, which cannot store NUL and raises a
    DataError: a 500 for what is just a malformed address.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or any("\x00" in key or any("\x00" in v for v in values)
                                         for key, values in request.GET.lists()):
            from django.http import HttpResponseBadRequest

            return HttpResponseBadRequest("This address contains a character that is not allowed.",
                                          content_type="text/plain")
        return self.get_response(request)
