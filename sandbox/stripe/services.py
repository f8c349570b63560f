"""What the Stripe stand-in does: create and change objects, record events, deliver webhooks.

The views only parse HTTP; everything that changes state is here, so the API views, the
hosted checkout page and the portal page share one implementation.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import httpx
from django.conf import settings
from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from sandbox.faults import fault_take
from sandbox.models import FaultKind
from sandbox.stripe.models import StripeEvent, StripeRecord
from sandbox.stripe.seed import SEED_IDS, seed_records

logger = logging.getLogger(__name__)

# Pauses between webhook delivery attempts (seconds); real Stripe retries for days.
WEBHOOK_RETRY_DELAYS: tuple[float, ...] = (0.2, 0.5, 1.0)
WEBHOOK_FAULT_KINDS = (FaultKind.DROP_WEBHOOK, FaultKind.DUPLICATE_WEBHOOK, FaultKind.BAD_SIGNATURE)


class StripeSandboxError(Exception):
    """An API error, rendered by the views as {"error": {type, code, message, param}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param

    def body(self) -> dict[str, Any]:
        return {"error": {"type": self.type, "code": self.code, "message": self.message, "param": self.param}}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def now_ts() -> int:
    return int(time.time())


def add_month(ts: int) -> int:
    """The same day next month (clamped), as Stripe's monthly billing cycle anchors do."""
    d = datetime.fromtimestamp(ts, tz=UTC)
    year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    day = min(d.day, calendar.monthrange(year, month)[1])
    return int(d.replace(year=year, month=month, day=day).timestamp())


# --- Objects --------------------------------------------------------------------------------------
def record_get(
    *, object_id: str, object_type: str, param: str = "id", for_update: bool = False
) -> StripeRecord:
    """Load one object or raise Stripe's 404 "No such ..." error."""
    if object_id in SEED_IDS:
        seed_records(StripeRecord)
    qs = StripeRecord.objects.select_for_update() if for_update else StripeRecord.objects
    record = qs.filter(pk=object_id, object=object_type).first()
    if record is None:
        noun = object_type.rsplit(".", 1)[-1].replace("_", " ")
        raise StripeSandboxError(404, f"No such {noun}: '{object_id}'", code="resource_missing", param=param)
    return record


def record_save(*, data: dict[str, Any], internal: dict[str, Any] | None = None) -> StripeRecord:
    return StripeRecord.objects.update_or_create(
        pk=data["id"],
        defaults={
            "object": data["object"],
            "data": data,
            **({"internal": internal} if internal is not None else {}),
        },
    )[0]


def record_list(
    *, object_type: str, limit: int = 10, filters: dict[str, Any] | None = None
) -> dict[str, Any]:
    if object_type == "price":
        seed_records(StripeRecord)
    rows = [r.data for r in StripeRecord.objects.filter(object=object_type)]
    for key, value in (filters or {}).items():
        rows = [r for r in rows if r.get(key) == value]
    return {
        "object": "list",
        "url": f"/v1/{object_type}s",
        "has_more": len(rows) > limit,
        "data": rows[:limit],
    }


def customer_create(
    *, email: str | None, name: str | None = None, metadata: dict[str, str] | None = None
) -> dict:
    data: dict[str, Any] = {
        "id": new_id("cus"),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": now_ts(),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "email": email,
        "invoice_prefix": secrets.token_hex(4).upper(),
        "livemode": False,
        "metadata": metadata or {},
        "name": name,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
    }
    record_save(data=data)
    return data


def product_create(*, name: str, metadata: dict[str, str] | None = None) -> dict:
    data = _product(name=name, metadata=metadata)
    record_save(data=data)
    return data


def _product(*, name: str, metadata: dict[str, str] | None) -> dict:
    from sandbox.stripe.seed import product_json

    return product_json(new_id("prod"), name, created=now_ts(), metadata=metadata)


def price_create(*, params: dict[str, Any]) -> dict:
    from sandbox.stripe.seed import price_json

    currency = params.get("currency")
    if not currency:
        raise StripeSandboxError(
            400, "Missing required param: currency.", code="parameter_missing", param="currency"
        )
    try:
        amount = int(params.get("unit_amount", ""))
    except ValueError:
        raise StripeSandboxError(
            400, "Invalid integer: unit_amount", code="parameter_invalid_integer", param="unit_amount"
        )
    product = params.get("product")
    if product:
        record_get(object_id=product, object_type="product", param="product")
    elif isinstance(params.get("product_data"), dict) and params["product_data"].get("name"):
        product = product_create(name=params["product_data"]["name"])["id"]
    else:
        raise StripeSandboxError(
            400, "Missing required param: product.", code="parameter_missing", param="product"
        )
    interval = (
        (params.get("recurring") or {}).get("interval") if isinstance(params.get("recurring"), dict) else None
    )
    data = price_json(
        new_id("price"),
        product,
        amount,
        interval,
        params.get("nickname"),
        params.get("metadata") or {},
        currency=currency,
        created=now_ts(),
        lookup_key=params.get("lookup_key"),
    )
    record_save(data=data)
    return data


# --- Checkout Sessions ---------------------------------------------------------------------------
def checkout_session_create(*, params: dict[str, Any], hosted_url_base: str) -> dict:
    """Validate like Stripe does and store an open session; `hosted_url_base` + id + "/" is its page."""
    mode = params.get("mode")
    if mode not in ("payment", "subscription"):
        raise StripeSandboxError(
            400,
            "Invalid mode: must be one of payment or subscription (setup is not simulated).",
            code="parameter_invalid_empty" if not mode else "parameter_unknown",
            param="mode",
        )
    if not params.get("success_url"):
        raise StripeSandboxError(
            400, "Missing required param: success_url.", code="parameter_missing", param="success_url"
        )
    if params.get("customer") and params.get("customer_email"):
        raise StripeSandboxError(
            400,
            "You may only specify one of these parameters: customer, customer_email.",
            param="customer_email",
        )
    raw_items = params.get("line_items")
    if not isinstance(raw_items, list) or not raw_items:
        raise StripeSandboxError(
            400, "Missing required param: line_items.", code="parameter_missing", param="line_items"
        )
    line_items = []
    currency = None
    for i, item in enumerate(raw_items):
        price = record_get(
            object_id=str((item or {}).get("price", "")), object_type="price", param=f"line_items[{i}][price]"
        ).data
        if mode == "payment" and price["type"] == "recurring":
            raise StripeSandboxError(
                400,
                "You specified `payment` mode but passed a recurring price. Either switch "
                "to `subscription` mode or use only one-time prices.",
                param=f"line_items[{i}][price]",
            )
        try:
            quantity = int(item.get("quantity", 1))
        except ValueError:
            raise StripeSandboxError(
                400,
                "Invalid integer: quantity",
                code="parameter_invalid_integer",
                param=f"line_items[{i}][quantity]",
            )
        currency = currency or price["currency"]
        line_items.append(
            {
                "id": new_id("li"),
                "object": "item",
                "price": price,
                "quantity": quantity,
                "amount_subtotal": price["unit_amount"] * quantity,
                "amount_total": price["unit_amount"] * quantity,
                "currency": price["currency"],
                "description": price.get("nickname"),
            }
        )
    if mode == "subscription" and not any(li["price"]["type"] == "recurring" for li in line_items):
        raise StripeSandboxError(
            400,
            "You must provide at least one recurring price in `subscription` mode when using prices.",
            param="line_items",
        )
    customer = params.get("customer")
    if customer:
        record_get(object_id=customer, object_type="customer", param="customer")
    session_id = f"cs_test_{secrets.token_hex(24)}"
    total = sum(li["amount_total"] for li in line_items)
    created = now_ts()
    data = {
        "id": session_id,
        "object": "checkout.session",
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": total,
        "amount_total": total,
        "billing_address_collection": None,
        "cancel_url": params.get("cancel_url"),
        "client_reference_id": params.get("client_reference_id"),
        "created": created,
        "currency": currency,
        "customer": customer or None,
        "customer_creation": None if customer else ("always" if mode == "subscription" else "if_required"),
        "customer_details": None,
        "customer_email": params.get("customer_email"),
        "expires_at": created + 24 * 3600,
        "invoice": None,
        "livemode": False,
        "locale": None,
        "metadata": params.get("metadata") or {},
        "mode": mode,
        "payment_intent": None,
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "status": "open",
        "subscription": None,
        "success_url": params["success_url"],
        "ui_mode": "hosted",
        "url": f"{hosted_url_base}{session_id}/",
    }
    internal = {
        "line_items": line_items,
        "payment_intent_data": params.get("payment_intent_data") or {},
        "subscription_data": params.get("subscription_data") or {},
    }
    record_save(data=data, internal=internal)
    return data


def checkout_session_expire(*, session_id: str) -> dict:
    with transaction.atomic():
        record = record_get(
            object_id=session_id, object_type="checkout.session", param="session", for_update=True
        )
        if record.data["status"] != "open":
            raise StripeSandboxError(
                400, 'Only Checkout Sessions with a status in ["open"] can be expired.', param="session"
            )
        record.data.update(status="expired", url=None)
        record.save(update_fields=["data", "updated_at"])
        events = [event_record(type="checkout.session.expired", obj=record.data)]
    webhooks_send_after_commit(events)
    return record.data


def success_url_for(session: dict) -> str:
    return session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"])


def checkout_session_pay(*, session_id: str, payment_fails: bool = False) -> dict:
    """The buyer pressed Pay on the hosted page: settle the session and send its events.

    With `payment_fails`, the session completes unpaid (a delayed payment method) and then
    fails, as checkout.session.async_payment_failed. Paying a completed session again is a no-op.
    """
    with transaction.atomic():
        record = record_get(object_id=session_id, object_type="checkout.session", for_update=True)
        session = record.data
        if session["status"] == "complete":
            return session
        if session["status"] != "open":
            raise StripeSandboxError(
                400, "This Checkout Session is no longer active.", code="checkout_session_expired"
            )
        internal = record.internal
        email = session.get("customer_email") or "buyer@example.com"
        customer_id = session.get("customer")
        if customer_id is None and session["mode"] == "subscription":
            customer_id = customer_create(email=email)["id"]
        else:
            email = (
                record_get(object_id=customer_id, object_type="customer").data.get("email") or email
                if customer_id
                else email
            )
        session.update(
            customer=customer_id,
            status="complete",
            customer_details={
                "email": email,
                "name": None,
                "phone": None,
                "address": None,
                "tax_exempt": "none",
                "tax_ids": [],
            },
        )
        events: list[StripeEvent] = []
        if payment_fails:
            session["payment_status"] = "unpaid"
            record.save(update_fields=["data", "updated_at"])
            events.append(event_record(type="checkout.session.completed", obj=session))
            events.append(event_record(type="checkout.session.async_payment_failed", obj=session))
        elif session["mode"] == "payment":
            pi_metadata = (internal.get("payment_intent_data") or {}).get("metadata") or {}
            pi = _payment_intent_and_charge(
                amount=session["amount_total"],
                currency=session["currency"],
                customer=customer_id,
                metadata=pi_metadata,
                description=None,
            )
            session.update(payment_status="paid", payment_intent=pi["id"])
            record.save(update_fields=["data", "updated_at"])
            events.append(event_record(type="checkout.session.completed", obj=session))
        else:
            sub, invoice = _subscription_create(session=session, internal=internal, customer=customer_id)
            session.update(payment_status="paid", subscription=sub["id"], invoice=invoice["id"])
            record.save(update_fields=["data", "updated_at"])
            events.append(event_record(type="checkout.session.completed", obj=session))
            events.append(event_record(type="customer.subscription.created", obj=sub))
            events.append(event_record(type="invoice.paid", obj=invoice))
    webhooks_send_after_commit(events)
    return session


def _payment_intent_and_charge(
    *, amount: int, currency: str, customer: str | None, metadata: dict[str, str], description: str | None
) -> dict:
    created = now_ts()
    pi_id, ch_id = new_id("pi"), new_id("ch")
    # Stripe copies the payment intent's metadata onto the charge it creates.
    charge = {
        "id": ch_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": 0,
        "captured": True,
        "created": created,
        "currency": currency,
        "customer": customer,
        "description": description,
        "disputed": False,
        "livemode": False,
        "metadata": dict(metadata),
        "paid": True,
        "payment_intent": pi_id,
        "refunded": False,
        "status": "succeeded",
        "receipt_url": None,
        "failure_code": None,
        "failure_message": None,
    }
    pi = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount,
        "capture_method": "automatic",
        "created": created,
        "currency": currency,
        "customer": customer,
        "description": description,
        "latest_charge": ch_id,
        "livemode": False,
        "metadata": dict(metadata),
        "payment_method_types": ["card"],
        "status": "succeeded",
    }
    record_save(data=charge)
    record_save(data=pi)
    return pi


