from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template import loader
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods

from billing.selectors import price_list
from fluxsite import health
from fluxsite.account_deletion import account_delete as account_delete_service
from fluxsite.accounts.forms import AccountDeleteForm
from fluxsite.http import AuthenticatedHttpRequest
from fluxsite.integrations import storage


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """People who are signed in get their trainings; visitors, what Fluxsite does and what it costs."""
    if request.user.is_authenticated:
        return redirect("training:list")
    return render(request, "landing.html", price_list())


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@require_GET
def healthz_ready(request: HttpRequest) -> HttpResponse:
    """Ready to serve: the database, the broker and the storage, each named (fluxsite.health)."""
    status, body = health.readiness_report()
    response = JsonResponse(body, status=status)
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
