from __future__ import annotations

import time

import pytest
from django.test import Client

from billing.models import (
    CheckoutRecord,
    CheckoutStatus,
    CreditEntry,
    CreditKind,
    CreditPack,
    StripeEvent,
    StripeEventStatus,
)
from billing.services import credits_spend
from tests.billing.conftest import ensure_catalog, signed, stripe_event
from tests.helpers import balance, run_concurrently


def session_obj(user, pack, *, payment_status="paid", session_id="cs_test_1", pi="pi_test_1") -> dict:
    return {
        "id": session_id,
        "object": "checkout.session",
        "mode": "payment",
        "status": "complete",
        "payment_status": payment_status,
        "client_reference_id": str(user.pk),
        "metadata": {"user_id": str(user.pk), "pack_id": str(pack.pk)},
        "customer": "cus_test",
        "payment_intent": pi,
        "amount_total": pack.amount_cents,
        "currency": "usd",
        "subscription": None,
    }


@pytest.fixture
def pack(db):
    ensure_catalog()
    return CreditPack.objects.get(stripe_price_id="price_sandbox_pack_1000")


def test_a_paid_checkout_grants_the_pack_once_even_when_delivered_twice(alice, pack, post_event):
    start = balance(alice)
    event = stripe_event("checkout.session.completed", session_obj(alice, pack))
    first, second = post_event(event), post_event(event)
    assert first.status_code == 200 and second.status_code == 200
    assert balance(alice) == start + 1000
    assert StripeEvent.objects.get().status == StripeEventStatus.PROCESSED
    record = CheckoutRecord.objects.get(session_id="cs_test_1")
    assert (
        record.status == CheckoutStatus.PAID
        and record.user == alice
        and record.payment_intent_id == "pi_test_1"
    )


def test_a_bad_signature_gets_400_and_changes_nothing(alice, pack, post_event):
    start = balance(alice)
    response = post_event(
        stripe_event("checkout.session.completed", session_obj(alice, pack)), secret="whsec_not_the_right_one"
    )
    assert response.status_code == 400
    assert not StripeEvent.objects.exists() and balance(alice) == start


def test_a_timestamp_older_than_five_minutes_gets_400(alice, pack, post_event):
    start = balance(alice)
    response = post_event(
        stripe_event("checkout.session.completed", session_obj(alice, pack)), timestamp=int(time.time()) - 301
    )
    assert response.status_code == 400
    assert not StripeEvent.objects.exists() and balance(alice) == start


def test_a_missing_signature_and_a_wrong_method_are_refused(client):
    assert (
        client.post("/billing/webhooks/stripe/", data=b"{}", content_type="application/json").status_code
        == 400
    )
    assert client.get("/billing/webhooks/stripe/").status_code == 405


def test_an_unknown_event_type_gets_200_and_does_nothing(alice, post_event):
    before = CreditEntry.objects.count()
    response = post_event(stripe_event("customer.tax_id.created", {"id": "txi_1", "object": "tax_id"}))
    assert response.status_code == 200
    assert StripeEvent.objects.get().status == StripeEventStatus.IGNORED
    assert CreditEntry.objects.count() == before


def test_an_unpaid_checkout_grants_nothing_until_the_async_payment_succeeds(alice, pack, post_event):
    start = balance(alice)
    post_event(stripe_event("checkout.session.completed", session_obj(alice, pack, payment_status="unpaid")))
    assert balance(alice) == start
    assert CheckoutRecord.objects.get().status == CheckoutStatus.PROCESSING
    post_event(stripe_event("checkout.session.async_payment_succeeded", session_obj(alice, pack)))
    assert balance(alice) == start + 1000
    assert CheckoutRecord.objects.get().status == CheckoutStatus.PAID


def test_a_failed_async_payment_grants_nothing(alice, pack, post_event):
    start = balance(alice)
    post_event(stripe_event("checkout.session.completed", session_obj(alice, pack, payment_status="unpaid")))
    post_event(
        stripe_event(
            "checkout.session.async_payment_failed", session_obj(alice, pack, payment_status="unpaid")
        )
    )
    assert balance(alice) == start
    assert CheckoutRecord.objects.get().status == CheckoutStatus.FAILED


def charge(*, amount_refunded: int, amount: int = 1000) -> dict:
    return {
        "id": "ch_test_1",
        "object": "charge",
        "amount": amount,
        "amount_refunded": amount_refunded,
        "currency": "usd",
        "payment_intent": "pi_test_1",
        "refunded": amount_refunded >= amount,
    }


def test_a_partial_then_full_refund_takes_back_proportionally(alice, pack, post_event):
    start = balance(alice)
    post_event(stripe_event("checkout.session.completed", session_obj(alice, pack)))
    post_event(stripe_event("charge.refunded", charge(amount_refunded=250)))
    assert balance(alice) == start + 750
    late_duplicate = stripe_event("charge.refunded", charge(amount_refunded=250))
    post_event(stripe_event("charge.refunded", charge(amount_refunded=1000)))
    post_event(late_duplicate)  # an older, smaller refund arriving late takes nothing more
    assert balance(alice) == start
    assert CheckoutRecord.objects.get().status == CheckoutStatus.REFUNDED


def test_a_refund_after_the_credits_were_spent_takes_what_is_left(alice, pack, post_event):
    post_event(stripe_event("checkout.session.completed", session_obj(alice, pack)))
    credits_spend(
        user=alice, amount=balance(alice) - 200, reference="training:77", kind=CreditKind.SPEND_TRAINING
    )
    post_event(stripe_event("charge.refunded", charge(amount_refunded=1000)))
    assert balance(alice) == 0
    entry = CreditEntry.objects.get(kind=CreditKind.CHARGEBACK)
    assert entry.amount == -200 and entry.shortfall == 800
    assert "already spent" in entry.note


def test_a_lock_timeout_gets_503_so_stripe_retries(alice, pack, settings, monkeypatch):
    # SQLite and PostgreSQL both report a lock wait as OperationalError; forcing it here stands in for a
    # twin holding the row lock, which the test client (one connection) cannot produce.
    from django.db import OperationalError
    from django.db.models import QuerySet

    def locked(*args, **kwargs):
        raise OperationalError("canceling statement due to lock timeout")

    monkeypatch.setattr(QuerySet, "create", locked)
    body, header = signed(
        stripe_event("checkout.session.completed", session_obj(alice, pack)), settings.STRIPE_WEBHOOK_SECRET
    )
    response = Client().post(
        "/billing/webhooks/stripe/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert response.status_code == 503


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_event_delivered_twice_at_the_same_moment_grants_once(alice, pack, settings):
    start = balance(alice)
    body, header = signed(
        stripe_event("checkout.session.completed", session_obj(alice, pack)), settings.STRIPE_WEBHOOK_SECRET
    )

    def deliver(i: int) -> int:
        return (
            Client()
            .post(
                "/billing/webhooks/stripe/",
                data=body,
                content_type="application/json",
                HTTP_STRIPE_SIGNATURE=header,
            )
            .status_code
        )

    statuses = run_concurrently(deliver, 6)
    assert statuses == [200] * 6
    assert StripeEvent.objects.count() == 1
    assert balance(alice) == start + 1000
    assert CreditEntry.objects.filter(kind=CreditKind.PURCHASE).count() == 1