def _invoice(*, sub: dict, billing_reason: str, period_start: int, period_end: int) -> dict:
    item = sub["items"]["data"][0]
    price = item["price"]
    amount = price["unit_amount"] * item["quantity"]
    pi = _payment_intent_and_charge(
        amount=amount,
        currency=price["currency"],
        customer=sub["customer"],
        metadata={},
        description="Subscription creation"
        if billing_reason == "subscription_create"
        else "Subscription update",
    )
    in_id = new_id("in")
    created = now_ts()
    invoice = {
        "id": in_id,
        "object": "invoice",
        "amount_due": amount,
        "amount_paid": amount,
        "amount_remaining": 0,
        "attempt_count": 1,
        "attempted": True,
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
        "created": created,
        "currency": price["currency"],
        "customer": sub["customer"],
        "livemode": False,
        "metadata": {},
        "number": f"SANDBOX-{secrets.token_hex(3).upper()}",
        # Since API version 2025-03-31 the subscription is found here, not at invoice.subscription.
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": sub["metadata"], "subscription": sub["id"]},
        },
        "lines": {
            "object": "list",
            "has_more": False,
            "url": f"/v1/invoices/{in_id}/lines",
            "data": [
                {
                    "id": new_id("il"),
                    "object": "line_item",
                    "amount": amount,
                    "currency": price["currency"],
                    "description": f"{item['quantity']} × {price.get('nickname') or price['product']}",
                    "invoice": in_id,
                    "livemode": False,
                    "metadata": {},
                    "quantity": item["quantity"],
                    "period": {"start": period_start, "end": period_end},
                    "pricing": {
                        "type": "price_details",
                        "price_details": {"price": price["id"], "product": price["product"]},
                        "unit_amount_decimal": price["unit_amount_decimal"],
                    },
                    "parent": {
                        "type": "subscription_item_details",
                        "invoice_item_details": None,
                        "subscription_item_details": {
                            "subscription": sub["id"],
                            "subscription_item": item["id"],
                            "proration": False,
                            "invoice_item": None,
                        },
                    },
                }
            ],
        },
        "period_start": period_start,
        "period_end": period_end,
        "status": "paid",
        "status_transitions": {
            "finalized_at": created,
            "paid_at": created,
            "voided_at": None,
            "marked_uncollectible_at": None,
        },
        "subtotal": amount,
        "total": amount,
    }
    record_save(data=invoice)
    # Since API version 2025-03-31.basil an invoice's payments are their own objects: `payments` is
    # includable (absent unless expanded) and GET /v1/invoice_payments?invoice=... lists them.
    # Shape: stripe/openapi fixtures3.json `invoice_payment` (sandbox/vendor/stripe/README.md).
    record_save(
        data={
            "id": new_id("inpay"),
            "object": "invoice_payment",
            "amount_paid": amount,
            "amount_requested": amount,
            "created": created,
            "currency": price["currency"],
            "invoice": in_id,
            "is_default": True,
            "livemode": False,
            "payment": {"type": "payment_intent", "payment_intent": pi["id"]},
            "status": "paid",
            "status_transitions": {"canceled_at": None, "paid_at": created},
        }
    )
    return invoice


