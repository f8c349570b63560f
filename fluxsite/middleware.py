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
