"""Every POST: the scope it needs, another owner's objects, and input that is not even JSON."""

from __future__ import annotations

import hashlib
import json

import pytest

from api.models import IdempotencyRecord
from fluxsite.accounts.models import ApiToken, WebhookDelivery, WebhookEndpoint
from generations.models import Generation
from tests.api.conftest import Api, token_for, training
from tests.generations.generation_kit import finished_generation, lora_model, stored_image
from training.models import TrainingJob

pytestmark = pytest.mark.django_db

POSTS = [
    ("/api/v1/trainings", "train"),
    ("/api/v1/trainings/{training}/photos", "train"),
    ("/api/v1/trainings/{training}/photos/from-url", "train"),
    ("/api/v1/trainings/{training}/start", "train"),
    ("/api/v1/trainings/{training}/cancel", "train"),
    ("/api/v1/trainings/{training}/retry", "train"),
    ("/api/v1/generations", "generate"),
    ("/api/v1/images/{image}/upscale", "generate"),
    ("/api/v1/webhooks", "webhooks"),
    ("/api/v1/webhooks/{endpoint}/test", "webhooks"),
]


def test_the_list_covers_every_post_of_the_document(client):
    doc = client.get("/api/v1/openapi.json").json()
    posts = {path for path, item in doc["paths"].items() if "post" in item}
    assert posts == {
        path.replace("{training}", "{training_id}")
        .replace("{endpoint}", "{endpoint_id}")
        .replace("{image}", "{image_id}")
        for path, _ in POSTS
    }


@pytest.mark.parametrize(("path", "scope"), POSTS)
def test_every_post_needs_its_scope_and_changes_nothing_without_it(client, alice, path, scope):
    job = training(alice, status=TrainingJob.Status.FAILED)
    model = lora_model(alice, replicate_version="x/y:" + "a" * 64)
    image = stored_image(finished_generation(alice, model, images=0))
    endpoint = WebhookEndpoint.objects.create(
        owner=alice, url="https://93.184.215.14/h", events=["training.failed"], secret="whsec_x"
    )
    others = tuple(s for s in ApiToken.Scope.values if s != scope)
    api = Api(client, token_for(alice, scopes=others)[1])
    body = {"name": "Anna", "model_id": model.pk, "prompt": "a cat", "url": "https://x.test/", "events": []}
    answer = api.post(
        path.format(training=job.pk, endpoint=endpoint.pk, image=image.pk),
        body,
        headers={"Idempotency-Key": "k"},
    )
    assert answer.status_code == 403, answer.content
    assert f"“{scope}”" in answer.json()["detail"]
    assert TrainingJob.objects.count() == 1 and Generation.objects.count() == 1
    assert WebhookEndpoint.objects.count() == 1 and not WebhookDelivery.objects.exists()
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.FAILED


def test_a_body_that_is_not_json_is_a_422_problem(alice_api):
    answer = alice_api.client.post(
        "/api/v1/generations",
        "{not json",
        content_type="application/json",
        headers={"Authorization": f"Bearer {alice_api.secret}"},
    )
    assert answer.status_code in (400, 422)
    assert answer["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("key", ["", "x" * 256, "é"])
def test_a_bad_idempotency_key_is_a_422_problem_and_nothing_is_kept(alice_api, key):
    answer = alice_api.post("/api/v1/trainings", {"name": "Anna"}, headers={"Idempotency-Key": key})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "Idempotency-Key"
    assert not TrainingJob.objects.exists() and not IdempotencyRecord.objects.exists()


def test_a_key_still_in_flight_is_a_409_with_retry_after(alice, alice_api, alice_token):
    # The first request's record, as it is while that request runs (no answer stored yet); its
    # fingerprint as api.services.request_fingerprint computes it: method, path, body.
    body = json.dumps({"name": "Anna"})
    digest = hashlib.sha256(b"POST\n/api/v1/trainings\n" + body.encode()).hexdigest()
    IdempotencyRecord.objects.create(
        token=alice_token[0], key="busy", fingerprint=digest, method="POST", path="/api/v1/trainings"
    )
    answer = alice_api.post("/api/v1/trainings", {"name": "Anna"}, headers={"Idempotency-Key": "busy"})
    assert answer.status_code == 409 and answer["Retry-After"] == "1"
    assert answer.json()["type"].endswith("#problem-idempotency-key-in-use")
    assert not TrainingJob.objects.exists()