def invoice_payments_list(*, invoice: str | None, status: str | None, limit: int) -> dict[str, Any]:
    """GET /v1/invoice_payments: filtered by invoice and status, newest first, as Stripe lists them."""
    filters = {k: v for k, v in (("invoice", invoice), ("status", status)) if v}
    listing = record_list(object_type="invoice_payment", limit=limit, filters=filters)
    return {**listing, "url": "/v1/invoice_payments"}


def invoice_get(*, invoice_id: str, expand: list[str]) -> dict[str, Any]:
    """GET /v1/invoices/{id}; `payments` only when asked for with expand[]=payments (it is includable)."""
    data = dict(record_get(object_id=invoice_id, object_type="invoice").data)
    if "payments" in expand:
        listing = invoice_payments_list(invoice=invoice_id, status=None, limit=10)
        data["payments"] = {**listing, "url": f"/v1/invoices/{invoice_id}/payments"}
    return data


def _subscription_create(*, session: dict, internal: dict, customer: str) -> tuple[dict, dict]:
    start = now_ts()
    end = add_month(start)
    sub_id = new_id("sub")
    line = next(li for li in internal["line_items"] if li["price"]["type"] == "recurring")
    sub = {
        "id": sub_id,
        "object": "subscription",
        "billing_cycle_anchor": start,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "collection_method": "charge_automatically",
        "created": start,
        "currency": line["price"]["currency"],
        "customer": customer,
        "ended_at": None,
        "items": {
            "object": "list",
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={sub_id}",
            "data": [
                {
                    "id": new_id("si"),
                    "object": "subscription_item",
                    "created": start,
                    "current_period_start": start,
                    "current_period_end": end,
                    "metadata": {},
                    "price": line["price"],
                    "quantity": line["quantity"],
                    "subscription": sub_id,
                }
            ],
        },
        "latest_invoice": None,
        "livemode": False,
        "metadata": (internal.get("subscription_data") or {}).get("metadata") or {},
        "start_date": start,
        "status": "active",
    }
    invoice = _invoice(sub=sub, billing_reason="subscription_create", period_start=start, period_end=end)
    sub["latest_invoice"] = invoice["id"]
    record_save(data=sub)
    return sub, invoice


