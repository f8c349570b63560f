"""The whole purchase path over real HTTP: our views → stripe_client → the Stripe sandbox → its signed
webhooks back to our endpoint. Webhooks arrive from the sandbox's delivery thread, so the tests wait."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from billing.models import CheckoutRecord, CreditKind, CreditPack, Plan, Subscription
from billing.services import credits_spend
from sandbox.stripe import services as stripe_sandbox
from tests.billing.conftest import ensure_catalog, signed, stripe_event
from tests.helpers import balance, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def start_checkout(client, url_name: str, pk: int) -> CheckoutRecord:
    response = client.post(reverse(url_name, args=[pk]))
    assert response.status_code == 302 and "/sandbox/stripe/checkout/" in response["Location"]
    return CheckoutRecord.objects.latest("created_at")


def test_buying_a_pack_grants_its_credits_once_the_webhook_arrives(sandbox, alice, alice_client):
    ensure_catalog()
    pack = CreditPack.objects.get(stripe_price_id="price_sandbox_pack_3000")
    start = balance(alice)
    record = start_checkout(alice_client, "billing:checkout_pack", pack.pk)
    assert balance(alice) == start  # nothing before payment
    stripe_sandbox.checkout_session_pay(session_id=record.session_id)
    assert wait_for(lambda: balance(alice) == start + 3000)
    done = alice_client.get(
        reverse("billing:checkout_success") + f"?session_id={record.session_id}", HTTP_HX_REQUEST="true"
    )
    assert done.status_code == 286
    record.refresh_from_db()
    entry = alice.wallet.entries.get(kind=CreditKind.PURCHASE)
    assert entry.reference == f"stripe:checkout:{record.session_id}" and entry.amount_cents == 2700


def test_a_refund_through_stripe_after_spending_takes_back_what_is_left(sandbox, alice, alice_client):
    ensure_catalog()
    pack = CreditPack.objects.get(stripe_price_id="price_sandbox_pack_1000")
    record = start_checkout(alice_client, "billing:checkout_pack", pack.pk)
    stripe_sandbox.checkout_session_pay(session_id=record.session_id)
    assert wait_for(lambda: alice.wallet.entries.filter(kind=CreditKind.PURCHASE).exists())
    record.refresh_from_db()
    credits_spend(
        user=alice, amount=balance(alice) - 100, reference="training:1", kind=CreditKind.SPEND_TRAINING
    )
    pi = stripe_sandbox.record_get(object_id=record.payment_intent_id, object_type="payment_intent").data
    charge_id = pi.get("latest_charge")
    stripe_sandbox.charge_refund(charge_id=charge_id, amount=None)
    assert wait_for(lambda: alice.wallet.entries.filter(kind=CreditKind.CHARGEBACK).exists())
    entry = alice.wallet.entries.get(kind=CreditKind.CHARGEBACK)
    assert entry.amount == -100 and entry.shortfall == 900 and balance(alice) == 0


def test_subscribing_grants_the_allowance_and_a_late_stale_event_cannot_revive_it(
    sandbox, alice, alice_client, settings
):
    ensure_catalog()
    plan = Plan.objects.get(stripe_price_id="price_sandbox_plan_pro")
    start = balance(alice)
    record = start_checkout(alice_client, "billing:checkout_plan", plan.pk)
    stripe_sandbox.checkout_session_pay(session_id=record.session_id)
    assert wait_for(lambda: balance(alice) == start + 2500)
    sub = Subscription.objects.get(user=alice)
    assert sub.status == "active" and sub.plan == plan and sub.current_period_end is not None
    stale = stripe_sandbox.record_get(object_id=sub.stripe_subscription_id, object_type="subscription").data

    stripe_sandbox.subscription_renew(subscription_id=sub.stripe_subscription_id)
    assert wait_for(lambda: balance(alice) == start + 5000)  # the cycle invoice, keyed by invoice id
    stripe_sandbox.subscription_cancel(subscription_id=sub.stripe_subscription_id, at_period_end=False)
    assert wait_for(lambda: Subscription.objects.get(pk=sub.pk).status == "canceled")

    # An old "updated (active)" arriving after the deletion: we re-read Stripe, so it stays canceled.
    body, header = signed(
        stripe_event("customer.subscription.updated", stale), settings.STRIPE_WEBHOOK_SECRET
    )
    response = Client().post(
        "/billing/webhooks/stripe/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert response.status_code == 200
    assert Subscription.objects.get(pk=sub.pk).status == "canceled"
    assert balance(alice) == start + 5000


def test_a_refunded_subscription_payment_takes_its_allowance_back(sandbox, alice, alice_client):
    from billing.models import InvoiceGrant

    ensure_catalog()
    plan = Plan.objects.get(stripe_price_id="price_sandbox_plan_pro")
    start = balance(alice)
    record = start_checkout(alice_client, "billing:checkout_plan", plan.pk)
    stripe_sandbox.checkout_session_pay(session_id=record.session_id)
    assert wait_for(lambda: balance(alice) == start + 2500)
    grant = InvoiceGrant.objects.get()
    assert grant.payment_intent_id.startswith("pi_") and grant.credits == 2500
    pi = stripe_sandbox.record_get(object_id=grant.payment_intent_id, object_type="payment_intent").data
    stripe_sandbox.charge_refund(charge_id=pi["latest_charge"], amount=950)  # half of $19.00
    assert wait_for(lambda: alice.wallet.entries.filter(kind=CreditKind.CHARGEBACK).exists())
    assert balance(alice) == start + 2500 - 1250
    stripe_sandbox.charge_refund(charge_id=pi["latest_charge"], amount=None)  # the rest
    assert wait_for(lambda: balance(alice) == start)
