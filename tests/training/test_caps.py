"""Issue 13, item 3: caps on concurrent work per user, checked in the spend's transaction.

Real threads on PostgreSQL (SQLite ignores select_for_update): many starts at once, and exactly the
cap succeeds. The task that would run the work is not enqueued here (the pipeline itself is tested
elsewhere); what is tested is the count under the wallet lock.
"""

from __future__ import annotations

import pytest

from billing.selectors import balance_for_user
from billing.services import credits_grant
from generations.models import Generation
from generations.services import GenerationError, generation_start
from tests.generations.generation_kit import PARAMS, lora_model
from tests.helpers import run_concurrently
from training.models import TrainingJob
from training.services import pipeline, training_create, trainings

TRAINING_PARAMS = {
    "steps": 1000,
    "learning_rate": 0.0004,
    "lora_rank": 16,
    "batch_size": 1,
    "resolution": "512,768,1024",
    "optimizer": "adamw8bit",
    "caption_dropout_rate": 0.05,
    "autocaption": True,
}


@pytest.fixture
def no_work(monkeypatch):
    from generations.services import generation

    monkeypatch.setattr(pipeline, "_enqueue_advance", lambda job_id: None)
    monkeypatch.setattr(generation, "_enqueue_submit", lambda generation_id: None)


def test_a_training_over_the_cap_is_refused_with_a_message_and_charged_nothing(alice, settings, no_work, db):
    settings.DATASET_MIN_IMAGES = 0
    settings.MAX_ACTIVE_TRAININGS_PER_USER = 1
    credits_grant(user=alice, amount=10_000, reference="test:topup")
    first, second = (
        training_create(owner=alice, name=f"T{i}", trigger_word="ohwx_t", subject_kind="subject")
        for i in range(2)
    )
    trainings.training_start(job=first, params=TRAINING_PARAMS)
    before = balance_for_user(alice)
    with pytest.raises(pipeline.PipelineError, match="1 trainings running, the most at once"):
        trainings.training_start(job=second, params=TRAINING_PARAMS)
    assert balance_for_user(alice) == before
    assert TrainingJob.objects.get(pk=second.pk).status == TrainingJob.Status.DRAFT


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_training_starts_stop_exactly_at_the_cap(alice, settings, no_work):
    settings.DATASET_MIN_IMAGES = 0
    settings.MAX_ACTIVE_TRAININGS_PER_USER = 2
    credits_grant(user=alice, amount=100_000, reference="test:topup")
    jobs = [
        training_create(owner=alice, name=f"T{i}", trigger_word="ohwx_t", subject_kind="subject")
        for i in range(6)
    ]
    results = run_concurrently(
        lambda i: trainings.training_start(
            job=TrainingJob.objects.get(pk=jobs[i].pk), params=TRAINING_PARAMS
        ),
        6,
    )
    started = [r for r in results if isinstance(r, TrainingJob)]
    refused = [r for r in results if isinstance(r, pipeline.PipelineError)]
    assert len(started) == 2 and len(refused) == 4, results
    assert TrainingJob.objects.filter(owner=alice, status=TrainingJob.Status.INITIALIZING).count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_generations_stop_exactly_at_the_cap_and_charge_only_those(alice, settings, no_work):
    settings.MAX_QUEUED_GENERATIONS_PER_USER = 3
    credits_grant(user=alice, amount=10_000, reference="test:topup")
    model = lora_model(alice, replicate_version="fluxsite/lora-x:" + "a" * 64)
    before = balance_for_user(alice)
    results = run_concurrently(
        lambda i: generation_start(user=alice, model=model, prompt=f"a cat {i}", params=dict(PARAMS)), 8
    )
    made = [r for r in results if isinstance(r, Generation)]
    refused = [r for r in results if isinstance(r, GenerationError)]
    assert len(made) == 3 and len(refused) == 5, results
    assert all("the most at once" in str(r) for r in refused)
    assert balance_for_user(alice) == before - sum(g.cost_credits for g in made)