def subscription_renew(*, subscription_id: str) -> dict:
    """Bill the next period now: advance the period and send invoice.paid (subscription_cycle)."""
    with transaction.atomic():
        record = record_get(object_id=subscription_id, object_type="subscription", for_update=True)
        sub = record.data
        if sub["status"] not in ("active", "past_due"):
            raise StripeSandboxError(400, f"A {sub['status']} subscription cannot be renewed.")
        item = sub["items"]["data"][0]
        start = item["current_period_end"]
        end = add_month(start)
        item.update(current_period_start=start, current_period_end=end)
        invoice = _invoice(sub=sub, billing_reason="subscription_cycle", period_start=start, period_end=end)
        sub["latest_invoice"] = invoice["id"]
        record.save(update_fields=["data", "updated_at"])
        events = [event_record(type="invoice.paid", obj=invoice)]
    webhooks_send_after_commit(events)
    return invoice


def subscription_cancel(*, subscription_id: str, at_period_end: bool) -> dict:
    """Cancel from the portal: at period end (customer.subscription.updated) or now (.deleted)."""
    with transaction.atomic():
        record = record_get(object_id=subscription_id, object_type="subscription", for_update=True)
        sub = record.data
        if sub["status"] == "canceled":
            return sub
        now = now_ts()
        if at_period_end:
            previous = {
                "cancel_at_period_end": sub["cancel_at_period_end"],
                "cancel_at": sub["cancel_at"],
                "canceled_at": sub["canceled_at"],
            }
            sub.update(
                cancel_at_period_end=True,
                cancel_at=sub["items"]["data"][0]["current_period_end"],
                canceled_at=now,
            )
            events = [
                event_record(type="customer.subscription.updated", obj=sub, previous_attributes=previous)
            ]
        else:
            sub.update(status="canceled", canceled_at=now, ended_at=now)
            events = [event_record(type="customer.subscription.deleted", obj=sub)]
        record.save(update_fields=["data", "updated_at"])
    webhooks_send_after_commit(events)
    return sub


