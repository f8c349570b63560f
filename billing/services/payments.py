"""Stripe payments: Checkout, the billing portal, and webhook events turned into ledger entries.

Webhooks are only triggers (pretix's rule): the view verifies and stores the event, a task
calls stripe_event_process(), and every grant is keyed by a Stripe object id, so duplicates,
retries and out-of-order deliveries are harmless:
- a pack purchase by its Checkout Session id ("stripe:checkout:<cs_id>"), granted only once the
  session says payment_status == "paid" (checkout.session.completed or async_payment_succeeded);
- a subscription allowance by its invoice id ("stripe:invoice:<in_id>");
- a refund by charge id and cumulative refunded amount, taking back only the difference.
Subscription state is never taken from the event body: it is re-read with subscription_retrieve(),
so whichever event arrives last, the stored state is Stripe's current one.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F, Sum
from django.urls import reverse
from django.utils import timezone

from billing.models import (
    CheckoutRecord,
    CheckoutStatus,
    CreditEntry,
    CreditKind,
    CreditPack,
    InvoiceGrant,
    Plan,
    StripeCustomer,
    StripeEvent,
    StripeEventStatus,
    Subscription,
    Wallet,
)
from billing.services.ledger import credits_grant, credits_take_back
from fluxsite.integrations import stripe_client

if TYPE_CHECKING:  # the user model is a type here; billing sits below accounts (docs/architecture.md)
    from fluxsite.accounts.models import User

logger = logging.getLogger(__name__)

# How long the webhook view waits for a row lock before answering 503 (Stripe then retries).
WEBHOOK_LOCK_TIMEOUT_MS = 3000


class WebhookLockTimeout(Exception):
    """The database was too busy to record the event now; the sender should retry (HTTP 503)."""


class CheckoutRefused(Exception):
    """A checkout that makes no sense (inactive pack, already subscribed); the message is for the user."""


# --- Checkout and portal -----------------------------------------------------------------------------
def stripe_customer_id_for_user(*, user: User) -> str:
    """The user's Stripe customer id, created on first use."""
    existing = StripeCustomer.objects.filter(user=user).values_list("customer_id", flat=True).first()
    if existing:
        return existing
    customer_id = stripe_client.customer_create(email=user.email, user_id=user.pk)
    try:
        with transaction.atomic():
            StripeCustomer.objects.create(user=user, customer_id=customer_id)
    except IntegrityError:
        # Two checkouts at once: the other one's customer wins and ours stays unused in Stripe.
        logger.warning("user %s got a second Stripe customer %s; keeping the first", user.pk, customer_id)
        return StripeCustomer.objects.get(user=user).customer_id
    return customer_id


def checkout_start(*, user: User, pack: CreditPack | None = None, plan: Plan | None = None) -> str:
    """Create a Stripe Checkout Session for a pack (mode=payment) or a plan (mode=subscription).

    Returns the URL to redirect the user to. Raises CheckoutRefused for an inactive item or a
    second subscription, and IntegrationError when Stripe fails.
    """
    item: CreditPack | Plan
    if pack is not None and plan is None:
        item = pack
    elif plan is not None and pack is None:
        item = plan
    else:
        raise ValueError("checkout needs exactly one of pack or plan")
    if not item.active:
        raise CheckoutRefused("This offer is no longer available.")
    if (
        plan is not None
        and Subscription.objects.filter(user=user, status__in=("active", "trialing", "past_due")).exists()
    ):
        raise CheckoutRefused("You already have a subscription: change it from the billing portal.")
    mode = "payment" if pack is not None else "subscription"
    metadata = {"user_id": str(user.pk)}
    if isinstance(item, CreditPack):
        metadata["pack_id"] = str(item.pk)
    else:
        metadata["plan_id"] = str(item.pk)
    customer_id = stripe_customer_id_for_user(user=user)
    success = reverse("billing:checkout_success")
    session = stripe_client.checkout_session_create(
        mode=mode,
        price_id=item.stripe_price_id,
        customer_id=customer_id,
        customer_email=None,
        client_reference_id=str(user.pk),
        metadata=metadata,
        success_url=f"{settings.SITE_URL}{success}?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{settings.SITE_URL}{reverse('billing:overview')}",
        idempotency_key=f"checkout-{user.pk}-{uuid.uuid4().hex}",
    )
    CheckoutRecord.objects.create(
        user=user,
        session_id=session.id,
        mode=mode,
        pack=pack,
        plan=plan,
        credits=pack.credits if pack is not None else 0,
        amount_cents=session.amount_total,
        currency=session.currency or "",
    )
    if (
        not session.url
    ):  # Stripe gives a hosted checkout a URL; without one there is nowhere to send the person
        raise CheckoutRefused("Stripe did not return a checkout page. Please try again in a moment.")
    return session.url


