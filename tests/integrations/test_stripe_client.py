"""stripe_client: settings checks, error mapping and webhook verification, against the sandbox over HTTP."""

from __future__ import annotations

import json
import socket
import time

import pytest
import stripe
from django.core.exceptions import ImproperlyConfigured

from fluxsite.integrations import stripe_client
from fluxsite.integrations.errors import Category, IntegrationError
from sandbox.faults import fault_inject


def _create(**overrides) -> stripe_client.CheckoutSession:
    args = {
        "mode": "payment",
        "price_id": "price_sandbox_pack_1000",
        "customer_id": None,
        "customer_email": "alice@example.com",
        "client_reference_id": "1",
        "metadata": {"user_id": "1"},
        "success_url": "http://app.test/ok?s={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://app.test/no",
        "idempotency_key": "client-test",
    }
    return stripe_client.checkout_session_create(**{**args, **overrides})


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("status", "category", "retryable"),
    [
        (400, Category.VALIDATION, False),
        (401, Category.AUTHENTICATION, False),
        (402, Category.VALIDATION, False),
        (404, Category.VALIDATION, False),
        (409, Category.VALIDATION, False),
        (429, Category.RATE_LIMIT, True),
        (500, Category.SERVICE_ERROR, True),
        (503, Category.SERVICE_ERROR, True),
    ],
)
def test_each_status_fault_reaches_the_caller_as_its_category(sandbox, settings, status, category, retryable):
    fault_inject(service="stripe", operation="checkout.sessions.create", status=status, retry_after=7)
    with pytest.raises(IntegrationError) as err:
        _create()
    assert err.value.service == "stripe" and err.value.status == status
    assert err.value.category == category and err.value.retryable is retryable
    assert settings.STRIPE_SECRET_KEY not in err.value.message + err.value.detail
    if status == 429:
        assert err.value.retry_after == 7
    # The fault was used up: the next call goes through.
    assert _create().status == "open"


@pytest.mark.django_db(transaction=True)
def test_a_fault_on_one_operation_leaves_the_others_alone(sandbox):
    session = _create()
    fault_inject(service="stripe", operation="events.retrieve", status=500)
    assert stripe_client.checkout_session_retrieve(session_id=session.id).id == session.id
    with pytest.raises(IntegrationError):
        stripe_client.event_retrieve(event_id="evt_whatever")


@pytest.mark.django_db(transaction=True)
def test_a_hanging_stripe_is_a_timeout(sandbox, settings):
    session = _create()
    settings.STRIPE_TIMEOUT_SECONDS = 0.3
    fault_inject(service="stripe", operation="checkout.sessions.retrieve", kind="timeout", delay_seconds=0.8)
    started = time.monotonic()
    with pytest.raises(IntegrationError) as err:
        stripe_client.checkout_session_retrieve(session_id=session.id)
    assert err.value.category == Category.TIMEOUT and err.value.retryable is True
    assert time.monotonic() - started < 0.8


def test_an_unreachable_stripe_is_a_network_error(settings):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{port}"
    with pytest.raises(IntegrationError) as err:
        stripe_client.checkout_session_retrieve(session_id="cs_test_x")
    assert err.value.category == Category.NETWORK and err.value.retryable is True


def test_missing_settings_are_all_named(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_API_BASE = ""
    with pytest.raises(ImproperlyConfigured) as err:
        stripe_client.customer_create(email="a@example.com", user_id=1)
    assert "STRIPE_SECRET_KEY" in str(err.value) and "STRIPE_API_BASE" in str(err.value)


@pytest.mark.django_db(transaction=True)
def test_a_customer_and_a_portal_link_are_created(sandbox):
    customer = stripe_client.customer_create(email="alice@example.com", user_id=5)
    assert customer.startswith("cus_")
    session = _create(customer_id=customer, customer_email=None, idempotency_key="with-customer")
    assert session.customer == customer and session.metadata == {"user_id": "1"}
    url = stripe_client.billing_portal_session_create(customer_id=customer, return_url="http://app.test/")
    assert url.startswith(f"{sandbox}/sandbox/stripe/portal/bps_")


# --- Webhook verification (signed here with the SDK's own helper, as the contract suggests) ---------------
def _signed(event: dict, secret: str, timestamp: int | None = None) -> tuple[bytes, str]:
    payload = json.dumps(event)
    return payload.encode(), stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)


EVENT = {
    "id": "evt_1",
    "object": "event",
    "type": "invoice.paid",
    "api_version": "2025-03-31.basil",
    "created": 1,
    "livemode": False,
    "data": {"object": {"id": "in_1", "object": "invoice", "amount_paid": 1900}},
}


def test_a_valid_webhook_becomes_a_plain_dict(settings):
    payload, header = _signed(EVENT, settings.STRIPE_WEBHOOK_SECRET)
    event = stripe_client.webhook_construct_event(payload=payload, sig_header=header)
    assert type(event) is dict and type(event["data"]["object"]) is dict
    assert event["data"]["object"]["amount_paid"] == 1900


@pytest.mark.parametrize("case", ["wrong_secret", "old", "no_header", "tampered", "not_json"])
def test_a_bad_webhook_is_a_permanent_validation_error(settings, case):
    secret = "whsec_wrong" if case == "wrong_secret" else settings.STRIPE_WEBHOOK_SECRET
    payload, header = _signed(EVENT, secret, int(time.time()) - 301 if case == "old" else None)
    if case == "no_header":
        header = ""
    if case == "tampered":
        payload = payload.replace(b"1900", b"9999")
    if case == "not_json":
        payload = b"not json"
        header = stripe.WebhookSignature.generate_signature_header("not json", settings.STRIPE_WEBHOOK_SECRET)
    with pytest.raises(IntegrationError) as err:
        stripe_client.webhook_construct_event(payload=payload, sig_header=header)
    assert err.value.category == Category.VALIDATION and err.value.retryable is False
