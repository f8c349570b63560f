"""Stripe: the only module that imports the `stripe` SDK.

Every function builds a `stripe.StripeClient` at call time from settings (so tests and the
sandbox can move STRIPE_API_BASE), pins the API version, and turns every SDK failure into
`IntegrationError(service="stripe")`. Results are small frozen dataclasses or plain dicts,
never StripeObjects, so callers do not depend on the SDK.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import requests
import stripe
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables

from fluxsite.integrations.errors import Category, IntegrationError, category_for_status, redact

if TYPE_CHECKING:
    # The SDK's TypedDicts for request parameters: mypy then checks every key we send.
    from stripe.params import CustomerCreateParams, InvoicePaymentListParams
    from stripe.params.billing_portal import SessionCreateParams as PortalSessionCreateParams
    from stripe.params.checkout import SessionCreateParams as CheckoutSessionCreateParams

# Otherwise the SDK reports request timings to Stripe in a header and keeps state between calls.
stripe.enable_telemetry = False

SERVICE = "stripe"
WEBHOOK_TOLERANCE_SECONDS = 300
# No retries inside the SDK: our tasks retry with their own attempt counters, and an SDK retry
# would hide 409/5xx answers from them (the Idempotency-Key keeps our own retries safe).
MAX_NETWORK_RETRIES = 0

T = TypeVar("T")


@dataclass(frozen=True)
class CheckoutSession:
    """https://docs.stripe.com/api/checkout/sessions/object"""

    id: str
    url: str | None
    status: str | None  # open | complete | expired
    payment_status: str | None  # paid | unpaid | no_payment_required
    mode: str
    customer: str | None
    subscription: str | None
    payment_intent: str | None
    amount_total: int | None  # minor units
    currency: str | None
    client_reference_id: str | None
    metadata: dict[str, str] = field(default_factory=dict)


def _settings_checked(*names: str) -> None:
    missing = [name for name in names if not getattr(settings, name, None)]
    if missing:
        raise ImproperlyConfigured(f"Stripe needs these settings: {', '.join(missing)} (see .env.example).")


@sensitive_variables()
def _client() -> stripe.StripeClient:
    _settings_checked("STRIPE_SECRET_KEY", "STRIPE_API_BASE", "STRIPE_API_VERSION", "STRIPE_TIMEOUT_SECONDS")
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE},
        stripe_version=settings.STRIPE_API_VERSION,
        max_network_retries=MAX_NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
    )


