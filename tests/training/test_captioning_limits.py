"""Captioning's limits, access and idempotency: checked before anything is paid or sent."""

from __future__ import annotations

import pytest
from django.db import connections
from django.urls import reverse

from billing.models import CreditEntry, Wallet
from sandbox.replicate.models import SandboxPrediction
from tests.helpers import balance, run_concurrently
from tests.training.conftest import add_photos
from tests.training.test_captioning import start
from training import services
from training.models import CaptionBatch

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_start_refuses_get_and_sends_a_visitor_to_log_in(client, alice_client, training):
    url = reverse("training:caption_start", args=[training.pk])
    assert alice_client.get(url).status_code == 405
    response = client.post(url)
    assert response.status_code == 302 and "/login" in response["Location"]


def test_another_users_dataset_is_404_and_nothing_is_started(sandbox, alice_client, bob_client, training):
    add_photos(alice_client, training, 1)
    assert start(bob_client, training).status_code == 404
    estimate = reverse("training:caption_estimate", args=[training.pk])
    assert bob_client.get(estimate, {"photos": "all"}).status_code == 404
    assert not CaptionBatch.objects.exists()


def test_photos_per_batch_at_the_limit_and_past_it(sandbox, settings, alice, alice_client, training):
    settings.CAPTION_MAX_PHOTOS_PER_BATCH = 2
    add_photos(alice_client, training, 3)
    before = balance(alice)
    response = start(alice_client, training)
    assert response.status_code == 400
    assert b"3 photos chosen; a batch captions at most 2." in response.content
    assert not CaptionBatch.objects.exists() and balance(alice) == before
    assert not SandboxPrediction.objects.exists()
    settings.CAPTION_MAX_PHOTOS_PER_BATCH = 3
    assert start(alice_client, training).status_code == 200
    assert CaptionBatch.objects.get().tasks.count() == 3


def test_running_batches_per_user_at_the_limit_and_past_it(sandbox, settings, alice, alice_client, training):
    settings.CAPTION_MAX_ACTIVE_BATCHES_PER_USER = 1
    settings.SANDBOX_PREDICTION_SECONDS = 8  # the first batch is still running when the second asks
    other = services.training_create(owner=alice, name="Other", trigger_word="ohwx_o", subject_kind="style")
    add_photos(alice_client, training, 1)
    add_photos(alice_client, other, 1, start_seed=2000)
    assert start(alice_client, training).status_code == 200
    before = balance(alice)
    response = start(alice_client, other)
    assert response.status_code == 400
    assert b"already have 1 caption batches running" in response.content
    assert CaptionBatch.objects.count() == 1 and balance(alice) == before


def test_not_enough_credits_is_a_clear_refusal_with_nothing_stored(sandbox, alice, alice_client, training):
    add_photos(alice_client, training, 2)
    Wallet.objects.filter(user=alice).update(balance=1)
    CreditEntry.objects.filter(wallet__user=alice).delete()
    response = start(alice_client, training)
    assert response.status_code == 400
    assert b"This needs 2 credits and your balance is 1" in response.content
    assert not CaptionBatch.objects.exists() and not SandboxPrediction.objects.exists()


def test_the_same_batch_started_twice_is_one_run(sandbox, alice, alice_client, training, settings):
    settings.SANDBOX_PREDICTION_SECONDS = 5
    add_photos(alice_client, training, 2)
    before = balance(alice)
    start(alice_client, training)
    start(alice_client, training)
    batch = CaptionBatch.objects.get()
    assert CreditEntry.objects.filter(reference=batch.credit_reference).count() == 1
    assert balance(alice) == before - batch.cost_credits
    assert SandboxPrediction.objects.count() == 2


@pytest.mark.postgres
def test_the_same_batch_started_at_once_from_four_threads_is_one_run(sandbox, alice, settings):
    settings.SANDBOX_PREDICTION_SECONDS = 5
    from django.test import Client

    training = services.training_create(
        owner=alice, name="Race", trigger_word="ohwx_r", subject_kind="subject"
    )
    client = Client()
    client.force_login(alice)
    add_photos(client, training, 2)
    dataset = training.dataset
    before = balance(alice)

    def go(i: int) -> int:
        try:
            return services.caption_batch_start(
                user=alice,
                dataset=dataset,
                photos="empty",
                mode="keep",
                style="natural",
                trigger_placement="start",
            ).pk
        finally:
            connections.close_all()

    results = run_concurrently(go, 4)
    assert all(isinstance(r, int) for r in results), results
    assert len(set(results)) == 1
    batch = CaptionBatch.objects.get()
    assert CreditEntry.objects.filter(reference=batch.credit_reference).count() == 1
    assert balance(alice) == before - batch.cost_credits
    assert batch.tasks.count() == 2