def charge_refund(*, charge_id: str, amount: int | None) -> dict:
    """Refund part or all of a charge and send charge.refunded with the new amount_refunded."""
    with transaction.atomic():
        record = record_get(object_id=charge_id, object_type="charge", param="charge", for_update=True)
        charge = record.data
        remaining = charge["amount"] - charge["amount_refunded"]
        amount = remaining if amount is None else amount
        if amount <= 0 or amount > remaining:
            raise StripeSandboxError(
                400,
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})"
                if amount > 0
                else "Refund amount must be positive.",
                code="amount_too_large" if amount > 0 else "parameter_invalid_integer",
                param="amount",
            )
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        record.save(update_fields=["data", "updated_at"])
        events = [event_record(type="charge.refunded", obj=charge, previous_attributes=previous)]
    webhooks_send_after_commit(events)
    return charge


def billing_portal_session_create(*, customer: str, return_url: str | None, portal_url_base: str) -> dict:
    record_get(object_id=customer, object_type="customer", param="customer")
    bps_id = new_id("bps")
    data = {
        "id": bps_id,
        "object": "billing_portal.session",
        "configuration": "bpc_sandbox",
        "created": now_ts(),
        "customer": customer,
        "flow": None,
        "livemode": False,
        "locale": None,
        "on_behalf_of": None,
        "return_url": return_url,
        "url": f"{portal_url_base}{bps_id}/",
    }
    record_save(data=data)
    return data


def subscriptions_for_customer(*, customer: str) -> list[dict]:
    return [
        r.data for r in StripeRecord.objects.filter(object="subscription") if r.data["customer"] == customer
    ]


