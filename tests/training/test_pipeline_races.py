"""The webhook, the poller and the owner racing on one training, for real: threads on PostgreSQL.

Every transition is a compare-and-swap, so exactly one of them wins and the credits move once.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from billing.models import CreditEntry, CreditKind
from billing.pricing import training_cost_credits
from billing.selectors import balance_for_user
from billing.services import credits_grant, credits_spend
from fluxsite.integrations.replicate_client import TrainingInfo
from tests.helpers import run_concurrently
from training.models import TrainingJob
from training.services import pipeline, training_create, trainings

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
S = TrainingJob.Status
LOGS = (
    "flux_train_replicate: 100%|##########| 1000/1000 [16:40<00:00,  1.00s/it, lr: 4.0e-04 loss: 1.000e-01]"
)


@pytest.fixture
def running_job(alice):
    credits_grant(user=alice, amount=5000, reference="test:topup")
    job = training_create(owner=alice, name="Race", trigger_word="ohwx_race", subject_kind="subject")
    cost = training_cost_credits(steps=1000)
    credits_spend(user=alice, amount=cost, reference=f"training:{job.pk}", kind=CreditKind.SPEND_TRAINING)
    TrainingJob.objects.filter(pk=job.pk).update(
        status=S.REPLICATE_TRAINING,
        params={"steps": 1000},
        cost_credits=cost,
        credit_reference=f"training:{job.pk}",
        replicate_training_id="r8race",
        replicate_status="canceled",
        stage_times={},
        last_news_at=timezone.now(),
    )
    job.refresh_from_db()
    return job


def info(status: str, **extra) -> TrainingInfo:
    fields = {
        "id": "r8race",
        "status": status,
        "output_version": None,
        "weights_url": None,
        "logs": LOGS,
        "error": None,
        "predict_time": 1000.0,
        "created_at": None,
        "started_at": None,
        "completed_at": None,
    }
    return TrainingInfo(**(fields | extra))


def test_a_success_reported_by_webhook_and_poller_at_once_moves_the_job_once(running_job, monkeypatch):
    advanced: list[int] = []
    monkeypatch.setattr(pipeline, "_enqueue_advance", lambda job_id: advanced.append(job_id))
    done = info(
        "succeeded",
        output_version="fluxsite/race:" + "a" * 64,
        weights_url="https://replicate.delivery/x.tar",
    )

    run_concurrently(lambda i: pipeline.training_apply_replicate(info=done), 6)

    job = TrainingJob.objects.get(pk=running_job.pk)
    assert job.status == S.HUGGINGFACE_UPLOAD
    assert advanced == [job.pk]
    assert job.events.filter(message__startswith="Replicate training succeeded").count() == 1


def test_a_failure_reported_many_times_at_once_refunds_exactly_once(running_job, alice):
    before = balance_for_user(alice)

    run_concurrently(
        lambda i: pipeline.training_apply_replicate(info=info("failed", error="CUDA out of memory")), 6
    )

    job = TrainingJob.objects.get(pk=running_job.pk)
    assert job.status == S.FAILED
    assert (
        CreditEntry.objects.filter(kind=CreditKind.REFUND, reference=f"refund:training:{job.pk}").count() == 1
    )
    assert balance_for_user(alice) == before + (job.cost_credits or 0)


def test_the_owner_canceling_while_replicate_reports_failure_ends_once_with_one_refund(
    running_job, alice, sandbox
):
    from fluxsite.integrations import replicate_client
    from tests.sandbox.replicate_kit import dataset_url, good_dataset

    # A real (sandbox) training, so the owner's cancel really reaches Replicate.
    replicate_client.model_ensure(owner="fluxsite", name="race")
    created = replicate_client.training_create(
        destination="fluxsite/race", input={"input_images": dataset_url(good_dataset()), "steps": 6000}
    )
    TrainingJob.objects.filter(pk=running_job.pk).update(
        replicate_training_id=created.id, replicate_status=""
    )
    before = balance_for_user(alice)
    job = TrainingJob.objects.get(pk=running_job.pk)
    failed = info("failed", id=created.id, error="boom")

    def act(i: int):
        if i % 2:
            return pipeline.training_apply_replicate(info=failed)
        return trainings.training_cancel(job=TrainingJob.objects.get(pk=job.pk))

    results = run_concurrently(act, 6)

    job.refresh_from_db()
    assert job.status in (S.FAILED, S.CANCELED)
    assert (
        CreditEntry.objects.filter(kind=CreditKind.REFUND, reference=f"refund:training:{job.pk}").count() == 1
    )
    assert balance_for_user(alice) == before + (job.cost_credits or 0)
    losers = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(r, pipeline.PipelineError) for r in losers), losers