def _is_timeout(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, requests.exceptions.Timeout | TimeoutError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


@sensitive_variables("secret")
def _error_from_stripe(exc: stripe.StripeError, *, operation: str) -> IntegrationError:
    """Map an SDK error to our one error type (never carrying the secret key)."""
    status = exc.http_status
    error = (exc.json_body or {}).get("error") if isinstance(exc.json_body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = exc.code or error.get("code")
    retry_after = None
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        category = Category.AUTHENTICATION
    elif isinstance(exc, stripe.RateLimitError):
        category = Category.RATE_LIMIT
        headers = exc.headers or {}
        raw_retry_after = headers.get("retry-after") or headers.get("Retry-After")
        try:
            retry_after = float(raw_retry_after) if raw_retry_after else None
        except ValueError:
            retry_after = None
    elif isinstance(exc, stripe.APIConnectionError):
        category = Category.TIMEOUT if _is_timeout(exc) else Category.NETWORK
    elif isinstance(exc, stripe.CardError | stripe.InvalidRequestError | stripe.IdempotencyError):
        category = Category.VALIDATION
    elif status is not None:
        # 409 arrives as a plain APIError; category_for_status makes it validation and 5xx service_error.
        category = category_for_status(status)
    else:
        category = Category.SERVICE_ERROR
    vendor_text = error.get("message") or exc.user_message or type(exc).__name__
    secret = settings.STRIPE_SECRET_KEY
    message = redact(
        f"Stripe {operation} failed" + (f" ({status})" if status else "") + f": {vendor_text}", secret
    )
    detail = redact(
        f"{type(exc).__name__} status={status} code={code} type={error.get('type')} "
        f"param={error.get('param')} message={vendor_text}",
        secret,
    )
    invalid = (
        [{"type": code or "", "field": error["param"], "description": vendor_text}]
        if error.get("param")
        else None
    )
    # Over a short cut-off, line breaks from the SDK's wrapped messages only make logs harder to read.
    return IntegrationError(
        service=SERVICE,
        category=category,
        message=message.replace("\n", " ")[:500],
        detail=detail,
        status=status,
        retry_after=retry_after,
        invalid_fields=invalid,
    )


def _call(operation: str, fn: Callable[[stripe.StripeClient], T]) -> T:
    client = _client()
    try:
        return fn(client)
    except stripe.StripeError as exc:
        raise _error_from_stripe(exc, operation=operation) from exc


def _id(value: Any) -> str | None:
    """An id, whether Stripe sent the id or the expanded object."""
    if value is None or isinstance(value, str):
        return value
    return getattr(value, "id", None) or (value.get("id") if isinstance(value, dict) else None)


def _plain(obj: Any) -> dict[str, Any]:
    # for_json: the SDK turns *_decimal fields into Decimal, which a JSONField cannot store.
    return obj.to_dict(recursive=True, for_json=True) if hasattr(obj, "to_dict") else dict(obj)


def _checkout_session(obj: Any) -> CheckoutSession:
    data = _plain(obj)
    return CheckoutSession(
        id=data["id"],
        url=data.get("url"),
        status=data.get("status"),
        payment_status=data.get("payment_status"),
        mode=data.get("mode", ""),
        customer=_id(data.get("customer")),
        subscription=_id(data.get("subscription")),
        payment_intent=_id(data.get("payment_intent")),
        amount_total=data.get("amount_total"),
        currency=data.get("currency"),
        client_reference_id=data.get("client_reference_id"),
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
    )


# --- Customers ---------------------------------------------------------------------------------------
def customer_create(*, email: str, user_id: int) -> str:
    """Create a customer for one of our users; returns its id (cus_...).

    https://docs.stripe.com/api/customers/create
    """
    params: CustomerCreateParams = {"email": email, "metadata": {"user_id": str(user_id)}}
    return _call("customers.create", lambda c: c.v1.customers.create(params=params)).id


# --- Checkout ----------------------------------------------------------------------------------------
def checkout_session_create(
    *,
    mode: str,
    price_id: str,
    customer_id: str | None,
    customer_email: str | None,
    client_reference_id: str,
    metadata: dict[str, str],
    success_url: str,
    cancel_url: str,
    idempotency_key: str,
) -> CheckoutSession:
    """Create a hosted Checkout Session for one price; send the buyer to `.url`.

    `metadata` goes on the session and also on the object that outlives it (the payment
    intent for `payment`, the subscription for `subscription`), because Stripe copies neither.
    https://docs.stripe.com/api/checkout/sessions/create
    """
    if mode not in ("payment", "subscription"):
        raise ValueError(f"mode must be payment or subscription, not {mode!r}")
    params: CheckoutSessionCreateParams = {
        "mode": mode,
        "line_items": [{"price": price_id, "quantity": 1}],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "client_reference_id": client_reference_id,
        "metadata": metadata,
    }
    if customer_id:
        params["customer"] = customer_id
    elif customer_email:
        params["customer_email"] = customer_email
    if mode == "payment":
        params["payment_intent_data"] = {"metadata": metadata}
    else:
        params["subscription_data"] = {"metadata": metadata}
    session = _call(
        "checkout.sessions.create",
        lambda c: c.v1.checkout.sessions.create(params=params, options={"idempotency_key": idempotency_key}),
    )
    return _checkout_session(session)


def checkout_session_retrieve(*, session_id: str) -> CheckoutSession:
    """https://docs.stripe.com/api/checkout/sessions/retrieve"""
    return _checkout_session(
        _call("checkout.sessions.retrieve", lambda c: c.v1.checkout.sessions.retrieve(session_id))
    )


def checkout_session_expire(*, session_id: str) -> CheckoutSession:
    """Expire an open session so it can no longer be paid; a non-open one raises validation.

    https://docs.stripe.com/api/checkout/sessions/expire
    """
    return _checkout_session(
        _call("checkout.sessions.expire", lambda c: c.v1.checkout.sessions.expire(session_id))
    )


# --- Billing portal ----------------------------------------------------------------------------------
def billing_portal_session_create(*, customer_id: str, return_url: str) -> str:
    """A one-time portal link (make one per visit); returns its URL.

    https://docs.stripe.com/api/customer_portal/sessions/create
    """
    params: PortalSessionCreateParams = {"customer": customer_id, "return_url": return_url}
    return _call(
        "billing_portal.sessions.create", lambda c: c.v1.billing_portal.sessions.create(params=params)
    ).url


# --- Reads (webhooks are only triggers: state is re-read from Stripe) ----------------------------------
def event_retrieve(*, event_id: str) -> dict:
    """https://docs.stripe.com/api/events/retrieve"""
    return _plain(_call("events.retrieve", lambda c: c.v1.events.retrieve(event_id)))


def subscription_retrieve(*, subscription_id: str) -> dict:
    """The subscription as a dict; period dates are on items.data[].current_period_start/end.

    https://docs.stripe.com/api/subscriptions/retrieve
    """
    return _plain(_call("subscriptions.retrieve", lambda c: c.v1.subscriptions.retrieve(subscription_id)))


def invoice_retrieve(*, invoice_id: str) -> dict:
    """The invoice as a dict; its subscription is at parent.subscription_details.subscription.

    https://docs.stripe.com/api/invoices/retrieve
    """
    return _plain(_call("invoices.retrieve", lambda c: c.v1.invoices.retrieve(invoice_id)))


def invoice_payment_intent_id(*, invoice_id: str) -> str | None:
    """The payment intent that paid an invoice, or None when no payment of it is paid.

    Since API version 2025-03-31.basil an invoice no longer carries its payment intent: `payments`
    is includable (absent from webhooks and plain retrieves unless expanded), and each payment is
    an InvoicePayment listed by GET /v1/invoice_payments?invoice=<id>.
    https://docs.stripe.com/api/invoice-payment/list
    https://docs.stripe.com/changelog/basil/2025-03-31/add-support-for-multiple-partial-payments-on-invoices
    """
    params: InvoicePaymentListParams = {"invoice": invoice_id, "status": "paid", "limit": 10}
    listing = _plain(_call("invoice_payments.list", lambda c: c.v1.invoice_payments.list(params=params)))
    for payment in listing.get("data") or []:
        inner = payment.get("payment") or {}
        if (
            payment.get("status") == "paid"
            and inner.get("type") == "payment_intent"
            and inner.get("payment_intent")
        ):
            return _id(inner["payment_intent"])
    return None


# --- Webhooks ----------------------------------------------------------------------------------------
@sensitive_variables()
def webhook_construct_event(*, payload: bytes, sig_header: str) -> dict:
    """Verify a webhook's Stripe-Signature on the raw body and return the event as a plain dict.

    A wrong signature, a timestamp older than 5 minutes, or a body that is not an event raises
    IntegrationError(category=validation, retryable=False).
    https://docs.stripe.com/webhooks#verify-official-libraries
    """
    _settings_checked("STRIPE_WEBHOOK_SECRET")
    try:
        event = stripe.Webhook.construct_event(
            payload, sig_header, settings.STRIPE_WEBHOOK_SECRET, tolerance=WEBHOOK_TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError as exc:
        raise IntegrationError(
            service=SERVICE,
            category=Category.VALIDATION,
            retryable=False,
            message="The Stripe webhook signature is invalid or too old.",
            detail=str(exc)[:300],
        ) from exc
    except (
        ValueError,
        UnicodeDecodeError,
        KeyError,
        TypeError,
    ) as exc:  # json.JSONDecodeError is a ValueError
        raise IntegrationError(
            service=SERVICE,
            category=Category.VALIDATION,
            retryable=False,
            message="The Stripe webhook body is not a valid event.",
            detail=f"{type(exc).__name__}: {exc}"[:300],
        ) from exc
    data = _plain(event)
    if not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str):
        raise IntegrationError(
            service=SERVICE,
            category=Category.VALIDATION,
            retryable=False,
            message="The Stripe webhook body is not a valid event.",
            detail=json.dumps({k: data.get(k) for k in ("id", "type", "object")})[:300],
        )
    return data
