"""The Stripe stand-in, driven through the real `stripe` SDK (via stripe_client) over HTTP.

Webhooks are received by a tiny HTTP server in the test, so these tests do not depend on the
billing app's endpoint; each delivery is checked with the SDK's own signature verification.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import stripe
from django.test import Client

from fluxsite.integrations import stripe_client
from fluxsite.integrations.errors import Category, IntegrationError
from sandbox.faults import fault_inject
from tests.helpers import assert_no_inline_script

pytestmark = pytest.mark.django_db(transaction=True)


class Receiver:
    """Collects webhook deliveries; can answer 500 to the first few to exercise retries."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.failures_left = 0
        self.failed = 0
        self.cond = threading.Condition()

    def wait_for(self, count: int, timeout: float = 10) -> list[tuple[dict[str, str], bytes]]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.deliveries) >= count, timeout)
            return list(self.deliveries)

    def events(self, count: int) -> list[dict]:
        """Wait for `count` deliveries and verify each with the project's own verifier."""
        deliveries = self.wait_for(count)
        assert len(deliveries) >= count, f"only {len(deliveries)} of {count} webhooks arrived"
        return [
            stripe_client.webhook_construct_event(payload=body, sig_header=headers["Stripe-Signature"])
            for headers, body in deliveries
        ]


@pytest.fixture
def receiver(sandbox, settings):
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with rec.cond:
                if rec.failures_left > 0:
                    rec.failures_left -= 1
                    rec.failed += 1
                    status = 500
                else:
                    rec.deliveries.append((dict(self.headers.items()), body))
                    status = 200
                rec.cond.notify_all()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.SANDBOX_STRIPE_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hook"
    yield rec
    server.shutdown()
    server.server_close()


def _create(
    mode: str = "payment", price_id: str = "price_sandbox_pack_1000", key: str = "key-1", **overrides
) -> stripe_client.CheckoutSession:
    args = {
        "mode": mode,
        "price_id": price_id,
        "customer_id": None,
        "customer_email": "alice@example.com",
        "client_reference_id": "42",
        "metadata": {"user_id": "42", "purchase": "p1"},
        "success_url": "http://app.test/billing/success?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://app.test/billing/cancelled",
        "idempotency_key": key,
    }
    return stripe_client.checkout_session_create(**{**args, **overrides})


def _click(session: stripe_client.CheckoutSession, button: str = "pay", outcome: str = "succeed"):
    return Client().post(_path(session) + button, {"outcome": outcome})


def _path(session: stripe_client.CheckoutSession) -> str:
    assert session.url, session
    return urlsplit(session.url).path


def _sdk(sandbox_url: str, settings) -> stripe.StripeClient:
    """The raw SDK, for reads stripe_client does not offer (payment intents)."""
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": f"{sandbox_url}/sandbox/stripe"},
        max_network_retries=0,
    )


def test_a_paid_credit_pack_redirects_and_sends_a_signed_checkout_completed(sandbox, receiver, settings):
    session = _create()
    assert session.id.startswith("cs_") and session.status == "open" and session.payment_status == "unpaid"
    assert session.amount_total == 1000 and session.currency == "usd"
    assert (session.url or "").startswith(f"{sandbox}/sandbox/stripe/checkout/")

    page = Client().get(_path(session))
    assert page.status_code == 200
    assert b"10.00" in page.content and b"1,000 credits" in page.content
    assert_no_inline_script(page.content)

    response = _click(session)
    assert response.status_code == 302
    assert response["Location"] == f"http://app.test/billing/success?session_id={session.id}"

    [event] = receiver.events(1)
    assert event["type"] == "checkout.session.completed"
    assert event["api_version"] == settings.STRIPE_API_VERSION and event["object"] == "event"
    obj = event["data"]["object"]
    assert obj["id"] == session.id and obj["payment_status"] == "paid" and obj["status"] == "complete"
    assert obj["client_reference_id"] == "42" and obj["metadata"] == {"user_id": "42", "purchase": "p1"}
    # The real SDK verifier accepts it too, and the event is retrievable as recorded.
    headers, body = receiver.deliveries[0]
    stripe.Webhook.construct_event(body, headers["Stripe-Signature"], settings.STRIPE_WEBHOOK_SECRET)
    assert stripe_client.event_retrieve(event_id=event["id"])["id"] == event["id"]

    after = stripe_client.checkout_session_retrieve(session_id=session.id)
    assert after.status == "complete" and after.payment_intent and after.payment_intent.startswith("pi_")
    pi = _sdk(sandbox, settings).v1.payment_intents.retrieve(after.payment_intent)
    assert pi.metadata.to_dict() == {"user_id": "42", "purchase": "p1"} and pi.amount == 1000


