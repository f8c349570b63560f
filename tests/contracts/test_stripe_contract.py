"""Stripe: the sandbox and our webhook handling checked against Stripe's own material.

Vendor material (see tests/contracts/README.md): `sandbox/vendor/stripe/fixtures.json`, Stripe's
example object per resource from github.com/stripe/openapi `openapi/fixtures3.json`, and the
stripe-python SDK's own type definitions (installed package), which say which fields are
includable.

- Every object the sandbox serves uses only field names that Stripe's example of that resource
  has (a field the real API does not send, like `payments` on an invoice, fails here).
- Includable fields are absent unless expanded, and present when expanded.
- Stripe's example objects, wrapped in signed events, replayed through our real endpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.urls import reverse

from billing.models import CheckoutRecord, CreditKind, InvoiceGrant, Plan, StripeEvent, Subscription, Wallet
from fluxsite.integrations import stripe_client
from sandbox.stripe import services as stripe_sandbox
from sandbox.stripe.models import StripeEvent as SandboxEvent
from sandbox.stripe.models import StripeRecord
from tests.billing.conftest import ensure_catalog, stripe_event
from tests.helpers import wait_for

FIXTURES = json.loads(
    (Path(__file__).resolve().parents[2] / "sandbox/vendor/stripe/fixtures.json").read_text()
)
RESOURCES = FIXTURES["resources"]
# Fields the real API sends only when expanded ("includable"), per stripe-python 16.1's type docs
# (stripe/_invoice.py: "payments ... includable"): they may never appear unexpanded.
INCLUDABLE = {"invoice": {"payments"}}


def _subscribe_and_renew(client) -> Subscription:
    ensure_catalog()
    plan = Plan.objects.get(stripe_price_id="price_sandbox_plan_pro")
    response = client.post(reverse("billing:checkout_plan", args=[plan.pk]))
    assert response.status_code == 302
    record = CheckoutRecord.objects.latest("created_at")
    stripe_sandbox.checkout_session_pay(session_id=record.session_id)
    assert wait_for(lambda: InvoiceGrant.objects.exists())
    sub = Subscription.objects.get(
        stripe_subscription_id=CheckoutRecord.objects.get(pk=record.pk).stripe_subscription_id
    )
    stripe_sandbox.subscription_renew(subscription_id=sub.stripe_subscription_id)
    assert wait_for(lambda: InvoiceGrant.objects.count() == 2)
    return sub


def _unknown_fields(kind: str, obj: dict) -> set[str]:
    return set(obj) - set(RESOURCES[kind])


@pytest.mark.django_db(transaction=True)
def test_every_object_the_sandbox_stores_has_only_fields_stripes_own_example_has(
    sandbox, alice, alice_client
):
    _subscribe_and_renew(alice_client)
    seen: set[str] = set()
    for record in StripeRecord.objects.all():
        kind = record.object
        assert kind in RESOURCES, f"the sandbox serves a {kind} for which we keep no vendor example"
        assert not _unknown_fields(kind, record.data), (kind, _unknown_fields(kind, record.data))
        for field in INCLUDABLE.get(kind, ()):
            assert field not in record.data, f"{kind}.{field} is includable: absent unless expanded"
        seen.add(kind)
    assert {
        "invoice",
        "invoice_payment",
        "subscription",
        "payment_intent",
        "charge",
        "checkout.session",
    } <= seen
    for event in SandboxEvent.objects.all():
        assert not _unknown_fields("event", event.data), _unknown_fields("event", event.data)
        obj = event.data["data"]["object"]
        assert not _unknown_fields(obj["object"], obj), (
            event.data["type"],
            _unknown_fields(obj["object"], obj),
        )
        assert not INCLUDABLE.get(obj["object"], set()) & set(obj), (
            f"{event.data['type']} carries an includable field"
        )


@pytest.mark.django_db(transaction=True)
def test_an_invoice_carries_its_payments_only_when_expanded(sandbox, alice, alice_client):
    import stripe
    from django.conf import settings

    sub = _subscribe_and_renew(alice_client)
    invoice_id = InvoiceGrant.objects.filter(subscription=sub).values_list("invoice_id", flat=True).first()
    assert invoice_id
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE},
        stripe_version=settings.STRIPE_API_VERSION,
        max_network_retries=0,
    )
    plain = client.v1.invoices.retrieve(invoice_id).to_dict()
    assert "payments" not in plain
    expanded = client.v1.invoices.retrieve(invoice_id, params={"expand": ["payments"]}).to_dict()
    payment = expanded["payments"]["data"][0]
    assert (
        set(payment) <= set(RESOURCES["invoice_payment"]) and payment["payment"]["type"] == "payment_intent"
    )
    # Our client finds the same payment intent through the list endpoint.
    assert (
        stripe_client.invoice_payment_intent_id(invoice_id=invoice_id) == payment["payment"]["payment_intent"]
    )


@pytest.mark.django_db(transaction=True)
def test_a_refund_of_a_subscription_invoice_finds_its_grant_without_an_expanded_invoice(
    sandbox, alice, alice_client
):
    """Defect 1 of issue 11: the webhook's invoice has no `payments`; the grant still learns its payment."""
    sub = _subscribe_and_renew(alice_client)
    grants = list(InvoiceGrant.objects.filter(subscription=sub))
    assert all(g.payment_intent_id.startswith("pi_") for g in grants)
    before = Wallet.objects.get(user=alice).balance
    pi = stripe_sandbox.record_get(object_id=grants[-1].payment_intent_id, object_type="payment_intent").data
    stripe_sandbox.charge_refund(charge_id=pi["latest_charge"], amount=None)
    assert wait_for(lambda: alice.wallet.entries.filter(kind=CreditKind.CHARGEBACK).exists())
    assert sub.plan is not None
    assert Wallet.objects.get(user=alice).balance == before - sub.plan.credits_per_period


@pytest.mark.django_db
def test_stripes_own_example_objects_replayed_through_our_webhook_are_stored_and_grant_nothing(
    post_event, alice
):
    """Stripe's examples name customers and payments we never created: each is stored once, answered
    200, and grants or takes nothing. (Events whose handling re-reads Stripe, such as invoice.paid,
    are replayed against the sandbox in the tests above: the examples' ids do not exist there.)"""
    before = list(alice.wallet.entries.values_list("pk", flat=True))
    for kind, type_ in (
        ("checkout.session", "checkout.session.completed"),
        ("charge", "charge.refunded"),
        ("checkout.session", "checkout.session.expired"),
    ):
        response = post_event(stripe_event(type_, json.loads(json.dumps(RESOURCES[kind]))))
        assert response.status_code == 200, (type_, response.content)
    assert StripeEvent.objects.count() == 3
    assert set(StripeEvent.objects.values_list("status", flat=True)) <= {"ignored", "processed"}
    assert list(alice.wallet.entries.values_list("pk", flat=True)) == before


@pytest.mark.django_db
def test_stripes_example_event_envelope_is_accepted_by_our_verifier(settings):
    """The envelope of fixtures3.json's `event` (with its own data object) verifies and parses."""
    import stripe

    event = RESOURCES["event"]
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, settings.STRIPE_WEBHOOK_SECRET)
    parsed = stripe_client.webhook_construct_event(payload=payload.encode(), sig_header=header)
    assert parsed["id"] == event["id"] and parsed["type"] == event["type"]
