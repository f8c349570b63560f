"""HTTP face of the Stripe stand-in: the v1 API the `stripe` SDK calls, the hosted pages, and controls.

API requests are form-encoded with bracketed keys (line_items[0][price], metadata[k]) and
answered in JSON shaped like Stripe's objects; errors are {"error": {type, code, message, param}}.
Docs: https://docs.stripe.com/api
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from sandbox.faults import HTTP_FAULT_KINDS, fault_delay, fault_take
from sandbox.models import FaultKind
from sandbox.stripe import services
from sandbox.stripe.models import IdempotentRequest, StripeEvent
from sandbox.stripe.services import StripeSandboxError

# --- Request parsing and responses -----------------------------------------------------------------
_BRACKETS = re.compile(r"\[([^\]]*)\]")


def parse_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Turn Stripe's bracketed form keys into nested dicts and lists (`a[0][b]=1` → {"a": [{"b": "1"}]})."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head = key.split("[", 1)[0]
        parts = [head, *_BRACKETS.findall(key[len(head) :])]
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # `expand[]=x`: append
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    break
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def _params(request: HttpRequest) -> dict[str, Any]:
    source = request.POST if request.method == "POST" else request.GET
    return parse_form([(k, v) for k, values in source.lists() for v in values])


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["Request-Id"] = f"req_{secrets.token_hex(7)}"
    response["Stripe-Version"] = settings.STRIPE_API_VERSION
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    return _json(
        StripeSandboxError(status, message, type=type, code=code, param=param).body(), status, headers
    )


# What each injected status looks like when Stripe itself answers it.
_FAULT_ERRORS: dict[int, dict[str, str | None]] = {
    400: {
        "type": "invalid_request_error",
        "code": "parameter_invalid",
        "message": "Invalid request (sandbox fault).",
    },
    401: {"type": "invalid_request_error", "code": None, "message": "Invalid API Key provided."},
    402: {"type": "card_error", "code": "card_declined", "message": "Your card was declined."},
    403: {
        "type": "invalid_request_error",
        "code": "secret_key_required",
        "message": "The provided key does not have access to this resource.",
    },
    404: {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "message": "No such object (sandbox fault).",
    },
    409: {
        "type": "invalid_request_error",
        "code": "lock_timeout",
        "message": "This object cannot be accessed right now because another API request or Stripe process is "
        "currently accessing it.",
    },
    429: {
        "type": "invalid_request_error",
        "code": "rate_limit",
        "message": "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
    },
}


def _fault_response(operation: str) -> JsonResponse | None:
    fault = fault_take(service="stripe", operation=operation, kinds=HTTP_FAULT_KINDS)
    if fault is None:
        return None
    if fault.kind in (FaultKind.TIMEOUT, FaultKind.SLOW):
        fault_delay(fault)
        return None
    status = fault.status or 500
    shape = _FAULT_ERRORS.get(
        status, {"type": "api_error", "code": None, "message": "An unknown error occurred (sandbox fault)."}
    )
    headers = {"Retry-After": str(fault.retry_after or 1)} if status in (429, 503) else None
    return _error(
        status, shape["message"] or "", type=shape["type"] or "api_error", code=shape["code"], headers=headers
    )


def _authenticated(request: HttpRequest) -> bool:
    header = request.headers.get("Authorization", "")
    key = ""
    if header.startswith("Bearer "):
        key = header[7:].strip()
    elif header.startswith("Basic "):
        try:
            key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            key = ""
    expected = settings.STRIPE_SECRET_KEY or ""
    return bool(key) and hmac.compare_digest(key.encode(), expected.encode())


def stripe_api(operation: str | dict[str, str]) -> Callable:
    """Authenticate, inject faults, honour Idempotency-Key on POSTs, and render StripeSandboxError.

    `operation` names the fault-injection operation, or maps HTTP method to it.
    """

    def decorate(view: Callable[..., dict[str, Any]]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not _authenticated(request):
                # Never echo the key that was sent.
                return _error(
                    401,
                    "Invalid API Key provided."
                    if request.headers.get("Authorization")
                    else "You did not provide an API key. You need to provide your API key in the "
                    "Authorization header, using Bearer auth.",
                )
            faulted = _fault_response(
                operation if isinstance(operation, str) else operation[request.method or ""]
            )
            if faulted is not None:
                return faulted
            key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
            digest = hashlib.sha256(request.path.encode() + b"\n" + request.body).hexdigest() if key else ""
            if key:
                stored = IdempotentRequest.objects.filter(key=key).first()
                if stored is not None:
                    if stored.params_digest != digest:
                        return _error(
                            400,
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with. Try using a key other than "
                            f"'{key}' if you meant to execute a different request.",
                            type="idempotency_error",
                        )
                    return _json(
                        stored.body,
                        stored.status,
                        {"Idempotent-Replayed": "true", "Original-Request": "req_replayed"},
                    )
            try:
                body = view(request, *args, **kwargs)
            except StripeSandboxError as exc:
                return _json(exc.body(), exc.status)
            if key:
                # A concurrent request with the same key may have stored first; its answer stands.
                with contextlib.suppress(IntegrityError), transaction.atomic():
                    IdempotentRequest.objects.create(
                        key=key, path=request.path, params_digest=digest, status=200, body=body
                    )
            return _json(body)

        return csrf_exempt(wrapper)

    return decorate


def _page_base(name: str) -> str:
    """Absolute URL prefix of a hosted page, on SITE_URL: the browser must reach it from outside."""
    return settings.SITE_URL + reverse(name, args=["x"])[:-2]


# --- API: customers, prices, products ----------------------------------------------------------------
@require_POST
@stripe_api("customers.create")
def customers_create(request: HttpRequest) -> dict:
    p = _params(request)
    return services.customer_create(
        email=p.get("email"), name=p.get("name"), metadata=p.get("metadata") or {}
    )


@require_GET
@stripe_api("customers.retrieve")
def customers_retrieve(request: HttpRequest, object_id: str) -> dict:
    return services.record_get(object_id=object_id, object_type="customer").data


@require_http_methods(["GET", "POST"])
@stripe_api({"GET": "prices.list", "POST": "prices.create"})
def prices(request: HttpRequest) -> dict:
    if request.method == "POST":
        return services.price_create(params=_params(request))
    p = _params(request)
    filters = {k: p[k] for k in ("product", "currency", "type") if p.get(k)}
    if "active" in p:
        filters["active"] = p["active"] == "true"
    return services.record_list(object_type="price", limit=int(p.get("limit", 10)), filters=filters)


@require_http_methods(["GET", "POST"])
@stripe_api({"GET": "prices.retrieve", "POST": "prices.update"})
def prices_detail(request: HttpRequest, object_id: str) -> dict:
    record = services.record_get(object_id=object_id, object_type="price")
    if request.method == "POST":
        p = _params(request)
        if "active" in p:
            record.data["active"] = p["active"] == "true"
        for field in ("nickname", "lookup_key"):
            if field in p:
                record.data[field] = p[field] or None
        if "metadata" in p:
            record.data["metadata"] = {**record.data["metadata"], **(p["metadata"] or {})}
        record.save(update_fields=["data", "updated_at"])
    return record.data


@require_POST
@stripe_api("products.create")
def products_create(request: HttpRequest) -> dict:
    p = _params(request)
    if not p.get("name"):
        raise StripeSandboxError(400, "Missing required param: name.", code="parameter_missing", param="name")
    return services.product_create(name=p["name"], metadata=p.get("metadata") or {})


def _retrieve(object_type: str, operation: str) -> Callable[..., HttpResponse]:
    @require_GET
    @stripe_api(operation)
    def view(request: HttpRequest, object_id: str) -> dict:
        return services.record_get(object_id=object_id, object_type=object_type).data

    return view


subscriptions_retrieve = _retrieve("subscription", "subscriptions.retrieve")


@require_GET
@stripe_api("invoices.retrieve")
def invoices_retrieve(request: HttpRequest, object_id: str) -> dict:
    expand = _params(request).get("expand") or []
    return services.invoice_get(invoice_id=object_id, expand=expand if isinstance(expand, list) else [expand])


@require_GET
@stripe_api("invoice_payments.list")
def invoice_payments_list(request: HttpRequest) -> dict:
    p = _params(request)
    try:
        limit = min(max(int(p.get("limit", 10)), 1), 100)
    except ValueError:
        raise StripeSandboxError(
            400, "Invalid integer: limit", code="parameter_invalid_integer", param="limit"
        )
    return services.invoice_payments_list(invoice=p.get("invoice"), status=p.get("status"), limit=limit)


payment_intents_retrieve = _retrieve("payment_intent", "payment_intents.retrieve")
charges_retrieve = _retrieve("charge", "charges.retrieve")


# --- API: checkout, portal, events ---------------------------------------------------------------
@require_POST
@stripe_api("checkout.sessions.create")
def checkout_sessions_create(request: HttpRequest) -> dict:
    return services.checkout_session_create(
        params=_params(request), hosted_url_base=_page_base("sandbox:stripe:checkout")
    )


@require_GET
@stripe_api("checkout.sessions.retrieve")
def checkout_sessions_retrieve(request: HttpRequest, object_id: str) -> dict:
    return services.record_get(object_id=object_id, object_type="checkout.session", param="session").data


@require_POST
@stripe_api("checkout.sessions.expire")
def checkout_sessions_expire(request: HttpRequest, object_id: str) -> dict:
    return services.checkout_session_expire(session_id=object_id)


@require_POST
@stripe_api("billing_portal.sessions.create")
def billing_portal_sessions_create(request: HttpRequest) -> dict:
    p = _params(request)
    if not p.get("customer"):
        raise StripeSandboxError(
            400, "Missing required param: customer.", code="parameter_missing", param="customer"
        )
    return services.billing_portal_session_create(
        customer=p["customer"],
        return_url=p.get("return_url"),
        portal_url_base=_page_base("sandbox:stripe:portal"),
    )


@require_GET
@stripe_api("events.list")
def events_list(request: HttpRequest) -> dict:
    p = _params(request)
    return services.events_list(
        type=p.get("type"), limit=min(int(p.get("limit", 10)), 100), starting_after=p.get("starting_after")
    )


@require_GET
@stripe_api("events.retrieve")
def events_retrieve(request: HttpRequest, object_id: str) -> dict:
    event = StripeEvent.objects.filter(pk=object_id).first()
    if event is None:
        raise StripeSandboxError(404, f"No such event: '{object_id}'", code="resource_missing", param="id")
    return event.data


# --- Hosted pages (what the buyer's browser sees) ---------------------------------------------------
def _cents(amount: int | None) -> str:
    amount = amount or 0
    return f"{amount // 100:,}.{amount % 100:02d}"


def _session_or_404(session_id: str) -> Any:
    try:
        return services.record_get(object_id=session_id, object_type="checkout.session")
    except StripeSandboxError:
        raise Http404("No such checkout session")


@require_GET
def checkout_page(request: HttpRequest, session_id: str) -> HttpResponse:
    record = _session_or_404(session_id)
    items = [
        {
            "description": li["description"] or li["price"]["id"],
            "quantity": li["quantity"],
            "amount": _cents(li["amount_total"]),
            "interval": (li["price"].get("recurring") or {}).get("interval"),
        }
        for li in record.internal.get("line_items", [])
    ]
    return render(
        request,
        "sandbox/stripe/checkout.html",
        {
            "session": record.data,
            "items": items,
            "total": _cents(record.data["amount_total"]),
            "currency": (record.data["currency"] or "").upper(),
        },
    )


@require_POST
def checkout_pay(request: HttpRequest, session_id: str) -> HttpResponse:
    _session_or_404(session_id)
    try:
        session = services.checkout_session_pay(
            session_id=session_id, payment_fails=request.POST.get("outcome") == "fail"
        )
    except StripeSandboxError as exc:
        return HttpResponseBadRequest(exc.message)
    return redirect(services.success_url_for(session))


@require_POST
def checkout_cancel(request: HttpRequest, session_id: str) -> HttpResponse:
    # Like Stripe: going back leaves the session open until it expires.
    session = _session_or_404(session_id).data
    return redirect(session.get("cancel_url") or reverse("sandbox:stripe:checkout", args=[session_id]))


def _portal_or_404(portal_id: str) -> dict:
    try:
        return services.record_get(object_id=portal_id, object_type="billing_portal.session").data
    except StripeSandboxError:
        raise Http404("No such portal session")


@require_GET
def portal_page(request: HttpRequest, portal_id: str) -> HttpResponse:
    portal = _portal_or_404(portal_id)
    subscriptions = [
        {
            "id": s["id"],
            "status": s["status"],
            "cancel_at_period_end": s["cancel_at_period_end"],
            "price": s["items"]["data"][0]["price"].get("nickname") or s["items"]["data"][0]["price"]["id"],
            "amount": _cents(s["items"]["data"][0]["price"]["unit_amount"]),
            "currency": s["currency"].upper(),
            "period_end": s["items"]["data"][0]["current_period_end"],
        }
        for s in services.subscriptions_for_customer(customer=portal["customer"])
    ]
    return render(request, "sandbox/stripe/portal.html", {"portal": portal, "subscriptions": subscriptions})


@require_POST
def portal_cancel(request: HttpRequest, portal_id: str, subscription_id: str) -> HttpResponse:
    portal = _portal_or_404(portal_id)
    if subscription_id not in {
        s["id"] for s in services.subscriptions_for_customer(customer=portal["customer"])
    }:
        raise Http404("No such subscription for this customer")
    services.subscription_cancel(
        subscription_id=subscription_id, at_period_end=request.POST.get("when") != "now"
    )
    return redirect(reverse("sandbox:stripe:portal", args=[portal_id]))


# --- Controls for tests and demos (sandbox mode only, like /sandbox/faults/) ---------------------------
@csrf_exempt
@require_POST
def subscription_renew(request: HttpRequest, subscription_id: str) -> HttpResponse:
    try:
        return _json(services.subscription_renew(subscription_id=subscription_id))
    except StripeSandboxError as exc:
        return _json(exc.body(), exc.status)


@csrf_exempt
@require_POST
def charge_refund(request: HttpRequest, charge_id: str) -> HttpResponse:
    raw = request.GET.get("amount") or request.POST.get("amount")
    try:
        amount = int(raw) if raw else None
        return _json(services.charge_refund(charge_id=charge_id, amount=amount))
    except ValueError:
        return _error(400, "Invalid integer: amount", code="parameter_invalid_integer", param="amount")
    except StripeSandboxError as exc:
        return _json(exc.body(), exc.status)
