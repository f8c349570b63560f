from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from billing import selectors
from billing.models import CheckoutStatus, CreditPack, Plan
from billing.services import WebhookLockTimeout, billing_portal_url, checkout_start, stripe_event_record
from billing.services.payments import CheckoutRefused
from fluxsite.htmx import polled
from fluxsite.http import AuthenticatedHtmxHttpRequest, AuthenticatedHttpRequest
from fluxsite.integrations.errors import IntegrationError
from fluxsite.pagination import CURSOR_PARAM, cursor_page, render_list, wants_more
from fluxsite.ratelimits import log_allowed, rate_limited

logger = logging.getLogger(__name__)
LEDGER_PER_PAGE = 25

# Polling stops with this status (htmx's "stop polling" code).
FINISHED_CHECKOUT = (
    CheckoutStatus.PAID,
    CheckoutStatus.FAILED,
    CheckoutStatus.EXPIRED,
    CheckoutStatus.REFUNDED,
)


@login_required
@require_GET
def overview(request: AuthenticatedHtmxHttpRequest) -> HttpResponse:
    page = cursor_page(
        selectors.ledger_for_user(request.user),
        ordering=selectors.LEDGER_ORDERING,
        cursor=request.GET.get(CURSOR_PARAM),
        per_page=LEDGER_PER_PAGE,
        target="ledger-rows",
        label="Older entries",
    )
    rows = [(entry, *selectors.entry_source(entry)) for entry in page.object_list]
    if wants_more(request):  # the next rows only: none of the page's charts and summaries
        return render_list(request, "billing/overview.html", {"page": page, "rows": rows})
    context = {
        "page": page,
        "rows": rows,
        "subscription": selectors.subscription_for_user(request.user),
        "packs": CreditPack.objects.filter(active=True),
        "plans": Plan.objects.filter(active=True),
        "bars": selectors.spend_by_day(request.user),
        "chart_width": selectors.CHART_WIDTH,
        "chart_height": selectors.CHART_HEIGHT,
        "summary": selectors.spend_summary(request.user),
        "has_customer": hasattr(request.user, "stripe_customer"),
    }
    return render(request, "billing/overview.html", context)


@require_GET
def pricing(request: HttpRequest) -> HttpResponse:
    return render(request, "billing/pricing.html", selectors.price_list())


def _start_checkout(
    request: AuthenticatedHttpRequest, *, pack: CreditPack | None = None, plan: Plan | None = None
) -> HttpResponse:
    try:
        url = checkout_start(user=request.user, pack=pack, plan=plan)
    except CheckoutRefused as exc:
        messages.error(request, str(exc))
        return redirect("billing:overview")
    except IntegrationError as exc:
        logger.warning("checkout failed: %s", exc.detail or exc)
        messages.error(request, f"Payment could not be started: {exc.hint}")
        return redirect("billing:overview")
    return HttpResponseRedirect(url)


@login_required
@require_POST
@rate_limited("checkout")
def checkout_pack(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return _start_checkout(request, pack=get_object_or_404(CreditPack, pk=pk, active=True))


@login_required
@require_POST
@rate_limited("checkout")
def checkout_plan(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return _start_checkout(request, plan=get_object_or_404(Plan, pk=pk, active=True))


@login_required
@require_POST
def portal(request: AuthenticatedHttpRequest) -> HttpResponse:
    try:
        url = billing_portal_url(user=request.user)
    except CheckoutRefused as exc:
        messages.error(request, str(exc))
        return redirect("billing:overview")
    except IntegrationError as exc:
        logger.warning("billing portal failed: %s", exc.detail or exc)
        messages.error(request, f"The billing portal could not be opened: {exc.hint}")
        return redirect("billing:overview")
    return HttpResponseRedirect(url)


@login_required
@require_GET
def checkout_success(request: AuthenticatedHtmxHttpRequest) -> HttpResponse:
    """Grants nothing: the webhook does. This page only waits, politely, until it has."""
    checkout = selectors.get_checkout_for_user(request.user, request.GET.get("session_id", ""))
    finished = checkout.status in FINISHED_CHECKOUT
    context = {
        "checkout": checkout,
        "finished": finished,
        "balance": selectors.balance_for_user(request.user),
    }
    if request.htmx:
        return polled(
            render(request, "billing/checkout_success.html#status", context),
            finished=finished,
            credits_changed=True,
        )
    return render(request, "billing/checkout_success.html", context)


@login_required
@require_GET
def balance_pill(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The balance shown in the navigation, refreshed when a `credits-changed` event fires: read from
    the wallet row, and the layout's cached copy forgotten so the next page agrees."""
    selectors.balance_shown_forget(request.user.pk)
    return render(
        request, "partials/_balance_pill.html", {"credit_balance": selectors.balance_for_user(request.user)}
    )


@csrf_exempt  # Stripe cannot send our CSRF token; the signature on the raw body authenticates it.
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    try:
        _event, created = stripe_event_record(
            payload=request.body, sig_header=request.headers.get("Stripe-Signature", "")
        )
    except (IntegrationError, ValueError) as exc:
        if log_allowed("webhook_refusal_log"):
            logger.warning("stripe webhook refused: %s", getattr(exc, "detail", "") or exc)
        return HttpResponseBadRequest("invalid signature", content_type="text/plain")
    except WebhookLockTimeout:
        return HttpResponse(
            "busy, retry", status=503, content_type="text/plain", headers={"Retry-After": "5"}
        )
    except ImproperlyConfigured as exc:
        # No STRIPE_WEBHOOK_SECRET: our fault, not Stripe's; 503 so it retries once it is set (check E002).
        logger.error("cannot verify a Stripe webhook: %s", exc)
        return HttpResponse(
            "webhook secret not configured",
            status=503,
            content_type="text/plain",
            headers={"Retry-After": "60"},
        )
    return HttpResponse("ok" if created else "duplicate", content_type="text/plain")