def test_a_subscription_sends_created_and_invoice_paid_and_renews(sandbox, receiver):
    session = _create(mode="subscription", price_id="price_sandbox_plan_pro")
    assert session.amount_total == 1900
    _click(session)
    events = receiver.events(3)
    assert [e["type"] for e in events] == [
        "checkout.session.completed",
        "customer.subscription.created",
        "invoice.paid",
    ]
    completed, created, paid = events
    sub_id = completed["data"]["object"]["subscription"]
    assert sub_id.startswith("sub_") and created["data"]["object"]["id"] == sub_id
    assert created["data"]["object"]["metadata"] == {"user_id": "42", "purchase": "p1"}
    invoice = paid["data"]["object"]
    assert invoice["billing_reason"] == "subscription_create" and invoice["status"] == "paid"
    assert invoice["parent"]["subscription_details"]["subscription"] == sub_id
    assert invoice["amount_paid"] == 1900

    sub = stripe_client.subscription_retrieve(subscription_id=sub_id)
    item = sub["items"]["data"][0]
    assert item["price"]["id"] == "price_sandbox_plan_pro"
    assert item["current_period_end"] > item["current_period_start"]
    assert stripe_client.invoice_retrieve(invoice_id=invoice["id"])["id"] == invoice["id"]

    renewed = Client().post(f"/sandbox/stripe/subscriptions/{sub_id}/renew")
    assert renewed.status_code == 200
    cycle = receiver.events(4)[3]
    assert cycle["type"] == "invoice.paid"
    assert cycle["data"]["object"]["billing_reason"] == "subscription_cycle"
    assert cycle["data"]["object"]["parent"]["subscription_details"]["subscription"] == sub_id
    assert cycle["data"]["object"]["period_start"] == item["current_period_end"]
    after = stripe_client.subscription_retrieve(subscription_id=sub_id)["items"]["data"][0]
    assert after["current_period_start"] == item["current_period_end"]


def test_the_portal_lists_the_subscription_and_cancelling_sends_events(sandbox, receiver):
    session = _create(mode="subscription", price_id="price_sandbox_plan_pro")
    _click(session)
    receiver.events(3)
    customer = stripe_client.checkout_session_retrieve(session_id=session.id).customer
    assert customer
    url = stripe_client.billing_portal_session_create(
        customer_id=customer, return_url="http://app.test/billing/"
    )
    page = Client().get(urlsplit(url).path)
    assert (
        page.status_code == 200 and b"Pro monthly" in page.content and b"Cancel subscription" in page.content
    )
    sub_id = stripe_client.checkout_session_retrieve(session_id=session.id).subscription

    Client().post(urlsplit(url).path + f"subscriptions/{sub_id}/cancel", {"when": "period_end"})
    updated = receiver.events(4)[3]
    assert updated["type"] == "customer.subscription.updated"
    assert updated["data"]["object"]["cancel_at_period_end"] is True
    assert updated["data"]["previous_attributes"]["cancel_at_period_end"] is False

    Client().post(urlsplit(url).path + f"subscriptions/{sub_id}/cancel", {"when": "now"})
    deleted = receiver.events(5)[4]
    assert (
        deleted["type"] == "customer.subscription.deleted"
        and deleted["data"]["object"]["status"] == "canceled"
    )


def test_another_customers_portal_cannot_cancel_a_subscription(sandbox, receiver):
    session = _create(mode="subscription", price_id="price_sandbox_plan_pro")
    _click(session)
    receiver.events(3)
    sub_id = stripe_client.checkout_session_retrieve(session_id=session.id).subscription
    other = stripe_client.customer_create(email="bob@example.com", user_id=7)
    url = stripe_client.billing_portal_session_create(customer_id=other, return_url="http://app.test/")
    assert Client().post(urlsplit(url).path + f"subscriptions/{sub_id}/cancel").status_code == 404


