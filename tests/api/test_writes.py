"""Writes over real HTTP (httpx against the live server, the sandbox standing in for Replicate):
generations with quotes, cancel and retry, and safe retries with an Idempotency-Key."""

from __future__ import annotations

import uuid

import httpx
import pytest

from api.models import IdempotencyRecord
from billing.selectors import balance_for_user
from generations.models import Generation
from tests.api.conftest import token_for, training
from tests.generations.generation_kit import lora_model, sandbox_version
from tests.helpers import run_concurrently, wait_for
from training.models import TrainingJob

pytestmark = pytest.mark.django_db(transaction=True)
BODY = {"prompt": "a portrait in soft light", "num_outputs": 2, "seed": 7}


@pytest.fixture
def ready_model(sandbox, alice):
    return lora_model(alice, replicate_version=sandbox_version("alice"))


@pytest.fixture
def http(sandbox, alice):
    """An httpx client with alice's token, against the live server."""
    _, secret = token_for(alice)
    with httpx.Client(base_url=sandbox, headers={"Authorization": f"Bearer {secret}"}, timeout=20) as client:
        yield client


def test_a_generation_is_created_spent_once_and_runs(alice, http, ready_model):
    before = balance_for_user(alice)
    answer = http.post("/api/v1/generations", json={**BODY, "model_id": ready_model.pk})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    generation = Generation.objects.get()
    assert (
        body["id"] == generation.pk and answer.headers["Location"] == f"/api/v1/generations/{generation.pk}"
    )
    assert body["effective_prompt"] == "ALICEX, a portrait in soft light" and body["seed"] == 7
    assert balance_for_user(alice) == before - 8
    assert wait_for(lambda: http.get(f"/api/v1/generations/{generation.pk}").json()["status"] == "succeeded")
    images = http.get(f"/api/v1/generations/{generation.pk}").json()["images"]
    assert len(images) == 2
    assert httpx.get(images[0]["url"], timeout=10).status_code == 200


def test_a_dry_run_quotes_and_validates_and_spends_nothing(alice, http, ready_model):
    before = balance_for_user(alice)
    quote = http.post("/api/v1/generations?dry_run=true", json={**BODY, "model_id": ready_model.pk})
    assert quote.status_code == 200, quote.text
    assert quote.json() == {
        "dry_run": True,
        "valid": True,
        "credits": 8,
        "dollars": "0.08",
        "balance": before,
        "enough_credits": True,
        "errors": [],
    }
    bad = http.post(
        "/api/v1/generations?dry_run=true", json={**BODY, "model_id": ready_model.pk, "lora_scale": 9}
    )
    assert bad.json()["valid"] is False and bad.json()["errors"][0]["field"] == "lora_scale"
    assert not Generation.objects.exists() and balance_for_user(alice) == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"lora_scale": 9}, "lora_scale"),
        ({"prompt": "   "}, "prompt"),
        ({"num_outputs": 9}, "num_outputs"),
        ({"aspect_ratio": "7:1"}, "aspect_ratio"),
    ],
)
def test_bad_input_is_a_422_problem_with_the_field_and_nothing_spent(alice, http, ready_model, change, field):
    before = balance_for_user(alice)
    answer = http.post("/api/v1/generations", json={**BODY, "model_id": ready_model.pk, **change})
    assert answer.status_code == 422, answer.text
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert field in [e["field"] for e in answer.json()["errors"]]
    assert not Generation.objects.exists() and balance_for_user(alice) == before


def test_short_credits_are_a_402_problem(alice, http, ready_model):
    from billing.models import CreditKind
    from billing.services import credits_spend

    credits_spend(
        user=alice,
        amount=balance_for_user(alice) - 1,
        reference="test:drain",
        kind=CreditKind.SPEND_GENERATION,
    )
    answer = http.post("/api/v1/generations", json={**BODY, "model_id": ready_model.pk})
    assert answer.status_code == 402 and answer.json()["type"].endswith("#problem-insufficient-credits")
    assert "balance is 1" in answer.json()["detail"]
    assert not Generation.objects.exists()


def test_a_model_that_is_not_ready_or_not_yours_is_refused(alice, bob, http, sandbox):
    unready = lora_model(alice, name="Unready", status="publishing")
    answer = http.post("/api/v1/generations", json={**BODY, "model_id": unready.pk})
    assert answer.status_code == 422 and "not ready" in answer.json()["detail"]
    bobs = lora_model(bob, name="Bobs", replicate_version="x/y:" + "b" * 64)
    assert http.post("/api/v1/generations", json={**BODY, "model_id": bobs.pk}).status_code == 404
    assert not Generation.objects.exists()