def billing_portal_url(*, user: User) -> str:
    """A fresh billing portal session URL (one per visit). Raises CheckoutRefused without a customer."""
    customer_id = StripeCustomer.objects.filter(user=user).values_list("customer_id", flat=True).first()
    if not customer_id:
        raise CheckoutRefused("You have no subscription or payment to manage yet.")
    return stripe_client.billing_portal_session_create(
        customer_id=customer_id, return_url=f"{settings.SITE_URL}{reverse('billing:overview')}"
    )


# --- Webhooks --------------------------------------------------------------------------------------------
def stripe_event_record(*, payload: bytes, sig_header: str) -> tuple[StripeEvent, bool]:
    """Verify a webhook and store it once. Returns (event, created); enqueues processing on commit.

    Raises IntegrationError (validation) for a bad signature or a stale timestamp, and
    WebhookLockTimeout when the insert waited too long for a twin's lock.
    """
    event = stripe_client.webhook_construct_event(payload=payload, sig_header=sig_header)
    event_id = str(event["id"])
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # A twin inserting the same id holds the unique-index lock until it commits.
                with connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL lock_timeout = '{WEBHOOK_LOCK_TIMEOUT_MS}ms'")
            try:
                with transaction.atomic():
                    record = StripeEvent.objects.create(
                        event_id=event_id, type=str(event.get("type", "")), payload=json.loads(payload)
                    )
            except IntegrityError:
                return StripeEvent.objects.get(event_id=event_id), False
            pk = record.pk
            transaction.on_commit(lambda: _enqueue_event(pk))
    except OperationalError as exc:
        # PostgreSQL lock_timeout or SQLite "database is locked": the sender will retry.
        raise WebhookLockTimeout(str(exc))
    return record, True


def _enqueue_event(event_pk: int) -> None:
    from django_q.tasks import async_task

    async_task("billing.tasks.stripe_event_process_task", event_pk, task_name=f"stripe-event-{event_pk}")


def stripe_event_process(*, event_pk: int) -> str:
    """Do the work for one stored event; safe to run twice. Returns the final status."""
    StripeEvent.objects.filter(pk=event_pk).update(attempts=F("attempts") + 1)
    event = StripeEvent.objects.get(pk=event_pk)
    handler = _HANDLERS.get(event.type)
    obj = (event.payload.get("data") or {}).get("object") or {}
    if handler is None:
        status = StripeEventStatus.IGNORED
    else:
        try:
            handled = handler(event.type, obj)
        except Exception as exc:
            StripeEvent.objects.filter(pk=event_pk).update(
                status=StripeEventStatus.FAILED, error=repr(exc)[:2000]
            )
            logger.exception("stripe event %s (%s) failed", event.event_id, event.type)
            raise
        status = StripeEventStatus.PROCESSED if handled else StripeEventStatus.IGNORED
    StripeEvent.objects.filter(pk=event_pk).update(status=status, error="", processed_at=timezone.now())
    return status


def _user_from(obj: dict) -> User | None:
    """The user named by our metadata or client_reference_id, or by the Stripe customer."""
    metadata = obj.get("metadata") or {}
    for raw in (metadata.get("user_id"), obj.get("client_reference_id")):
        if raw and str(raw).isdigit():
            user = get_user_model().objects.filter(pk=int(raw)).first()
            if user is not None:
                return user
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    if customer:
        link = StripeCustomer.objects.select_related("user").filter(customer_id=customer).first()
        if link is not None:
            return link.user
    return None