def test_a_refund_sends_charge_refunded_with_the_amount(sandbox, receiver, settings):
    session = _create()
    _click(session)
    receiver.events(1)
    intent_id = stripe_client.checkout_session_retrieve(session_id=session.id).payment_intent
    assert intent_id
    pi = _sdk(sandbox, settings).v1.payment_intents.retrieve(intent_id)
    response = Client().post(f"/sandbox/stripe/charges/{pi.latest_charge}/refund?amount=400")
    assert response.status_code == 200
    refunded = receiver.events(2)[1]
    assert refunded["type"] == "charge.refunded"
    assert (
        refunded["data"]["object"]["amount_refunded"] == 400
        and refunded["data"]["object"]["refunded"] is False
    )
    assert refunded["data"]["object"]["metadata"]["purchase"] == "p1"
    too_much = Client().post(f"/sandbox/stripe/charges/{pi.latest_charge}/refund?amount=601")
    assert too_much.status_code == 400 and too_much.json()["error"]["param"] == "amount"


def test_a_delayed_payment_that_fails_sends_async_payment_failed(sandbox, receiver):
    session = _create()
    _click(session, outcome="fail")
    completed, failed = receiver.events(2)
    assert completed["data"]["object"]["payment_status"] == "unpaid"
    assert failed["type"] == "checkout.session.async_payment_failed"


def test_cancel_redirects_to_cancel_url_and_leaves_the_session_open(sandbox, receiver):
    session = _create()
    response = _click(session, button="cancel")
    assert response.status_code == 302 and response["Location"] == "http://app.test/billing/cancelled"
    assert stripe_client.checkout_session_retrieve(session_id=session.id).status == "open"


def test_the_hosted_pay_button_refuses_get(sandbox):
    session = _create()
    assert Client().get(_path(session) + "pay").status_code == 405


def test_an_expired_session_cannot_be_paid_or_expired_again(sandbox, receiver):
    session = _create()
    expired = stripe_client.checkout_session_expire(session_id=session.id)
    assert expired.status == "expired" and expired.url is None
    assert receiver.events(1)[0]["type"] == "checkout.session.expired"
    assert Client().post(f"/sandbox/stripe/checkout/{session.id}/pay").status_code == 400
    with pytest.raises(IntegrationError) as err:
        stripe_client.checkout_session_expire(session_id=session.id)
    assert err.value.category == Category.VALIDATION and err.value.status == 400


def test_a_failing_receiver_gets_retries(sandbox, receiver):
    receiver.failures_left = 2
    _click(_create())
    [event] = receiver.events(1)
    assert receiver.failed == 2 and event["type"] == "checkout.session.completed"


# --- Webhook faults ---------------------------------------------------------------------------------
def test_bad_signature_fault_fails_verification(sandbox, receiver, settings):
    fault_inject(service="stripe", operation="webhook", kind="bad_signature")
    _click(_create())
    [(headers, body)] = receiver.wait_for(1)
    with pytest.raises(IntegrationError) as err:
        stripe_client.webhook_construct_event(payload=body, sig_header=headers["Stripe-Signature"])
    assert err.value.category == Category.VALIDATION and err.value.retryable is False
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], settings.STRIPE_WEBHOOK_SECRET)


def test_duplicate_fault_sends_the_same_event_twice(sandbox, receiver):
    fault_inject(service="stripe", operation="webhook", kind="duplicate_webhook")
    _click(_create())
    first, second = receiver.events(2)
    assert first["id"] == second["id"] and first["type"] == "checkout.session.completed"


def test_reorder_fault_reverses_a_purchases_events(sandbox, receiver):
    fault_inject(service="stripe", operation="webhook", kind="reorder_webhooks")
    _click(_create(mode="subscription", price_id="price_sandbox_plan_pro"))
    assert [e["type"] for e in receiver.events(3)] == [
        "invoice.paid",
        "customer.subscription.created",
        "checkout.session.completed",
    ]


def test_drop_fault_delivers_nothing_but_the_event_is_listed(sandbox, receiver, settings):
    fault_inject(service="stripe", operation="webhook", kind="drop_webhook")
    session = _create()
    _click(session)
    assert receiver.wait_for(1, timeout=1) == []
    events = _sdk(sandbox, settings).v1.events.list(params={"type": "checkout.session.completed"})
    assert events.data[0].data.object.id == session.id


