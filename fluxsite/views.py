from __future__ import annotations

from django.db import connection
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template import loader
from django.views.decorators.http import require_GET

from fluxsite.integrations import storage


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("training:list")
    return redirect("accounts:login")


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@require_GET
def signed_file(request: HttpRequest, token: str) -> FileResponse:
    """Serve a private file through an expiring signed token (local storage mode only)."""
    return storage.serve_signed(token)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return HttpResponse(loader.render_to_string("404.html", {}, request), status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    # No context processors and no request: a broken database or template tag must not
    # turn the error page itself into another error, and nothing internal is revealed.
    return HttpResponse(loader.render_to_string("500.html", {}), status=500)
