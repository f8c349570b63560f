from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from fluxsite.accounts import services
from fluxsite.accounts.forms import (
    AccountDeleteForm,
    ApiTokenForm,
    EmailChangeForm,
    SignUpForm,
    WebhookEndpointForm,
)
from fluxsite.accounts.models import ApiToken, WebhookDelivery, WebhookEndpoint
from fluxsite.accounts.services import webhooks
from fluxsite.accounts.verification import VerificationError
from fluxsite.http import AuthenticatedHtmxHttpRequest, AuthenticatedHttpRequest
from fluxsite.ratelimits import client_ip, rate_limited


@sensitive_post_parameters("password1", "password2")
@require_http_methods(["GET", "POST"])
@rate_limited("signup", client_ip)
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("training:list")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        # The same redirect whether or not the address was taken (the owner gets an e-mail then),
        # and no automatic login, which would tell the two cases apart.
        services.user_sign_up(email=form.cleaned_data["email"], password=form.cleaned_data["password1"])
        return redirect("accounts:signup_done")
    return render(request, "accounts/signup.html", {"form": form})


@require_GET
def signup_done(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/signup_done.html", {"credits": settings.SIGNUP_CREDITS})


@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a button, POST verifies: mail scanners that open links must not verify an address
    (or switch an account to a new one) without the person."""
    if request.method == "GET":
        try:
            claim = services.user_verification_check(token=token)
        except VerificationError as exc:
            return render(request, "accounts/verify.html", {"error": exc.message}, status=400)
        return render(
            request, "accounts/verify.html", {"email": claim.email, "credits": settings.SIGNUP_CREDITS}
        )
    try:
        outcome = services.user_email_verify(token=token)
    except VerificationError as exc:
        return render(request, "accounts/verify.html", {"error": exc.message}, status=400)
    text = f"{outcome.email} is verified."
    if outcome.email_changed:
        text = f"Your e-mail address is now {outcome.email}."
    if outcome.credits_granted:
        text += f" {outcome.credits_granted} welcome credits are in your balance."
    messages.success(request, text)
    return redirect("training:list" if request.user.is_authenticated else "accounts:login")


@login_required
@require_POST
def verify_resend(request: AuthenticatedHttpRequest) -> HttpResponse:
    result = services.user_verification_resend(user=request.user)
    if result == "sent":
        messages.success(request, f"We sent a new verification link to {request.user.email}.")
    elif result == "too_soon":
        messages.info(
            request,
            "A link was sent less than a minute ago. Check your inbox (and spam folder), "
            "or ask again in a minute.",
        )
    else:
        messages.info(request, "Your address is already verified.")
    return redirect("accounts:account")


@login_required
@require_http_methods(["GET"])
def account(request: AuthenticatedHttpRequest) -> HttpResponse:
    return _account_page(request)


def _account_page(request: AuthenticatedHttpRequest, *, status: int = 200, **context: Any) -> HttpResponse:
    """The whole account page; `context` replaces what one part shows (a form with its errors, a
    section's context with a new secret in it)."""
    page: dict[str, Any] = {
        "email_form": EmailChangeForm(user=request.user),
        "password_form": PasswordChangeForm(request.user),
        "delete_form": AccountDeleteForm(user=request.user),
        "signup_credits": settings.SIGNUP_CREDITS,
    }
    if "tokens" not in context:
        page.update(_tokens_context(request.user))
    if "endpoints" not in context:
        page.update(_webhooks_context(request.user))
    return render(request, "accounts/account.html", {**page, **context}, status=status)


def _section_answer(
    request: AuthenticatedHtmxHttpRequest, section: str, context: dict, *, status: int
) -> HttpResponse:
    """One section of the account page (a partial of account.html) for htmx, else the page around it."""
    if request.htmx:
        return render(request, f"accounts/account.html#{section}", context, status=status)
    return _account_page(request, status=status, **context)


# --- API tokens: the account page's "API tokens" section (a partial swapped by htmx) ---------------
def _tokens_context(user, **extra) -> dict:
    return {
        "tokens": list(ApiToken.objects.filter(owner=user).order_by("revoked_at", "-created_at", "-pk")[:50]),
        "token_form": extra.pop("token_form", None) or ApiTokenForm(),
        **extra,
    }


def _tokens_answer(request: AuthenticatedHtmxHttpRequest, *, status: int = 200, **extra) -> HttpResponse:
    return _section_answer(request, "api_tokens", _tokens_context(request.user, **extra), status=status)


@login_required
@require_POST
def api_token_create(request: AuthenticatedHtmxHttpRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        return _tokens_answer(request, status=400, token_form=form)
    try:
        token, secret = services.api_token_create(
            user=request.user, name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"]
        )
    except services.ApiTokenError as exc:
        form.add_error(None, str(exc))
        return _tokens_answer(request, status=400, token_form=form)
    # The secret is in this one answer only (never stored, never in a redirect's URL or session).
    return _tokens_answer(request, new_token=token, new_secret=secret)


@login_required
@require_http_methods(["GET", "POST"])
def api_token_revoke(request: AuthenticatedHtmxHttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation (the no-JavaScript path), POST revokes (idempotent)."""
    token = get_object_or_404(ApiToken, pk=pk, owner=request.user)
    if request.method == "GET":
        return render(request, "accounts/api_token_revoke.html", {"token": token})
    services.api_token_revoke(user=request.user, token_id=token.pk)
    if not request.htmx:
        messages.success(request, f"The token “{token.name}” is revoked.")
        return redirect("accounts:account")
    return _tokens_answer(request)


# --- Webhooks: the account page's "Webhooks" section (a partial swapped by htmx) ----------------------
DELIVERIES_SHOWN = 5


def _webhooks_context(user, **extra) -> dict:
    latest = WebhookDelivery.objects.order_by("-created_at", "-pk")[:DELIVERIES_SHOWN]
    endpoints = list(
        WebhookEndpoint.objects.filter(owner=user).prefetch_related(
            Prefetch("deliveries", queryset=latest, to_attr="latest_deliveries")
        )[: webhooks.ENDPOINTS_MAX]
    )
    return {
        "endpoints": endpoints,
        "webhook_form": extra.pop("webhook_form", None) or WebhookEndpointForm(),
        **extra,
    }


def _webhooks_answer(request: AuthenticatedHtmxHttpRequest, *, status: int = 200, **extra) -> HttpResponse:
    return _section_answer(request, "webhooks", _webhooks_context(request.user, **extra), status=status)


@login_required
@require_POST
def webhook_endpoint_create(request: AuthenticatedHtmxHttpRequest) -> HttpResponse:
    form = WebhookEndpointForm(request.POST)
    if not form.is_valid():
        return _webhooks_answer(request, status=400, webhook_form=form)
    try:
        endpoint = webhooks.webhook_endpoint_create(
            user=request.user, url=form.cleaned_data["url"], events=form.cleaned_data["events"]
        )
    except webhooks.WebhookError as exc:
        form.add_error("url", str(exc))
        return _webhooks_answer(request, status=400, webhook_form=form)
    # The secret is shown in this answer (and kept, since it signs every delivery).
    return _webhooks_answer(request, new_endpoint=endpoint)


@login_required
@require_http_methods(["GET", "POST"])
def webhook_endpoint_delete(request: AuthenticatedHtmxHttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation (the no-JavaScript path), POST deletes."""
    endpoint = webhooks.webhook_endpoint_get(user=request.user, pk=pk)
    if request.method == "GET":
        return render(request, "accounts/webhook_endpoint_delete.html", {"endpoint": endpoint})
    webhooks.webhook_endpoint_delete(user=request.user, endpoint_id=endpoint.pk)
    if not request.htmx:
        messages.success(request, f"The endpoint {endpoint.url} is deleted.")
        return redirect("accounts:account")
    return _webhooks_answer(request)


@login_required
@require_POST
def webhook_endpoint_test(request: AuthenticatedHtmxHttpRequest, pk: int) -> HttpResponse:
    webhooks.webhook_test_send(user=request.user, endpoint_id=pk)
    if not request.htmx:
        messages.success(request, "A test event was sent: its delivery is in the log below.")
        return redirect("accounts:account")
    return _webhooks_answer(request, tested_id=pk)


@sensitive_post_parameters("password")
@login_required
@require_http_methods(["POST"])
def email_change(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = EmailChangeForm(request.POST, user=request.user)
    if form.is_valid():
        # One answer whether or not the address is taken (its owner gets an e-mail then).
        services.user_email_change_request(user=request.user, email=form.cleaned_data["email"])
        messages.success(
            request,
            f"Check your inbox at {form.cleaned_data['email']}: the change takes effect "
            "when you open the link we sent there.",
        )
        return redirect("accounts:account")
    return _account_page(request, status=400, email_form=form)


@sensitive_post_parameters("old_password", "new_password1", "new_password2")
@login_required
@require_http_methods(["POST"])
def password_change(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = PasswordChangeForm(request.user, request.POST)
    if form.is_valid():
        user = form.save()
        update_session_auth_hash(request, user)
        messages.success(request, "Your password was changed.")
        return redirect("accounts:account")
    return _account_page(request, status=400, password_form=form)