# --- Events and webhooks -------------------------------------------------------------------------
def event_record(*, type: str, obj: dict, previous_attributes: dict | None = None) -> StripeEvent:
    evt_id = new_id("evt")
    data: dict[str, Any] = {"object": json.loads(json.dumps(obj))}  # a snapshot, not a live reference
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    envelope = {
        "id": evt_id,
        "object": "event",
        "api_version": settings.STRIPE_API_VERSION,
        "created": now_ts(),
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type,
    }
    return StripeEvent.objects.create(id=evt_id, type=type, data=envelope)


def webhook_url() -> str:
    # Read at send time: tests move SITE_URL to their live server.
    return settings.SANDBOX_STRIPE_WEBHOOK_URL or f"{settings.SITE_URL}/billing/webhooks/stripe/"


def webhook_signature_header(*, payload: str, secret: str, timestamp: int | None = None) -> str:
    timestamp = now_ts() if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signature}"


def webhooks_send_after_commit(events: Iterable[StripeEvent]) -> None:
    event_ids = [e.id for e in events]
    if event_ids:
        transaction.on_commit(lambda: webhooks_send_in_background(event_ids=event_ids))


def webhooks_send_in_background(*, event_ids: list[str]) -> threading.Thread:
    """Deliver from a daemon thread, as Stripe delivers after the API call has returned."""
    thread = threading.Thread(
        target=_deliver_batch, kwargs={"event_ids": event_ids}, daemon=True, name="sandbox-stripe-webhooks"
    )
    thread.start()
    return thread


def _deliver_batch(*, event_ids: list[str]) -> None:
    try:
        delay = settings.SANDBOX_WEBHOOK_DELAY_SECONDS
        if delay:
            time.sleep(delay)
        if fault_take(service="stripe", operation="webhook", kinds=(FaultKind.REORDER_WEBHOOKS,)):
            event_ids = list(reversed(event_ids))
        for event_id in event_ids:
            event = StripeEvent.objects.filter(pk=event_id).first()
            if event is None:
                continue
            fault = fault_take(
                service="stripe", operation=f"webhook.{event.type}", kinds=WEBHOOK_FAULT_KINDS
            ) or fault_take(service="stripe", operation="webhook", kinds=WEBHOOK_FAULT_KINDS)
            kind = fault.kind if fault else None
            if kind == FaultKind.DROP_WEBHOOK:
                logger.info("sandbox stripe: dropped %s (fault)", event_id)
                continue
            copies = 2 if kind == FaultKind.DUPLICATE_WEBHOOK else 1
            for _ in range(copies):
                _deliver_one(event=event, bad_signature=kind == FaultKind.BAD_SIGNATURE)
    except Exception:
        logger.exception("sandbox stripe: webhook delivery crashed")
    finally:
        # This thread opened its own database connection; leaving it open leaks it (and locks SQLite).
        connections.close_all()


def _deliver_one(*, event: StripeEvent, bad_signature: bool) -> bool:
    payload = json.dumps(event.data, indent=2)
    secret = settings.STRIPE_WEBHOOK_SECRET
    if bad_signature:
        secret = "whsec_" + secrets.token_hex(16)
    url = webhook_url()
    status = None
    for attempt, pause in enumerate((0.0, *WEBHOOK_RETRY_DELAYS)):
        if pause:
            connections.close_all()  # hold no database session while waiting to retry
            time.sleep(pause)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": webhook_signature_header(payload=payload, secret=secret),
        }
        try:
            status = httpx.post(url, content=payload.encode(), headers=headers, timeout=10).status_code
        except httpx.HTTPError as exc:
            logger.info("sandbox stripe: webhook %s attempt %d failed: %s", event.id, attempt + 1, exc)
            status = None
        StripeEvent.objects.filter(pk=event.pk).update(
            delivery_attempts=F("delivery_attempts") + 1,
            last_delivery_status=status,
            **({"delivered_at": timezone.now()} if status and 200 <= status < 300 else {}),
        )
        if status is not None and 200 <= status < 300:
            return True
    return False


def events_list(*, type: str | None, limit: int, starting_after: str | None) -> dict:
    qs = StripeEvent.objects.order_by("-created_at", "-id")
    if type:
        # Stripe accepts a trailing wildcard: type=invoice.*
        qs = qs.filter(type__startswith=type[:-1]) if type.endswith("*") else qs.filter(type=type)
    rows = [e.data for e in qs]
    if starting_after:
        ids = [r["id"] for r in rows]
        rows = rows[ids.index(starting_after) + 1 :] if starting_after in ids else []
    return {"object": "list", "url": "/v1/events", "has_more": len(rows) > limit, "data": rows[:limit]}
