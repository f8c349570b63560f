"""The whole training path through the sandbox over real HTTP, and every fault the issue names.

Webhooks are real: the Replicate stand-in posts signed deliveries from its own thread to our
endpoint on the live server, which records them and processes them in a (synchronous) task.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from billing.selectors import balance_for_user
from sandbox.faults import fault_clear, fault_inject
from sandbox.models import FaultKind
from sandbox.replicate.models import SandboxTraining
from tests.helpers import sandbox_runs_finished, wait_for, wait_until
from tests.training.conftest import add_photos
from training.models import ReplicateWebhook, TrainingJob
from training.services import pipeline, trainings

pytestmark = pytest.mark.django_db(transaction=True)
S = TrainingJob.Status
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


def wait_for_status(job: TrainingJob, statuses, seconds: float = 40) -> TrainingJob:
    fresh = wait_until(
        lambda: TrainingJob.objects.get(pk=job.pk),
        lambda j: j.status in statuses,
        timeout=seconds,
        interval=0.2,
    )
    if fresh.status in statuses:
        return fresh
    raise AssertionError(
        f"training stuck in {fresh.status}; events: {list(fresh.events.values_list('message', flat=True))}"
    )


@pytest.fixture
def ready_training(sandbox, alice, alice_client, settings):
    from billing.services import credits_grant
    from training.services import training_create

    credits_grant(user=alice, amount=5000, reference="test:topup")
    settings.REPLICATE_TIMEOUT_SECONDS = 5
    job = training_create(owner=alice, name="Anna", trigger_word="ohwx_anna", subject_kind="subject")
    add_photos(alice_client, job, 10)
    return job


def cost(steps: int = 1000) -> int:
    """The price held at the start: the training and its sample grid (the default prompts)."""
    from training.services import training_estimate

    return training_estimate(steps=steps)[0]


def test_a_training_goes_from_photos_to_a_published_model(ready_training, alice, settings):
    from fluxsite.integrations import huggingface_client, storage

    before = balance_for_user(alice)
    job = trainings.training_start(job=ready_training, params=PARAMS)
    assert balance_for_user(alice) == before - cost()
    job = wait_for_status(job, (S.SUCCEEDED, S.FAILED))
    assert job.status == S.SUCCEEDED, job.error_message
    assert job.replicate_training_id and job.predict_time
    assert job.progress_step == job.progress_total == 1000
    assert len(job.loss_history) >= 2 and job.current_loss is not None
    assert set(job.stage_times) >= {
        "initializing",
        "zip_creation",
        "replicate_training",
        "huggingface_upload",
        "completion",
    }
    assert SandboxTraining.objects.count() == 1
    model = job.lora_model
    assert model.status == "ready" and model.hf_repo_id
    ours = b"".join(storage.file_iter(alias=storage.PRIVATE, name=model.weights_file_name))
    published = huggingface_client.file_download(
        repo_id=model.hf_repo_id, filename="lora.safetensors", local_dir=settings.MEDIA_ROOT
    )
    assert published.read_bytes() == ours
    assert balance_for_user(alice) == before - cost()
    assert any("is ready" in m.subject for m in mail.outbox)


@pytest.mark.parametrize(
    ("status", "category"), [(401, "authentication"), (402, "service_error"), (422, "validation")]
)
def test_a_refused_training_creation_fails_at_once_and_refunds(ready_training, alice, status, category):
    before = balance_for_user(alice)
    fault_inject(service="replicate", operation="trainings.create", status=status)
    job = trainings.training_start(job=ready_training, params=PARAMS)
    job = wait_for_status(job, (S.FAILED,), 15)
    assert job.error_category == category and job.failed_stage == S.REPLICATE_TRAINING
    assert job.error_hint
    assert balance_for_user(alice) == before
    assert SandboxTraining.objects.count() == 0
    assert any("failed" in m.subject for m in mail.outbox)


@pytest.mark.parametrize("status", [429, 500])
def test_a_passing_replicate_error_is_retried_with_backoff_and_then_succeeds(ready_training, alice, status):
    before = balance_for_user(alice)
    fault_inject(service="replicate", operation="trainings.create", status=status, retry_after=1)
    job = trainings.training_start(job=ready_training, params=PARAMS)
    job = wait_until(lambda: TrainingJob.objects.get(pk=job.pk), lambda j: j.attempts >= 1, timeout=5)
    assert job.status == S.REPLICATE_TRAINING and job.next_attempt_at and job.attempts == 1
    assert job.events.filter(
        level="warning", category="rate_limit" if status == 429 else "service_error"
    ).exists()
    TrainingJob.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    pipeline.trainings_reconcile()
    job = wait_for_status(job, (S.SUCCEEDED, S.FAILED))
    assert job.status == S.SUCCEEDED
    assert SandboxTraining.objects.count() == 1
    assert balance_for_user(alice) == before - cost()


def test_a_timed_out_creation_never_starts_a_second_training(ready_training, alice, settings):
    """The create call times out but Replicate did start it: its start webhook adopts it."""
    settings.REPLICATE_TIMEOUT_SECONDS = 1
    fault_inject(service="replicate", operation="trainings.create", kind=FaultKind.TIMEOUT, delay_seconds=1.5)
    job = trainings.training_start(job=ready_training, params=PARAMS)
    job = wait_for_status(job, (S.SUCCEEDED, S.FAILED))
    assert job.status == S.SUCCEEDED
    assert SandboxTraining.objects.count() == 1
    assert job.events.filter(message__contains="found and linked to this job").exists()


def test_a_timed_out_creation_whose_webhooks_are_lost_is_found_by_the_poller(ready_training, alice, settings):
    """Issue 11, defect 2: no webhook, no id, and the training object names no destination. The
    poller lists recent trainings and adopts ours by model, version and the dataset URL we sent;
    nobody is refunded for a training that runs, and nothing is started twice."""
    settings.REPLICATE_TIMEOUT_SECONDS = 1
    fault_inject(service="replicate", operation="trainings.create", kind=FaultKind.TIMEOUT, delay_seconds=1.5)
    fault_inject(service="replicate", operation="*", kind=FaultKind.DROP_WEBHOOK, times=None)
    before = balance_for_user(alice)
    job = trainings.training_start(job=ready_training, params=PARAMS)
    job.refresh_from_db()
    assert job.status == S.REPLICATE_TRAINING and job.replicate_training_id == ""
    assert job.replicate_input["input_images"] and job.replicate_trainer_version
    assert wait_for(lambda: SandboxTraining.objects.exists())
    TrainingJob.objects.filter(pk=job.pk).update(
        replicate_create_started_at=timezone.now() - timedelta(minutes=2)
    )
    counts = pipeline.trainings_reconcile()
    job.refresh_from_db()
    assert counts["adopted"] == 1 and job.replicate_training_id == SandboxTraining.objects.get().id
    assert job.events.filter(message__contains="found and linked to this job").exists()
    fault_clear(service="replicate")

    def poll_now() -> bool:
        # Poll it now, not after the stale window.
        TrainingJob.objects.filter(pk=job.pk).update(last_news_at=None)
        pipeline.trainings_reconcile()
        return TrainingJob.objects.get(pk=job.pk).status != S.REPLICATE_TRAINING

    wait_for(poll_now, timeout=40, interval=0.3)
    job = wait_for_status(job, (S.SUCCEEDED, S.FAILED))
    assert job.status == S.SUCCEEDED and SandboxTraining.objects.count() == 1
    assert balance_for_user(alice) == before - cost()


def test_a_training_that_starts_after_its_job_was_refunded_is_canceled_at_replicate(
    ready_training, alice, settings
):
    """The job gave up (refunded) before Replicate reported the training: when it does, we cancel it."""
    settings.REPLICATE_TIMEOUT_SECONDS = 1
    fault_inject(service="replicate", operation="trainings.create", kind=FaultKind.TIMEOUT, delay_seconds=1.5)
    fault_inject(service="replicate", operation="*", kind=FaultKind.DROP_WEBHOOK, times=None)
    before = balance_for_user(alice)
    job = trainings.training_start(job=ready_training, params=PARAMS | {"steps": 5000})
    assert wait_for(lambda: SandboxTraining.objects.exists())
    job.refresh_from_db()
    pipeline.training_fail(
        job=job, category="timeout", message="Replicate never confirmed that the training started."
    )
    assert balance_for_user(alice) == before
    from fluxsite.integrations import replicate_client

    late = replicate_client.training_get(
        training_id=SandboxTraining.objects.get().id
    )  # what its webhook carries
    assert pipeline.training_apply_replicate(info=late, job_hint=job.pk) is None
    assert SandboxTraining.objects.get().canceled_at is not None
    job.refresh_from_db()
    assert job.status == S.FAILED and job.replicate_training_id == ""
    assert job.events.filter(message__contains="canceled at Replicate").exists()


def test_an_unconfirmed_creation_is_failed_and_refunded_by_the_poller(ready_training, alice, settings):
    """A worker died after claiming the create: nothing is ever started twice; the poller refunds."""
    # No webhook of the training deleted below may arrive late and be adopted (it carries our input).
    fault_inject(service="replicate", operation="*", kind=FaultKind.DROP_WEBHOOK, times=None)
    before = balance_for_user(alice)
    job = trainings.training_start(job=ready_training, params=PARAMS | {"steps": 3000})
    # Simulate the death by rewinding to the moment after the claim, before the id was saved.
    SandboxTraining.objects.all().delete()
    TrainingJob.objects.filter(pk=job.pk).update(
        status=S.REPLICATE_TRAINING,
        replicate_training_id="",
        replicate_create_started_at=timezone.now() - timedelta(minutes=10),
    )
    pipeline.training_advance(job_id=job.pk)  # a redelivered task
    assert SandboxTraining.objects.count() == 0
    pipeline.trainings_reconcile()
    job.refresh_from_db()
    assert job.status == S.FAILED and job.error_category == "timeout"
    assert balance_for_user(alice) == before


def test_a_training_replicate_aborted_is_failed_and_refunded(ready_training, alice):
    """`aborted` (the deadline passed before the run started) is in Replicate's lifecycle docs, not in
    the generated OpenAPI types, and no recorded response shows one: the body is the recorded
    trainings-get one with only its status and id changed. Left unknown, the job would wait forever."""
    from fluxsite.integrations import replicate_client
    from sandbox.replicate.schemas import vendor_json

    before = balance_for_user(alice)
    job = trainings.training_start(job=ready_training, params=PARAMS | {"steps": 5000})
    assert wait_for(lambda: TrainingJob.objects.filter(pk=job.pk).exclude(replicate_training_id="").exists())
    job.refresh_from_db()
    body = vendor_json("recorded/trainings-get.json")["interactions"][-1]["response"]["body"]
    info = replicate_client.training_from_payload(
        {**body, "id": job.replicate_training_id, "status": "aborted"}
    )
    assert info.is_finished
    pipeline.training_apply_replicate(info=info)
    job.refresh_from_db()
    assert job.status == S.FAILED and job.error_category == "timeout"
    assert balance_for_user(alice) == before


def test_a_training_that_fails_on_replicate_is_refunded(ready_training, alice):
    before = balance_for_user(alice)
    fault_inject(service="replicate", operation="trainings.create", kind=FaultKind.FAIL_TRAINING)
    job = trainings.training_start(job=ready_training, params=PARAMS)
    job = wait_for_status(job, (S.FAILED, S.SUCCEEDED))
    assert job.status == S.FAILED and "trainer failed" in job.error_message
    assert 0 < job.progress_step < 1000
    assert balance_for_user(alice) == before
    # The e-mail goes out once the failure is committed, in the thread that handled the webhook.
    assert wait_for(lambda: any("failed" in m.subject for m in mail.outbox))


def test_canceling_a_running_training_cancels_it_on_replicate_and_refunds(ready_training, alice):
    before = balance_for_user(alice)
    job = trainings.training_start(job=ready_training, params=PARAMS | {"steps": 5000})
    job.refresh_from_db()
    assert job.status == S.REPLICATE_TRAINING and job.replicate_training_id
    trainings.training_cancel(job=job)
    job.refresh_from_db()
    assert job.status == S.CANCELED
    from sandbox.replicate.simulation import training_state

    assert training_state(SandboxTraining.objects.get()).status == "canceled"
    assert balance_for_user(alice) == before
    with pytest.raises(pipeline.PipelineError):
        trainings.training_cancel(job=job)
    assert balance_for_user(alice) == before


def test_a_lost_completed_webhook_is_caught_up_by_the_poller(ready_training, alice, settings):
    fault_inject(service="replicate", operation="webhook.completed", kind=FaultKind.DROP_WEBHOOK)
    job = trainings.training_start(job=ready_training, params=PARAMS)
    job.refresh_from_db()
    assert sandbox_runs_finished(job.replicate_training_id)  # the training is over, but nobody told us
    job.refresh_from_db()
    assert job.status == S.REPLICATE_TRAINING
    settings.PIPELINE_STALE_MINUTES = 0
    counts = pipeline.trainings_reconcile()
    assert counts["polled"] == 1
    job = wait_for_status(job, (S.SUCCEEDED, S.FAILED))
    assert job.status == S.SUCCEEDED


def test_duplicate_and_out_of_order_webhooks_change_nothing(ready_training, alice):
    before = balance_for_user(alice)
    fault_inject(service="replicate", operation="*", kind=FaultKind.DUPLICATE_WEBHOOK, times=None)
    fault_inject(service="replicate", operation="*", kind=FaultKind.REORDER_WEBHOOKS)
    job = trainings.training_start(job=ready_training, params=PARAMS)
    job = wait_for_status(job, (S.SUCCEEDED, S.FAILED))
    assert sandbox_runs_finished(job.replicate_training_id)  # the late start webhook and the duplicates came
    job.refresh_from_db()
    fault_clear()
    assert job.status == S.SUCCEEDED
    assert job.progress_step == 1000  # the late "start" did not move progress back
    assert (
        ReplicateWebhook.objects.values("webhook_id").distinct().count() == ReplicateWebhook.objects.count()
    )
    assert TrainingJob.objects.get(pk=job.pk).lora_model is not None
    assert balance_for_user(alice) == before - cost()


def test_a_webhook_with_a_bad_signature_gets_400_and_changes_nothing(ready_training, client):
    job = trainings.training_start(job=ready_training, params=PARAMS | {"steps": 5000})
    job.refresh_from_db()
    response = client.post(
        "/trainings/webhooks/replicate/",
        data=b'{"id": "x", "status": "succeeded"}',
        content_type="application/json",
        headers={
            "webhook-id": "msg_1",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1,AAAA",
        },
    )
    assert response.status_code == 400
    assert ReplicateWebhook.objects.filter(webhook_id="msg_1").count() == 0
    assert client.get("/trainings/webhooks/replicate/").status_code == 405
    job.refresh_from_db()
    assert job.status == S.REPLICATE_TRAINING
    trainings.training_cancel(job=job)


def test_a_worker_killed_mid_stage_is_resumed_by_the_poller(ready_training, alice, settings, monkeypatch):
    # The first run of the stage "dies": its task is lost and the job stays in that stage.
    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "_enqueue_advance", lambda job_id: None)
        job = trainings.training_start(job=ready_training, params=PARAMS)
    job.refresh_from_db()
    assert job.status == S.INITIALIZING
    TrainingJob.objects.filter(pk=job.pk).update(
        updated_at=timezone.now() - timedelta(minutes=10), attempts=1
    )
    settings.PIPELINE_STALE_MINUTES = 3
    pipeline.trainings_reconcile()
    job = wait_for_status(job, (S.SUCCEEDED, S.FAILED))
    assert job.status == S.SUCCEEDED
    assert SandboxTraining.objects.count() == 1


def test_a_stage_that_keeps_dying_fails_after_its_attempts_and_refunds(
    ready_training, alice, settings, monkeypatch
):
    before = balance_for_user(alice)
    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "_enqueue_advance", lambda job_id: None)
        job = trainings.training_start(job=ready_training, params=PARAMS)
    TrainingJob.objects.filter(pk=job.pk).update(
        attempts=settings.PIPELINE_MAX_ATTEMPTS, updated_at=timezone.now() - timedelta(minutes=10)
    )
    pipeline.trainings_reconcile()
    job.refresh_from_db()
    assert job.status == S.FAILED
    assert balance_for_user(alice) == before


def test_publishing_fails_after_a_successful_training_without_losing_the_weights(
    ready_training, alice, settings
):
    from fluxsite.integrations import storage
    from models_app.services import lora_publish

    settings.PIPELINE_MAX_ATTEMPTS = 1
    fault_inject(service="huggingface", operation="commit", status=500, times=None)
    job = trainings.training_start(job=ready_training, params=PARAMS)
    job = wait_for_status(job, (S.SUCCEEDED, S.FAILED))
    assert job.status == S.SUCCEEDED
    model = job.lora_model
    assert model.status == "publish_failed"
    assert storage.get_storage(storage.PRIVATE).exists(model.weights_file_name)
    assert job.events.filter(level="warning", message__contains="Publishing to Hugging Face failed").exists()
    fault_clear()
    model = lora_publish(model_id=model.pk)
    assert model.status == "ready"


def test_watching_a_running_training_refreshes_its_progress_from_replicate(
    ready_training, alice, alice_client
):
    from sandbox.replicate.simulation import training_state

    job = trainings.training_start(job=ready_training, params=PARAMS | {"steps": 2000})
    # The sandbox training (6 s) is a few log lines in (0.1 is two of its 20); only the start webhook came.
    run = wait_until(lambda: training_state(SandboxTraining.objects.get()), lambda r: r.progress >= 0.1)
    assert run.status == "processing", run
    job.refresh_from_db()
    assert job.status == S.REPLICATE_TRAINING
    TrainingJob.objects.filter(pk=job.pk).update(last_news_at=timezone.now() - timedelta(minutes=1))
    response = alice_client.get(f"/trainings/{job.pk}/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    job.refresh_from_db()
    assert 0 < job.progress_step < 2000 and job.loss_history
    assert pipeline.training_watch(job=job) is False  # fresh news: no second refresh
    trainings.training_cancel(job=job)