def _on_checkout_session(event_type: str, session: dict) -> bool:
    session_id = session["id"]
    record = CheckoutRecord.objects.select_related("pack", "plan").filter(session_id=session_id).first()
    if record is None:
        record = _checkout_record_from_session(session)
        if record is None:
            logger.warning("checkout session %s names no user we know; ignored", session_id)
            return False
    updates = {}
    if session.get("payment_intent"):
        updates["payment_intent_id"] = _id(session["payment_intent"])
    if session.get("subscription"):
        updates["stripe_subscription_id"] = _id(session["subscription"])
    if session.get("amount_total") is not None:
        updates["amount_cents"] = session["amount_total"]
    if session.get("currency"):
        updates["currency"] = session["currency"]
    if updates:
        CheckoutRecord.objects.filter(pk=record.pk).update(**updates)

    if event_type == "checkout.session.expired":
        CheckoutRecord.objects.filter(pk=record.pk, status=CheckoutStatus.OPEN).update(
            status=CheckoutStatus.EXPIRED
        )
        return True
    if event_type == "checkout.session.async_payment_failed":
        CheckoutRecord.objects.filter(
            pk=record.pk, status__in=(CheckoutStatus.OPEN, CheckoutStatus.PROCESSING)
        ).update(status=CheckoutStatus.FAILED)
        return True
    payment_status = session.get("payment_status")
    if record.mode == "subscription":
        if updates.get("stripe_subscription_id"):
            subscription_sync(subscription_id=updates["stripe_subscription_id"])
        if payment_status in ("paid", "no_payment_required"):
            CheckoutRecord.objects.filter(pk=record.pk).exclude(status=CheckoutStatus.REFUNDED).update(
                status=CheckoutStatus.PAID
            )
        return True
    if payment_status != "paid":
        # Delayed methods (bank debits): completed but unpaid; async_payment_succeeded grants later.
        CheckoutRecord.objects.filter(pk=record.pk, status=CheckoutStatus.OPEN).update(
            status=CheckoutStatus.PROCESSING
        )
        return True
    if record.credits <= 0:
        logger.error("paid checkout %s has no credits to grant", session_id)
        return False
    with transaction.atomic():
        credits_grant(
            user=record.user,
            amount=record.credits,
            reference=f"stripe:checkout:{session_id}",
            kind=CreditKind.PURCHASE,
            note=record.pack.name if record.pack else "Credit pack",
            amount_cents=session.get("amount_total"),
            currency=session.get("currency") or "",
        )
        CheckoutRecord.objects.filter(pk=record.pk).exclude(status=CheckoutStatus.REFUNDED).update(
            status=CheckoutStatus.PAID
        )
    return True


def _checkout_record_from_session(session: dict) -> CheckoutRecord | None:
    """A session we did not create through checkout_start (or whose row was lost): trust only our metadata."""
    user = _user_from(session)
    if user is None:
        return None
    metadata = session.get("metadata") or {}
    pack = (
        CreditPack.objects.filter(pk=int(metadata["pack_id"])).first()
        if str(metadata.get("pack_id", "")).isdigit()
        else None
    )
    plan = (
        Plan.objects.filter(pk=int(metadata["plan_id"])).first()
        if str(metadata.get("plan_id", "")).isdigit()
        else None
    )
    record, _ = CheckoutRecord.objects.get_or_create(
        session_id=session["id"],
        defaults={
            "user": user,
            "mode": session.get("mode") or ("subscription" if plan else "payment"),
            "pack": pack,
            "plan": plan,
            "credits": pack.credits if pack else 0,
        },
    )
    return record


def _id(value) -> str:
    return value.get("id", "") if isinstance(value, dict) else str(value)


def subscription_sync(*, subscription_id: str) -> Subscription | None:
    """Store Stripe's current state of a subscription (re-read, never taken from an event)."""
    data = stripe_client.subscription_retrieve(subscription_id=subscription_id)
    items = ((data.get("items") or {}).get("data")) or []
    first = items[0] if items else {}
    price_id = _id(first.get("price") or {}) if first else ""
    period_end = first.get("current_period_end") or data.get("current_period_end")
    plan = Plan.objects.filter(stripe_price_id=price_id).first() if price_id else None
    existing = (
        Subscription.objects.filter(stripe_subscription_id=subscription_id).select_related("user").first()
    )
    user = existing.user if existing else _user_from(data)
    if user is None:
        logger.warning("subscription %s names no user we know; not stored", subscription_id)
        return None
    values = {
        "user": user,
        "stripe_customer_id": _id(data.get("customer") or ""),
        "plan": plan or (existing.plan if existing else None),
        "status": data.get("status") or "incomplete",
        "current_period_end": (datetime.fromtimestamp(int(period_end), tz=UTC) if period_end else None),
        "cancel_at_period_end": bool(data.get("cancel_at_period_end")),
    }
    try:
        with transaction.atomic():
            sub, _ = Subscription.objects.update_or_create(
                stripe_subscription_id=subscription_id, defaults=values
            )
    except IntegrityError:
        # A concurrent sync created it first; ours is at least as fresh, so write it over.
        Subscription.objects.filter(stripe_subscription_id=subscription_id).update(**values)
        sub = Subscription.objects.get(stripe_subscription_id=subscription_id)
    if values["stripe_customer_id"] and not StripeCustomer.objects.filter(user=user).exists():
        StripeCustomer.objects.get_or_create(
            customer_id=values["stripe_customer_id"], defaults={"user": user}
        )
    return sub


def _on_subscription(event_type: str, subscription: dict) -> bool:
    return subscription_sync(subscription_id=subscription["id"]) is not None


def _invoice_subscription_id(invoice: dict) -> str:
    details = ((invoice.get("parent") or {}).get("subscription_details")) or {}
    # Since API 2025-03-31 it is under parent.subscription_details; older versions had it on top.
    return _id(details.get("subscription") or invoice.get("subscription") or "")


