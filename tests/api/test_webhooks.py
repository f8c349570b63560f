"""Outbound webhooks: endpoints on the account page, Standard Webhooks signatures checked by the
official `standardwebhooks` library in a receiver of the test's own, retries with backoff,
destinations checked, owner scoping, and a task run twice that delivers once."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from standardwebhooks import Webhook, WebhookVerificationError

from fluxsite.accounts.models import WebhookDelivery, WebhookEndpoint
from fluxsite.accounts.services.webhooks import (
    RETRY_DELAYS_SECONDS,
    WebhookError,
    destination_check,
    webhook_delivery_send,
    webhook_endpoint_create,
    webhook_event_emit,
    webhook_test_send,
)
from fluxsite.accounts.tasks import webhook_delivery_send_task
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
D = WebhookDelivery.Status


def endpoint_for(user, url, events=("training.succeeded", "training.failed")):
    return webhook_endpoint_create(user=user, url=url, events=list(events))


def test_an_endpoint_made_on_the_account_page_shows_its_secret_once_and_gets_a_verified_test_event(
    alice_client, receiver
):
    response = alice_client.post(
        "/account/webhooks/",
        {"url": receiver.url, "events": ["training.succeeded", "generation.failed"]},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    shown = re.search(r'id="new-webhook-secret">([^<]+)<', response.content.decode())
    assert shown is not None
    secret = shown.group(1)
    endpoint = WebhookEndpoint.objects.get()
    assert secret == endpoint.secret and secret.startswith("whsec_")
    import base64

    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    assert endpoint.events == ["training.succeeded", "generation.failed"]
    assert secret not in alice_client.get("/account/").content.decode()  # shown once

    response = alice_client.post(f"/account/webhooks/{endpoint.pk}/test/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    [payload] = receiver.verified(secret)
    assert payload["type"] == "webhook.test" and payload["data"]["endpoint_id"] == endpoint.pk
    delivery = WebhookDelivery.objects.get()
    assert receiver.requests[0][1]["webhook-id"] == delivery.event_id and delivery.event_id.startswith("msg_")
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (D.SUCCEEDED, 1, 200)
    page = alice_client.get("/account/").content.decode()
    assert delivery.event_id in page and "Delivered" in page  # the delivery log

    # Another secret, or a changed body, fails the official verification: the check can fail.
    body, headers = receiver.requests[0]
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"x" * 24).decode()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"Hello", b"Hallo"), headers)


@pytest.mark.parametrize(
    ("url", "events"), [("ftp://example.com/x", ["training.succeeded"]), ("https://example.com/", ["nope"])]
)
def test_a_bad_endpoint_gets_a_clear_message_and_nothing_is_made(alice_client, url, events):
    response = alice_client.post(
        "/account/webhooks/", {"url": url, "events": events}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 400
    assert b"errorlist" in response.content or b"error" in response.content
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hooks",
        "https://localhost:8443/hooks",
        "https://169.254.169.254/latest",
        "https://10.0.0.7/",
    ],
)
def test_a_private_destination_is_refused_in_production(settings, alice_client, url):
    settings.DEBUG = False
    settings.WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS = False
    response = alice_client.post(
        "/account/webhooks/", {"url": url, "events": ["training.succeeded"]}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 400
    assert "only to public addresses" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_production_wants_https_and_a_public_address_passes(settings):
    settings.DEBUG = False
    settings.WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS = False
    with pytest.raises(WebhookError, match="https"):
        destination_check("http://93.184.215.14/hooks")
    destination_check("https://93.184.215.14/hooks")  # a public literal: no DNS needed


def test_a_destination_that_turned_private_is_checked_again_at_send_time(settings, alice, receiver):
    endpoint = endpoint_for(alice, receiver.url)  # allowed while registering (sandbox settings)
    settings.WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS = False
    delivery = webhook_test_send(user=alice, endpoint_id=endpoint.pk)
    delivery.refresh_from_db()
    assert receiver.requests == []
    assert delivery.status == D.PENDING and "public addresses" in delivery.last_error


def test_a_failed_delivery_is_retried_with_backoff_by_the_reconcile(alice, receiver):
    endpoint = endpoint_for(alice, receiver.url)
    receiver.codes = [500, 200]
    before = timezone.now()
    delivery = webhook_test_send(user=alice, endpoint_id=endpoint.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (D.PENDING, 1, 500)
    assert "500" in delivery.last_error
    assert delivery.next_attempt_at is not None
    wait = (delivery.next_attempt_at - before).total_seconds()
    assert RETRY_DELAYS_SECONDS[0] - 1 <= wait <= RETRY_DELAYS_SECONDS[0] + 5

    out = io.StringIO()
    call_command("webhooks_reconcile", stdout=out)  # not due yet: nothing sent
    assert "webhooks_due: 0" in out.getvalue() and len(receiver.requests) == 1

    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    call_command("webhooks_reconcile", stdout=out)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (D.SUCCEEDED, 2, 200)
    first, second = receiver.verified(endpoint.secret)
    assert first == second
    assert receiver.requests[0][1]["webhook-id"] == receiver.requests[1][1]["webhook-id"]  # same message


def test_the_delays_grow_and_the_last_attempt_fails_the_delivery(settings, alice, receiver):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    endpoint = endpoint_for(alice, receiver.url)
    receiver.codes = [503, 500, 500]
    delivery = webhook_test_send(user=alice, endpoint_id=endpoint.pk)
    waits = []
    for _ in range(2):
        delivery.refresh_from_db()
        assert delivery.next_attempt_at is not None
        waits.append((delivery.next_attempt_at - delivery.updated_at).total_seconds())
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        assert webhook_delivery_send(delivery_id=delivery.pk) in ("retry", "failed")
    delivery.refresh_from_db()
    assert [round(w) for w in waits] == [5, 30]
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == (D.FAILED, 3, None)
    assert len(receiver.requests) == 3


def test_a_delivery_sent_twice_is_delivered_once(alice, receiver):
    endpoint = endpoint_for(alice, receiver.url)
    [delivery_id] = webhook_event_emit(
        user_id=alice.pk, event_type="training.succeeded", data={"training": {"id": 1}}
    )
    assert len(receiver.requests) == 1  # sent on commit
    assert webhook_delivery_send_task(delivery_id) == "skipped"
    assert webhook_delivery_send_task(delivery_id) == "skipped"
    assert len(receiver.requests) == 1
    # A claimed attempt in flight (another worker) is not sent again either.
    WebhookDelivery.objects.filter(pk=delivery_id).update(status=D.PENDING, next_attempt_at=timezone.now())
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        attempts=delivery.attempts + 1, next_attempt_at=timezone.now() + timedelta(seconds=60)
    )
    assert webhook_delivery_send_task(delivery_id) == "skipped"
    assert len(receiver.requests) == 1
    assert receiver.verified(endpoint.secret)[0]["type"] == "training.succeeded"


def test_an_event_goes_only_to_endpoints_that_chose_it(alice, bob, receiver):
    endpoint_for(alice, receiver.url, events=["generation.succeeded"])
    endpoint_for(bob, receiver.url, events=["training.succeeded"])
    assert webhook_event_emit(user_id=alice.pk, event_type="training.succeeded", data={}) == []
    assert receiver.requests == []


def test_another_users_endpoint_is_404(alice, bob_client, receiver):
    endpoint = endpoint_for(alice, receiver.url)
    assert bob_client.post(f"/account/webhooks/{endpoint.pk}/test/").status_code == 404
    assert bob_client.get(f"/account/webhooks/{endpoint.pk}/delete/").status_code == 404
    assert bob_client.post(f"/account/webhooks/{endpoint.pk}/delete/").status_code == 404
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists() and receiver.requests == []


def test_deleting_an_endpoint_asks_first_then_deletes_it(alice_client, alice, receiver):
    endpoint = endpoint_for(alice, receiver.url)
    page = alice_client.get("/account/").content.decode()
    assert f'hx-post="/account/webhooks/{endpoint.pk}/delete/"' in page and "hx-confirm=" in page
    confirm = alice_client.get(f"/account/webhooks/{endpoint.pk}/delete/")
    assert confirm.status_code == 200 and "Delete this endpoint?" in confirm.content.decode()
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    response = alice_client.post(f"/account/webhooks/{endpoint.pk}/delete/")
    assert response.status_code == 302 and not WebhookEndpoint.objects.exists()


# --- Events from the pipelines, over the sandbox ------------------------------------------------------
PARAMS = {
    "steps": 1000,
    "learning_rate": 0.0004,
    "lora_rank": 16,
    "batch_size": 1,
    "resolution": "512,768,1024",
    "optimizer": "adamw8bit",
    "caption_dropout_rate": 0.05,
    "autocaption": True,
}


def test_a_training_finishing_in_the_sandbox_delivers_training_succeeded(
    sandbox, settings, alice, alice_client, receiver
):
    from billing.services import credits_grant
    from tests.training.conftest import add_photos
    from training.models import TrainingJob
    from training.services import training_create, trainings

    endpoint = endpoint_for(alice, receiver.url, events=["training.succeeded", "training.stage_changed"])
    credits_grant(user=alice, amount=5000, reference="test:topup")
    settings.REPLICATE_TIMEOUT_SECONDS = 5
    job = training_create(owner=alice, name="Anna", trigger_word="ohwx_anna", subject_kind="subject")
    add_photos(alice_client, job, 10)
    trainings.training_start(job=job, params=PARAMS)

    def succeeded_delivered() -> bool:
        return any(json.loads(body)["type"] == "training.succeeded" for body, _ in list(receiver.requests))

    assert wait_for(succeeded_delivered, timeout=40), TrainingJob.objects.get(pk=job.pk).status
    payloads = receiver.verified(endpoint.secret)
    done = [p for p in payloads if p["type"] == "training.succeeded"]
    assert len(done) == 1 and done[0]["data"]["training"]["id"] == job.pk
    assert done[0]["data"]["training"]["status"] == "succeeded"
    stages = [p["data"]["training"]["status"] for p in payloads if p["type"] == "training.stage_changed"]
    assert stages[0] == "initializing" and "replicate_training" in stages and stages[-1] == "succeeded"
    assert stages == sorted(set(stages), key=stages.index)  # each stage once, in order


def test_a_generation_succeeding_in_the_sandbox_delivers_generation_succeeded(sandbox, alice, receiver):
    from generations.models import Generation
    from generations.services import generation_start
    from tests.generations.generation_kit import PARAMS as GENERATION_PARAMS
    from tests.generations.generation_kit import lora_model, sandbox_version

    endpoint = endpoint_for(alice, receiver.url, events=["generation.succeeded", "generation.failed"])
    model = lora_model(alice, replicate_version=sandbox_version("alice"))
    generation = generation_start(user=alice, model=model, prompt="a cat", params=dict(GENERATION_PARAMS))
    assert wait_for(lambda: len(receiver.requests) >= 1, timeout=30)
    [payload] = receiver.verified(endpoint.secret)
    assert payload["type"] == "generation.succeeded"
    assert payload["data"]["generation"] == {
        "id": generation.pk,
        "status": Generation.Status.SUCCEEDED,
        "model_id": model.pk,
        "error_message": "",
    }


def test_the_verifier_in_the_api_docs_accepts_our_delivery_and_refuses_a_forged_one(
    monkeypatch, alice, receiver
):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    verifier = re.findall(r"```python\n(.*?)```", doc, re.S)[1]
    namespace: dict = {}
    exec(verifier, namespace)  # the docs' own example
    endpoint = endpoint_for(alice, receiver.url)
    monkeypatch.setenv("FLUXSITE_WEBHOOK_SECRET", endpoint.secret)
    webhook_test_send(user=alice, endpoint_id=endpoint.pk)
    body, headers = receiver.requests[0]
    assert namespace["fluxsite_event"](body, headers)["type"] == "webhook.test"
    assert namespace["fluxsite_event"](body + b" ", headers) is None


def test_a_training_failing_midway_in_the_sandbox_delivers_training_failed_with_its_error(
    sandbox, settings, alice, alice_client, receiver
):
    from billing.selectors import balance_for_user
    from billing.services import credits_grant
    from sandbox.faults import fault_inject
    from sandbox.models import FaultKind
    from tests.training.conftest import add_photos
    from training.models import TrainingJob
    from training.services import training_create, trainings

    endpoint = endpoint_for(
        alice, receiver.url, events=["training.succeeded", "training.failed", "training.stage_changed"]
    )
    credits_grant(user=alice, amount=5000, reference="test:topup")
    settings.REPLICATE_TIMEOUT_SECONDS = 5
    job = training_create(owner=alice, name="Anna", trigger_word="ohwx_anna", subject_kind="subject")
    add_photos(alice_client, job, 10)
    before = balance_for_user(alice)
    # The sandbox's fault switch: the trainer crashes midway, as Replicate reports a CUDA error.
    fault_inject(service="replicate", operation="trainings.create", kind=FaultKind.FAIL_TRAINING)
    trainings.training_start(job=job, params=PARAMS)

    def failed_delivered() -> bool:
        return any(json.loads(body)["type"] == "training.failed" for body, _ in list(receiver.requests))

    assert wait_for(failed_delivered, timeout=60), TrainingJob.objects.get(pk=job.pk).status
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.FAILED
    payloads = receiver.verified(endpoint.secret)  # every delivery passes the official verifier
    [failed] = [p for p in payloads if p["type"] == "training.failed"]
    assert not [p for p in payloads if p["type"] == "training.succeeded"]
    training = failed["data"]["training"]
    assert (training["id"], training["status"]) == (job.pk, "failed")
    assert training["previous_status"] == "replicate_training"
    assert training["error_message"] == job.error_message and "trainer failed" in training["error_message"]
    stages = [p["data"]["training"]["status"] for p in payloads if p["type"] == "training.stage_changed"]
    assert stages[-1] == "failed" and "succeeded" not in stages
    assert balance_for_user(alice) == before  # refunded, as the event says nothing was kept
    # The receiver answers before the sender records the answer: wait for that record.
    assert wait_for(
        lambda: WebhookDelivery.objects.get(type="training.failed").status == D.SUCCEEDED, timeout=10
    )
    delivery = WebhookDelivery.objects.get(type="training.failed")
    assert (delivery.status, delivery.attempts) == (D.SUCCEEDED, 1)


@pytest.mark.parametrize(
    ("prompt", "fault_status", "message"),
    [
        # Replicate refuses the prediction outright (the sandbox's fault switch: a 422 on create).
        ("a cat", 422, ""),
        # The prediction runs and fails at Replicate (the sandbox's safety checker, as the real one).
        ("a nsfw cat", None, "safety filter"),
    ],
)
def test_a_generation_failing_in_the_sandbox_delivers_generation_failed(
    sandbox, alice, receiver, prompt, fault_status, message
):
    from billing.selectors import balance_for_user
    from generations.models import Generation
    from generations.services import generation_start
    from sandbox.faults import fault_inject
    from tests.generations.generation_kit import PARAMS as GENERATION_PARAMS
    from tests.generations.generation_kit import lora_model, sandbox_version

    endpoint = endpoint_for(alice, receiver.url, events=["generation.succeeded", "generation.failed"])
    model = lora_model(alice, replicate_version=sandbox_version("alice"))
    if fault_status:
        fault_inject(service="replicate", operation="predictions.create", status=fault_status)
    before = balance_for_user(alice)
    generation = generation_start(user=alice, model=model, prompt=prompt, params=dict(GENERATION_PARAMS))
    assert wait_for(lambda: len(receiver.requests) >= 1, timeout=30)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED
    [payload] = receiver.verified(endpoint.secret)
    assert payload["type"] == "generation.failed"
    assert payload["data"]["generation"] == {
        "id": generation.pk,
        "status": "failed",
        "model_id": model.pk,
        "error_message": generation.error_message,
    }
    assert generation.error_message and message in generation.error_message
    assert wait_for(lambda: balance_for_user(alice) == before)  # the credits came back
