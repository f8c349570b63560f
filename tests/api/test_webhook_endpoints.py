"""Webhook endpoints over the API (httpx against the live server): the account page's services,
the secret shown once, a test event verified with the official Standard Webhooks library, the
delivery log, scopes, and another token's endpoints 404."""

from __future__ import annotations

import uuid

import httpx
import pytest
from openapi_schema_validator import OAS31Validator

from fluxsite.accounts.models import WebhookDelivery, WebhookEndpoint
from fluxsite.accounts.services.webhooks import ENDPOINTS_MAX, webhook_endpoint_create
from tests.api.conftest import token_for

pytestmark = pytest.mark.django_db(transaction=True)
EVENTS = ["training.succeeded", "generation.failed"]


def _client(base: str, user, scopes=("read", "webhooks")) -> httpx.Client:
    _, secret = token_for(user, scopes=scopes, name="hooks")
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=20)


@pytest.fixture
def http(live_server, alice):
    with _client(live_server.url, alice) as client:
        yield client


def test_an_endpoint_made_over_the_api_shows_its_secret_once_and_its_test_event_verifies(http, receiver):
    made = http.post("/api/v1/webhooks", json={"url": receiver.url, "events": EVENTS})
    assert made.status_code == 201, made.text
    body = made.json()
    endpoint = WebhookEndpoint.objects.get()
    assert body["id"] == endpoint.pk and made.headers["Location"] == f"/api/v1/webhooks/{endpoint.pk}"
    assert body["secret"] == endpoint.secret and body["secret"].startswith("whsec_")
    assert body["events"] == EVENTS and body["url"] == receiver.url
    doc = http.get("/api/v1/openapi.json").json()
    created = doc["paths"]["/api/v1/webhooks"]["post"]["responses"]["201"]["content"]
    schema = next(iter(created.values()))["schema"]
    OAS31Validator({**schema, "components": doc["components"]}).validate(body)
    listed = http.get("/api/v1/webhooks").json()
    assert [e["id"] for e in listed["items"]] == [endpoint.pk] and listed["next_cursor"] == ""
    assert "secret" not in listed["items"][0]
    assert "secret" not in http.get(f"/api/v1/webhooks/{endpoint.pk}").json()

    tested = http.post(f"/api/v1/webhooks/{endpoint.pk}/test")
    assert tested.status_code == 202, tested.text
    [payload] = receiver.verified(body["secret"])  # the official library, with the secret we were given
    assert payload["type"] == "webhook.test" and payload["data"]["endpoint_id"] == endpoint.pk
    delivery = WebhookDelivery.objects.get()
    assert tested.json()["event_id"] == delivery.event_id == receiver.requests[0][1]["webhook-id"]

    log = http.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries").json()
    [entry] = log["items"]
    assert (entry["id"], entry["type"], entry["status"], entry["attempts"]) == (
        delivery.pk,
        "webhook.test",
        "succeeded",
        1,
    )
    assert entry["last_status_code"] == 200 and entry["payload"] == payload

    assert http.delete(f"/api/v1/webhooks/{endpoint.pk}").status_code == 204
    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()
    assert http.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries").status_code == 404
    assert http.delete(f"/api/v1/webhooks/{endpoint.pk}").status_code == 404


def test_a_retried_create_with_the_same_key_makes_one_endpoint_and_answers_the_same_secret(http, receiver):
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = http.post("/api/v1/webhooks", json={"url": receiver.url, "events": EVENTS}, headers=key)
    again = http.post("/api/v1/webhooks", json={"url": receiver.url, "events": EVENTS}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert WebhookEndpoint.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"url": "ftp://example.com/x", "events": EVENTS}, "url", "Enter an http:// or https:// URL."),
        ({"url": "not a url", "events": EVENTS}, "url", "Enter a valid URL."),
        ({"url": "https://example.com/h", "events": ["nope"]}, "events", "not one of the available choices"),
        ({"url": "https://example.com/h", "events": []}, "events", "This field is required."),
    ],
)
def test_a_bad_endpoint_is_a_422_with_the_account_pages_message(http, body, field, message):
    answer = http.post("/api/v1/webhooks", json=body)
    assert answer.status_code == 422 and answer.headers["Content-Type"] == "application/problem+json"
    errors = answer.json()["errors"]
    assert [e["field"] for e in errors] == [field] and message in errors[0]["message"]
    assert not WebhookEndpoint.objects.exists()


def test_a_private_destination_is_refused_in_production(settings, http):
    settings.WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS = False
    answer = http.post("/api/v1/webhooks", json={"url": "https://127.0.0.1/hooks", "events": EVENTS})
    assert answer.status_code == 422
    assert "only to public addresses" in answer.json()["errors"][0]["message"]
    assert answer.json()["errors"][0]["field"] == "url"
    assert not WebhookEndpoint.objects.exists()


def test_the_endpoint_limit_holds_over_the_api(http, alice):
    for n in range(ENDPOINTS_MAX):
        webhook_endpoint_create(user=alice, url=f"https://93.184.215.{n + 1}/h", events=EVENTS)
    answer = http.post("/api/v1/webhooks", json={"url": "https://93.184.215.99/h", "events": EVENTS})
    assert answer.status_code == 422 and "delete one first" in answer.json()["detail"]
    assert WebhookEndpoint.objects.count() == ENDPOINTS_MAX


def test_writes_need_the_webhooks_scope_and_reads_need_read(live_server, alice, receiver):
    endpoint = webhook_endpoint_create(user=alice, url=receiver.url, events=EVENTS)
    with _client(live_server.url, alice, scopes=("read", "train", "generate")) as reader:
        assert reader.get("/api/v1/webhooks").status_code == 200
        assert reader.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries").status_code == 200
        for method, path in [
            ("POST", "/api/v1/webhooks"),
            ("POST", f"/api/v1/webhooks/{endpoint.pk}/test"),
            ("DELETE", f"/api/v1/webhooks/{endpoint.pk}"),
        ]:
            answer = reader.request(method, path, json={"url": receiver.url, "events": EVENTS})
            assert answer.status_code == 403, (method, path)
            assert "“webhooks”" in answer.json()["detail"]
    with _client(live_server.url, alice, scopes=("webhooks",)) as writer:
        assert writer.get("/api/v1/webhooks").status_code == 403
        assert writer.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries").status_code == 403
    assert WebhookEndpoint.objects.count() == 1 and receiver.requests == []


def test_another_tokens_endpoints_are_404_and_not_listed(live_server, alice, bob, receiver):
    endpoint = webhook_endpoint_create(user=alice, url=receiver.url, events=EVENTS)
    with _client(live_server.url, bob) as bobs:
        assert bobs.get("/api/v1/webhooks").json()["items"] == []
        assert bobs.get(f"/api/v1/webhooks/{endpoint.pk}").status_code == 404
        assert bobs.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries").status_code == 404
        assert bobs.post(f"/api/v1/webhooks/{endpoint.pk}/test").status_code == 404
        assert bobs.delete(f"/api/v1/webhooks/{endpoint.pk}").status_code == 404
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists() and receiver.requests == []
    assert not WebhookDelivery.objects.exists()