def _on_invoice_paid(event_type: str, invoice: dict) -> bool:
    subscription_id = _invoice_subscription_id(invoice)
    if not subscription_id:
        return False
    sub = subscription_sync(subscription_id=subscription_id)
    if sub is None or sub.plan is None:
        raise LookupError(
            f"paid invoice {invoice.get('id')} for subscription {subscription_id}: unknown user or plan"
        )
    # The payment intent is what a later charge.refunded names. A real invoice (webhook body or plain
    # retrieve) does not carry it since API 2025-03-31.basil (`payments` is includable), so ask Stripe.
    payment_intent = stripe_client.invoice_payment_intent_id(invoice_id=invoice["id"]) or ""
    if not payment_intent:
        logger.warning(
            "paid invoice %s lists no paid payment intent; a refund of it cannot be matched",
            invoice.get("id"),
        )
    with transaction.atomic():
        credits_grant(
            user=sub.user,
            amount=sub.plan.credits_per_period,
            reference=f"stripe:invoice:{invoice['id']}",
            kind=CreditKind.SUBSCRIPTION,
            note=f"{sub.plan.name} ({invoice.get('billing_reason') or 'invoice'})",
            amount_cents=invoice.get("amount_paid"),
            currency=invoice.get("currency") or "",
        )
        grant, created = InvoiceGrant.objects.get_or_create(
            invoice_id=invoice["id"],
            defaults={
                "subscription": sub,
                "payment_intent_id": payment_intent,
                "credits": sub.plan.credits_per_period,
                "amount_cents": invoice.get("amount_paid"),
            },
        )
        if not created and payment_intent and not grant.payment_intent_id:
            # A redelivery learns the payment an earlier processing could not find.
            InvoiceGrant.objects.filter(pk=grant.pk, payment_intent_id="").update(
                payment_intent_id=payment_intent
            )
    return True


def _on_invoice_payment_failed(event_type: str, invoice: dict) -> bool:
    subscription_id = _invoice_subscription_id(invoice)
    if not subscription_id:
        return False
    # Nothing is granted for an unpaid invoice; the re-read records past_due for the billing page.
    return subscription_sync(subscription_id=subscription_id) is not None


def _on_charge_refunded(event_type: str, charge: dict) -> bool:
    """Take back credits in proportion to the money refunded (see credits_take_back for the policy).

    amount_refunded is cumulative, so each event takes only what earlier ones did not; an older
    event arriving late finds nothing left to take. Rounded down: a partial refund never takes
    back more than its share.
    """
    payment_intent = _id(charge.get("payment_intent") or "")
    record = (
        CheckoutRecord.objects.select_related("user")
        .filter(payment_intent_id=payment_intent, mode="payment")
        .first()
        if payment_intent
        else None
    )
    grant = (
        InvoiceGrant.objects.select_related("subscription__user")
        .filter(payment_intent_id=payment_intent)
        .first()
        if payment_intent and record is None
        else None
    )
    if record is not None and record.credits > 0:
        user, credits = record.user, record.credits
    elif grant is not None:
        user, credits = grant.subscription.user, grant.credits
    else:
        logger.warning(
            "refunded charge %s matches no purchase or paid invoice; nothing taken back", charge.get("id")
        )
        return False
    amount = int(charge.get("amount") or 0)
    refunded = int(charge.get("amount_refunded") or 0)
    if amount <= 0 or refunded <= 0:
        return False
    target = credits * min(refunded, amount) // amount
    prefix = f"stripe:charge:{charge['id']}:"
    with transaction.atomic():
        # Serialise with other refund events for this user before adding up what was taken.
        Wallet.objects.select_for_update().filter(user=user).first()
        taken = CreditEntry.objects.filter(reference__startswith=prefix).aggregate(
            amount=Sum("amount"), shortfall=Sum("shortfall")
        )
        already = -(taken["amount"] or 0) + (taken["shortfall"] or 0)
        if target > already:
            credits_take_back(
                user=user,
                amount=target - already,
                reference=f"{prefix}refunded:{refunded}",
                note=f"Payment refunded ({refunded} of {amount} {charge.get('currency', '')})".strip(),
            )
        if refunded >= amount and record is not None:
            CheckoutRecord.objects.filter(pk=record.pk).update(status=CheckoutStatus.REFUNDED)
    return True


_HANDLERS = {
    "checkout.session.completed": _on_checkout_session,
    "checkout.session.async_payment_succeeded": _on_checkout_session,
    "checkout.session.async_payment_failed": _on_checkout_session,
    "checkout.session.expired": _on_checkout_session,
    "invoice.paid": _on_invoice_paid,
    "invoice.payment_failed": _on_invoice_payment_failed,
    "customer.subscription.created": _on_subscription,
    "customer.subscription.updated": _on_subscription,
    "customer.subscription.deleted": _on_subscription,
    "charge.refunded": _on_charge_refunded,
}
