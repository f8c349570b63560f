"""Captioning when things go wrong: Replicate's errors, bad answers, a deleted photo, a killed worker.

HTTP errors come from the sandbox's fault mechanism (sandbox/faults.py), rendered in Replicate's
problem+json shape (sandbox/vendor/replicate/errors.json for 422); the caption_* faults make the
sandbox's captioner answer with an empty, absurdly long, malformed or markup-laden output. No
vendor material shows such answers: they are what the models' output schemas allow.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from billing.models import CreditEntry
from fluxsite.integrations import replicate_client, storage
from sandbox.faults import fault_inject
from sandbox.models import FaultKind
from sandbox.replicate.models import SandboxPrediction
from tests.helpers import balance, wait_until
from tests.training.conftest import add_photos
from tests.training.test_captioning import finished, images_of, start
from training import services
from training.models import CaptionBatch, CaptionTask

pytestmark = pytest.mark.django_db(transaction=True)


def refunds(batch: CaptionBatch) -> list[CreditEntry]:
    return list(CreditEntry.objects.filter(reference__startswith=f"refund:{batch.credit_reference}:"))


def one_photo_batch(client, training, **fields) -> CaptionBatch:
    add_photos(client, training, 1)
    response = start(client, training, **fields)
    assert response.status_code == 200, response.content.decode()[:600]
    return CaptionBatch.objects.get(dataset__training=training)


@pytest.mark.parametrize(
    ("kind", "note"),
    [
        (FaultKind.CAPTION_EMPTY, "empty caption"),
        (FaultKind.CAPTION_GARBLED, "not in its usual format"),
    ],
)
def test_an_empty_or_malformed_answer_fails_the_photo_and_refunds_it_once(
    sandbox, alice, alice_client, training, kind, note
):
    fault_inject(service="replicate", operation="predictions.create", kind=kind)
    before = balance(alice)
    batch = one_photo_batch(alice_client, training)
    batch = finished(training)
    task = batch.tasks.get()
    assert task.status == "failed" and note in task.note and task.refunded
    assert len(refunds(batch)) == 1
    assert balance(alice) == before
    image = images_of(training)[0]
    assert image.caption == "a photo of [trigger]" and image.caption_source == "person"
    # The same answer reported again (a duplicate webhook, the poller) refunds nothing more.
    info = replicate_client.prediction_get(prediction_id=task.replicate_prediction_id)
    services.caption_apply_replicate(info=info)
    assert len(refunds(batch)) == 1 and balance(alice) == before


def test_llava_answering_outside_its_format_is_a_failure_too(sandbox, alice, alice_client, training):
    fault_inject(service="replicate", operation="predictions.create", kind=FaultKind.CAPTION_GARBLED)
    before = balance(alice)
    one_photo_batch(alice_client, training, model="yorickvp/llava-13b")
    task = finished(training).tasks.get()
    assert (task.status, task.note) == ("failed", "LLaVA's answer was not text. Refunded.")
    assert balance(alice) == before


def test_an_absurdly_long_caption_is_cut_at_the_limit_with_a_notice(sandbox, alice_client, training):
    fault_inject(service="replicate", operation="predictions.create", kind=FaultKind.CAPTION_LONG)
    one_photo_batch(alice_client, training)
    task = finished(training).tasks.get()
    image = images_of(training)[0]
    assert task.status == "done" and task.note == f"Cut at {services.CAPTION_MAX} characters."
    assert len(image.caption) == services.CAPTION_MAX
    assert image.caption_source == "model"


def test_markup_in_a_caption_is_stored_as_plain_text_and_escaped_on_the_page(sandbox, alice_client, training):
    fault_inject(service="replicate", operation="predictions.create", kind=FaultKind.CAPTION_MARKUP)
    one_photo_batch(alice_client, training)
    assert finished(training).tasks.get().status == "done"
    image = images_of(training)[0]
    assert '<script>alert("x")</script>' in image.caption  # kept as the text it is
    page = alice_client.get(reverse("training:dataset", args=[training.pk])).content.decode()
    assert "<script>alert" not in page and "<b>A photo</b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_a_422_fails_the_photo_at_once_with_replicates_reason_and_refunds(
    sandbox, alice, alice_client, training
):
    fault_inject(service="replicate", operation="predictions.create", status=422)
    before = balance(alice)
    one_photo_batch(alice_client, training)
    task = finished(training).tasks.get()
    assert task.status == "failed" and task.refunded and "refused" in task.note
    assert task.attempts == 0 or task.attempts == 1
    assert balance(alice) == before


@pytest.mark.parametrize("status", [429, 500])
def test_a_429_or_500_puts_the_photo_back_in_the_queue_after_retry_after(
    sandbox, alice, alice_client, training, status
):
    fault_inject(service="replicate", operation="predictions.create", status=status, retry_after=40)
    before = balance(alice)
    batch = one_photo_batch(alice_client, training)
    task = batch.tasks.get()
    assert task.status == "queued" and task.attempts == 1 and not task.replicate_prediction_id
    if status == 429:  # Retry-After honoured: not before 40 s
        assert task.next_attempt_at and task.next_attempt_at >= timezone.now() + timedelta(seconds=35)
    assert balance(alice) == before - batch.cost_credits  # still paid for: it is going to run
    services.captions_reconcile()  # not due yet: nothing is sent
    assert SandboxPrediction.objects.count() == 0
    # Once it is due (the wait is shortened here), the poller sends it again and Replicate accepts it.
    CaptionTask.objects.filter(pk=task.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    services.captions_reconcile()
    batch = finished(training)
    assert batch.tasks.get().status == "done"
    assert balance(alice) == before - batch.cost_credits and not refunds(batch)


def test_a_timed_out_create_is_adopted_by_its_webhook_and_never_created_twice(
    sandbox, settings, alice, alice_client, training
):
    settings.REPLICATE_TIMEOUT_SECONDS = 1
    # The stand-in answers after the client gave up, but creates the prediction all the same.
    fault_inject(service="replicate", operation="predictions.create", kind=FaultKind.TIMEOUT, delay_seconds=2)
    before = balance(alice)
    batch = one_photo_batch(alice_client, training)
    task = batch.tasks.get()
    # replicate 1.0.7 sends predictions.create with no timeout at all; ours is put back (the
    # client's keep_a_timeout hook), so the call gave up after 1 s and the claim is kept.
    assert task.status == "submitting" and not task.replicate_prediction_id
    batch = finished(training)
    task = batch.tasks.get()
    assert task.status == "done" and task.replicate_prediction_id
    assert SandboxPrediction.objects.count() == 1
    services.caption_batch_pump(batch_id=batch.pk)  # a redelivered pump creates nothing more
    assert SandboxPrediction.objects.count() == 1
    assert balance(alice) == before - batch.cost_credits


def test_a_claim_replicate_never_confirmed_is_failed_and_refunded_by_the_poller(
    sandbox, settings, alice, alice_client, training
):
    settings.REPLICATE_TIMEOUT_SECONDS = 1
    fault_inject(service="replicate", operation="predictions.create", kind=FaultKind.TIMEOUT, delay_seconds=2)
    fault_inject(service="replicate", operation="webhook.completed", kind=FaultKind.DROP_WEBHOOK)
    before = balance(alice)
    batch = one_photo_batch(alice_client, training)
    assert batch.tasks.get().status == "submitting"
    with time_machine.travel(
        timezone.now() + timedelta(minutes=settings.PIPELINE_STALE_MINUTES + 1), tick=True
    ):
        services.captions_reconcile()
    task = batch.tasks.get()
    assert task.status == "failed" and "never confirmed" in task.note
    assert balance(alice) == before


def test_a_lost_webhook_is_caught_up_by_the_poller(sandbox, settings, alice_client, training):
    fault_inject(service="replicate", operation="webhook.completed", kind=FaultKind.DROP_WEBHOOK)
    batch = one_photo_batch(alice_client, training)
    task = batch.tasks.get()
    assert wait_until(lambda: SandboxPrediction.objects.get().text_output, bool)
    assert task.status == "running"
    with time_machine.travel(
        timezone.now() + timedelta(minutes=settings.PIPELINE_STALE_MINUTES + 1), tick=True
    ):
        counts = services.captions_reconcile()
    assert counts["polled"] == 1
    task.refresh_from_db()
    assert task.status == "done"
    assert images_of(training)[0].caption_source == "model"


def test_a_photo_deleted_while_its_caption_runs_is_canceled_and_refunded(
    sandbox, alice, alice_client, training
):
    fault_inject(service="replicate", operation="webhook.completed", kind=FaultKind.DROP_WEBHOOK)
    before = balance(alice)
    batch = one_photo_batch(alice_client, training)
    image = images_of(training)[0]
    alice_client.post(reverse("training:image_delete", args=[training.pk, image.pk]))
    with time_machine.travel(timezone.now() + timedelta(minutes=10), tick=True):
        services.captions_reconcile()
    task = batch.tasks.get()
    assert task.status == "canceled" and "deleted" in task.note and task.image_id is None
    assert balance(alice) == before
    assert CaptionBatch.objects.get().status == "finished"


def test_a_worker_killed_mid_batch_resumes_without_a_second_create_or_charge(
    sandbox, settings, monkeypatch, alice, alice_client, training
):
    """A worker dies mid-batch: it had claimed two photos, created the first's prediction and the
    second's, but died before storing the second's id. A death cannot be produced over HTTP, so the
    dead worker's steps are replayed here with the real functions it runs (claim, submit, create)."""
    from training.services import captioning

    settings.CAPTION_CONCURRENCY = 2
    add_photos(alice_client, training, 4)
    before = balance(alice)
    with monkeypatch.context() as patch:
        patch.setattr(captioning, "_enqueue_pump", lambda batch_id: None)  # the worker dies before it
        start(alice_client, training)
    batch = CaptionBatch.objects.get()
    first, second = captioning._claim(batch.pk)
    captioning._submit(first)
    task = CaptionTask.objects.select_related("image").get(pk=second)
    model = captioning._model(batch.model)
    assert task.image is not None
    url = storage.signed_url(alias=storage.PRIVATE, name=task.image.file_name, expires=3600)
    replicate_client.prediction_create(
        version=batch.version,
        input=model.build_input(image_url=url, style=batch.style, subject_kind=batch.subject_kind),
        webhook_url=captioning._webhook_url(task),
        events=("completed",),
    )  # ... and the worker dies here, before recording the id
    # The queue redelivers the pump: the claimed photos are not created again, the rest go on; the
    # prediction created before the death is adopted by its webhook (its address names the task).
    services.caption_batch_pump(batch_id=batch.pk)
    batch = finished(training)
    assert set(batch.tasks.values_list("status", flat=True)) == {"done"}
    assert SandboxPrediction.objects.count() == 4
    spends = CreditEntry.objects.filter(reference=batch.credit_reference)
    assert spends.count() == 1 and balance(alice) == before - 4 * batch.price_per_photo
    assert not refunds(batch)


