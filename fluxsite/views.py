from __future__ import annotations

from dataclasses import asdict

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template import loader
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods

from fluxsite import health
from fluxsite.account_deletion import account_delete as account_delete_service
from fluxsite.accounts.forms import AccountDeleteForm
from fluxsite.http import AuthenticatedHttpRequest
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
def healthz_ready(request: HttpRequest) -> HttpResponse:
    """Ready to serve: the database, the broker and the storage answer (503 naming any that does
    not). The workers' heartbeat is reported beside them, without failing the probe: a web instance
    that works is not taken out of rotation because the workers are down (queue_status alerts)."""
    checks = health.readiness_checks()
    failing = [c.name for c in checks if not c.ok]
    try:
        beats = health.clusters_heartbeat()
        workers: dict = {
            "ok": any(not b.stale for b in beats),
            "clusters": [asdict(b) for b in beats],
            "stale_after_seconds": settings.Q_HEARTBEAT_STALE_SECONDS,
        }
    except Exception as exc:  # the broker check above names the cause
        workers = {"ok": False, "clusters": [], "detail": type(exc).__name__}
    body = {
        "status": "unavailable" if failing else ("ok" if workers["ok"] else "degraded"),
        "failing": failing,
        "checks": {c.name: {"ok": c.ok, "detail": c.detail, "ms": c.milliseconds} for c in checks},
        "workers": workers,
    }
    response = JsonResponse(body, status=503 if failing else 200)
    response["Cache-Control"] = "no-store"
    return response


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


@sensitive_post_parameters("password")
@login_required
@require_http_methods(["GET", "POST"])
def account_delete(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Delete my account (password confirmed): here, above the apps, since it reaches into all of them."""
    form = AccountDeleteForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        user = request.user
        logout(request)
        account_delete_service(user=user)
        messages.success(request, "Your account and all its data were deleted.")
        return redirect("accounts:login")
    return render(request, "accounts/delete.html", {"form": form}, status=400 if form.errors else 200)