def test_the_generate_rate_limit_is_a_429_problem_with_retry_after(alice, http, ready_model, settings):
    from django.core.cache import cache

    cache.clear()
    settings.RATELIMIT_ENABLE = True
    settings.RATELIMITS = {**settings.RATELIMITS, "generate": "1/h"}
    assert (
        http.post(
            "/api/v1/generations", json={**BODY, "model_id": ready_model.pk, "num_outputs": 1}
        ).status_code
        == 201
    )
    answer = http.post("/api/v1/generations", json={**BODY, "model_id": ready_model.pk, "num_outputs": 1})
    assert answer.status_code == 429 and int(answer.headers["Retry-After"]) > 0
    assert answer.json()["type"].endswith("#problem-rate-limited")
    assert Generation.objects.count() == 1


def test_a_retry_after_a_dropped_response_returns_the_first_answer_without_a_second_spend(
    alice, http, ready_model
):
    before = balance_for_user(alice)
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    body = {**BODY, "model_id": ready_model.pk}
    first = http.post("/api/v1/generations", json=body, headers=headers)  # the client never saw this one
    again = http.post("/api/v1/generations", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert Generation.objects.count() == 1 and balance_for_user(alice) == before - 8
    other = http.post("/api/v1/generations", json={**body, "prompt": "another"}, headers=headers)
    assert other.status_code == 422 and other.json()["type"].endswith("#problem-idempotency-key-reused")
    assert Generation.objects.count() == 1


def test_the_same_key_is_separate_per_token_and_expires_after_a_day(
    alice, http, ready_model, sandbox, time_machine
):
    from django.core.management import call_command

    headers = {"Idempotency-Key": "k-1"}
    body = {**BODY, "model_id": ready_model.pk, "num_outputs": 1}
    assert http.post("/api/v1/generations", json=body, headers=headers).status_code == 201
    _, other = token_for(alice, name="second")
    second = httpx.post(
        f"{sandbox}/api/v1/generations",
        json=body,
        headers={**headers, "Authorization": f"Bearer {other}"},
        timeout=20,
    )
    assert second.status_code == 201 and "Idempotent-Replayed" not in second.headers
    assert Generation.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 2
    from datetime import timedelta

    from django.utils import timezone

    time_machine.move_to(timezone.now() + timedelta(days=1, minutes=1), tick=False)
    call_command("api_prune")
    assert IdempotencyRecord.objects.count() == 0


def test_a_refused_request_is_stored_too_and_replayed(alice, http, ready_model):
    headers = {"Idempotency-Key": "bad-1"}
    body = {**BODY, "model_id": ready_model.pk, "lora_scale": 9}
    first = http.post("/api/v1/generations", json=body, headers=headers)
    again = http.post("/api/v1/generations", json=body, headers=headers)
    assert first.status_code == again.status_code == 422 and again.json() == first.json()
    assert again.headers["Content-Type"] == "application/problem+json"


def test_a_training_is_canceled_and_a_failed_one_retried_with_scope_train(alice, http, sandbox):
    running = training(alice, status=TrainingJob.Status.ZIP_CREATION, cost_credits=5, params={"steps": 10})
    answer = http.post(f"/api/v1/trainings/{running.pk}/cancel")
    assert answer.status_code == 200, answer.text
    assert answer.json()["stage"] == "canceled"
    again = http.post(f"/api/v1/trainings/{running.pk}/cancel")
    assert again.status_code == 409 and again.json()["type"].endswith("#problem-conflict")
    done = training(alice, status=TrainingJob.Status.SUCCEEDED)
    assert http.post(f"/api/v1/trainings/{done.pk}/retry").status_code == 409
    _, reader = token_for(alice, scopes=("read",), name="reader")
    refused = httpx.post(
        f"{sandbox}/api/v1/trainings/{done.pk}/retry", headers={"Authorization": f"Bearer {reader}"}
    )
    assert refused.status_code == 403


@pytest.mark.postgres
def test_concurrent_duplicates_with_one_key_spend_once(alice, http, ready_model, sandbox):
    before = balance_for_user(alice)
    headers = {**http.headers, "Idempotency-Key": "race-1"}
    body = {**BODY, "model_id": ready_model.pk, "num_outputs": 1}

    def send(i: int) -> httpx.Response:
        return httpx.post(f"{sandbox}/api/v1/generations", json=body, headers=headers, timeout=30)

    results = run_concurrently(send, 4)
    assert not [r for r in results if isinstance(r, Exception)], results
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}, statuses
    assert Generation.objects.count() == 1
    assert balance_for_user(alice) == before - 4