def test_cancel_refunds_every_photo_not_captioned_yet(sandbox, settings, alice, alice_client, training):
    settings.CAPTION_CONCURRENCY = 1
    settings.SANDBOX_PREDICTION_SECONDS = 5
    add_photos(alice_client, training, 3)
    before = balance(alice)
    start(alice_client, training)
    batch = CaptionBatch.objects.get()
    response = alice_client.post(
        reverse("training:caption_cancel", args=[training.pk, batch.pk]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    batch.refresh_from_db()
    assert batch.status == "canceled"
    assert set(batch.tasks.values_list("status", flat=True)) == {"canceled"}
    assert balance(alice) == before
    assert len(refunds(batch)) == 3
    # A late "succeeded" for the photo that was running changes nothing.
    running = batch.tasks.exclude(replicate_prediction_id="").get()
    SandboxPrediction.objects.filter(pk=running.replicate_prediction_id).update(canceled_at=None)
    time_travel = timezone.now() + timedelta(seconds=10)
    with time_machine.travel(time_travel, tick=True):
        services.caption_apply_replicate(
            info=replicate_client.prediction_get(prediction_id=running.replicate_prediction_id)
        )
    assert images_of(training)[0].caption_source == "person"
    assert balance(alice) == before and len(refunds(batch)) == 3


def test_an_inspection_answer_that_is_not_the_checklist_fails_and_is_refunded(
    sandbox, alice, alice_client, training
):
    fault_inject(service="replicate", operation="predictions.create", kind=FaultKind.CAPTION_MARKUP)
    add_photos(alice_client, training, 1)
    before = balance(alice)
    start(alice_client, training, photos="all", mode="replace", model="yorickvp/llava-13b", purpose="inspect")
    task = finished(training).tasks.get()
    assert task.status == "failed" and "not JSON" in task.note and task.refunded
    assert images_of(training)[0].inspection == {}
    assert balance(alice) == before