# --- API behaviour ----------------------------------------------------------------------------------
def test_the_same_idempotency_key_returns_the_same_session(sandbox):
    first = _create(key="same")
    again = _create(key="same")
    assert again.id == first.id
    assert _create(key="other").id != first.id
    with pytest.raises(IntegrationError) as err:
        _create(key="same", client_reference_id="99")
    assert err.value.category == Category.VALIDATION


def test_a_wrong_key_gets_401_in_stripes_shape(sandbox, settings):
    import httpx

    response = httpx.get(
        f"{sandbox}/sandbox/stripe/v1/prices/price_sandbox_pack_1000",
        headers={"Authorization": "Bearer sk_test_wrong"},
    )
    assert response.status_code == 401
    assert (
        response.json()["error"]["type"] == "invalid_request_error" and "sk_test_wrong" not in response.text
    )
    ok = httpx.get(
        f"{sandbox}/sandbox/stripe/v1/prices/price_sandbox_pack_1000", auth=(settings.STRIPE_SECRET_KEY, "")
    )  # basic auth, as curl -u sends it
    assert ok.status_code == 200 and ok.json()["unit_amount"] == 1000


def test_the_seeded_prices_and_new_prices_are_served(sandbox, settings):
    sdk = _sdk(sandbox, settings)
    assert sdk.v1.prices.retrieve("price_sandbox_pack_3000").unit_amount == 2700
    assert sdk.v1.prices.retrieve("price_sandbox_pack_10000").unit_amount == 8000
    recurring = sdk.v1.prices.retrieve("price_sandbox_plan_pro").recurring
    assert recurring and recurring.interval == "month"
    product = sdk.v1.products.create(params={"name": "Extra"})
    price = sdk.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 500,
            "recurring": {"interval": "month"},
        }
    )
    assert sdk.v1.prices.retrieve(price.id).type == "recurring"
    assert {p.id for p in sdk.v1.prices.list(params={"limit": 100}).data} >= {
        price.id,
        "price_sandbox_pack_1000",
    }


def test_mode_and_price_type_must_match(sandbox):
    with pytest.raises(IntegrationError) as err:
        _create(mode="payment", price_id="price_sandbox_plan_pro")
    assert err.value.category == Category.VALIDATION and err.value.status == 400
    with pytest.raises(IntegrationError) as err:
        _create(mode="subscription", price_id="price_sandbox_pack_1000", key="k2")
    assert err.value.category == Category.VALIDATION
    with pytest.raises(IntegrationError) as err:
        _create(price_id="price_missing", key="k3")
    assert (err.value.invalid_fields or [{}])[0].get("field") == "line_items[0][price]"


def test_an_unknown_object_is_a_404_resource_missing(sandbox):
    with pytest.raises(IntegrationError) as err:
        stripe_client.subscription_retrieve(subscription_id="sub_nope")
    assert err.value.status == 404 and err.value.category == Category.VALIDATION
    assert "resource_missing" in err.value.detail


def test_parse_form_builds_nested_lists_and_dicts():
    from sandbox.stripe.views import parse_form

    parsed = parse_form(
        [
            ("line_items[0][price]", "p"),
            ("line_items[0][quantity]", "1"),
            ("metadata[a]", "b"),
            ("expand[]", "x"),
            ("expand[]", "y"),
            ("mode", "payment"),
        ]
    )
    assert parsed == {
        "line_items": [{"price": "p", "quantity": "1"}],
        "metadata": {"a": "b"},
        "expand": ["x", "y"],
        "mode": "payment",
    }


def test_events_are_listed_newest_first(sandbox, receiver, settings):
    _click(_create(mode="subscription", price_id="price_sandbox_plan_pro"))
    receiver.events(3)
    listed = _sdk(sandbox, settings).v1.events.list(params={"limit": 2})
    assert listed.has_more is True and len(listed.data) == 2
    assert listed.data[0].type == "invoice.paid"


def test_retrieved_dicts_are_json_serialisable(sandbox, receiver):
    _click(_create(mode="subscription", price_id="price_sandbox_plan_pro"))
    invoice_id = receiver.events(3)[2]["data"]["object"]["id"]
    # Billing stores these in JSONFields: the SDK's Decimal fields must come back as strings.
    invoice = stripe_client.invoice_retrieve(invoice_id=invoice_id)
    assert json.loads(json.dumps(invoice))["id"] == invoice_id
