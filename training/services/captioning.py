"""Captioning a dataset's photos with a vision model on Replicate, before the person pays to train.

    caption_batch_start (request: batch + one task per photo + credits spent, atomically)
      → caption_batch_pump (task: claims up to CAPTION_CONCURRENCY queued photos, creates their
        predictions) → webhook (kind "caption") / poller → caption_apply_replicate → the photo's
        caption is written, marked as the model's → the pump runs again for the next photos

Tasks move queued → submitting → running → done | skipped | failed | canceled, every move a
compare-and-swap (fluxsite.statemachine), because the pump, the webhook, the poller and a cancel
race for the same rows. Only the holder of the "submitting" claim creates a prediction, so a
redelivered pump (a worker killed mid-batch) never creates one twice; a prediction created but
never recorded (a timed-out create, a worker killed after it) is adopted by its webhook, whose
address names the task (`?task=<pk>`), and a claim nobody confirmed is failed and refunded by the
poller.

Money: the batch is spent at once (reference `caption-batch:<pk>`); every photo that ends without
a caption of the model's (failed, canceled, its photo deleted) is refunded on its own, once
(`credits_refund_part`, part = the task's pk). A photo whose caption was kept because the person
wrote one meanwhile is not refunded: the model ran and its text is kept on the task.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from billing.models import CreditKind
from billing.services import credits_refund_part, credits_spend, wallet_lock
from fluxsite.accounts.models import User
from fluxsite.integrations import replicate_client, storage
from fluxsite.integrations.errors import Category, IntegrationError
from fluxsite.statemachine import backoff_seconds, transition
from training import captioning_models
from training.captioning_models import CaptioningModel, CaptionOutputError
from training.models import CaptionBatch, CaptionTask, Dataset, DatasetImage, TrainingJob
from training.services.datasets import CAPTION_MAX, TRIGGER_TOKEN, _caption_clean

logger = logging.getLogger(__name__)
T = CaptionTask.Status
B = CaptionBatch.Status
ACTIVE = (T.QUEUED, T.SUBMITTING, T.RUNNING)
CAPTION_TOKEN = "[caption]"
PHOTOS = ("all", "empty")


class CaptioningError(Exception):
    """A refused captioning action; the message is safe to show."""


@dataclass(frozen=True)
class CaptionEstimate:
    photos: int
    price_per_photo: int
    credits: int
    model: str


# --- Choosing the photos and the price ------------------------------------------------------------
def _model(ref: str) -> CaptioningModel:
    model = captioning_models.model_get(ref)
    if model is None:
        raise CaptioningError("This captioning model is not available.")
    return model


def _uncaptioned(caption: str, template: str) -> bool:
    """No caption of its own: empty, or still the dataset's caption template that every upload gets
    ("a photo of [trigger]" unless the person changed it), which says nothing about this photo."""
    caption = caption.strip()
    return not caption or caption == template.strip()


def _only_uncaptioned(*, photos: str, mode: str) -> bool:
    # "keep" captions only the uncaptioned ones, whatever was chosen: a person's words are never replaced.
    return photos == "empty" or mode == CaptionBatch.Mode.KEEP


def _chosen_images(dataset: Dataset, *, photos: str, mode: str) -> list[DatasetImage]:
    images = list(dataset.images.all())
    if _only_uncaptioned(photos=photos, mode=mode):
        images = [image for image in images if _uncaptioned(image.caption, dataset.caption_template)]
    return images


def caption_batch_estimate(*, dataset: Dataset, photos: str, mode: str, model_ref: str) -> CaptionEstimate:
    """How many photos a batch would caption and what it costs, before anything is paid. Reads the
    captions only (the dataset page asks for two estimates on every view), not the photos' rows."""
    model = _model(model_ref)
    captions = list(dataset.images.values_list("caption", flat=True))
    if _only_uncaptioned(photos=photos, mode=mode):
        captions = [c for c in captions if _uncaptioned(c, dataset.caption_template)]
    count = len(captions)
    return CaptionEstimate(count, model.price_per_photo, count * model.price_per_photo, model.ref)


def _check_schema(model: CaptioningModel) -> None:
    """The pinned version must still take every input we send (its schema is read from Replicate)."""
    try:
        fields = replicate_client.input_schema_get(model=model.ref, version_id=model.version)
    except IntegrationError as exc:
        raise CaptioningError(f"{exc.message} Nothing was charged; try again in a moment.") from None
    missing = captioning_models.missing_inputs(model, fields)
    if missing:
        raise CaptioningError(
            f"The pinned version of {model.ref} no longer takes {', '.join(missing)}: an operator must "
            "update CAPTION_MODEL_VERSIONS. Nothing was charged."
        )


# --- Starting ----------------------------------------------------------------------------------------
def caption_batch_start(
    *,
    user: User,
    dataset: Dataset,
    photos: str,
    mode: str,
    style: str,
    trigger_placement: str,
    trigger_template: str = "",
    model_ref: str | None = None,
    purpose: str = CaptionBatch.Purpose.CAPTION,
) -> CaptionBatch:
    """Create the batch and its tasks and spend its credits in one transaction; a task creates the
    predictions. A dataset that already has a running batch gets that batch back (one run, however
    often it is started). Raises CaptioningError or billing's InsufficientCredits; either way
    nothing is stored and nothing is sent to Replicate.
    """
    if dataset.training.owner_id != user.pk:
        raise CaptioningError("This dataset is not yours.")
    if dataset.training.status != TrainingJob.Status.DRAFT:
        raise CaptioningError("This training has started: its photos can no longer be captioned.")
    if photos not in PHOTOS or mode not in CaptionBatch.Mode.values or style not in CaptionBatch.Style.values:
        raise CaptioningError("Choose the photos, what to do with existing captions and a style.")
    if trigger_placement not in CaptionBatch.TriggerPlacement.values:
        raise CaptioningError("Choose where the trigger word goes.")
    template = " ".join(trigger_template.split())[:200]
    if trigger_placement == CaptionBatch.TriggerPlacement.TOKEN and TRIGGER_TOKEN not in template:
        raise CaptioningError(f"The template must contain {TRIGGER_TOKEN}, where the trigger word goes.")
    inspect = purpose == CaptionBatch.Purpose.INSPECT
    if inspect:  # every photo, by the model that answers a prompt; captions are left alone
        model_ref, photos, mode = captioning_models.INSPECTION_MODEL, "all", CaptionBatch.Mode.REPLACE
    model = _model(model_ref or settings.CAPTION_DEFAULT_MODEL)
    running = CaptionBatch.objects.filter(dataset=dataset, status=B.RUNNING).first()
    if running is not None:
        return running
    images = _chosen_images(dataset, photos=photos, mode=mode)
    if not images:
        raise CaptioningError(
            "No photo to inspect."
            if inspect
            else "No photo to caption: every chosen photo already has a caption."
        )
    if len(images) > settings.CAPTION_MAX_PHOTOS_PER_BATCH:
        raise CaptioningError(
            f"{len(images)} photos chosen; a batch captions at most {settings.CAPTION_MAX_PHOTOS_PER_BATCH}."
        )
    _check_schema(model)  # before the spend: a changed model is refused for free
    price = model.price_per_photo
    try:
        with transaction.atomic():
            # Counted under the wallet lock, in the spend's transaction: parallel requests cannot all pass.
            wallet_lock(user=user)
            running = CaptionBatch.objects.filter(dataset=dataset, status=B.RUNNING).first()
            if running is not None:
                return running
            active = CaptionBatch.objects.filter(owner=user, status=B.RUNNING).count()
            if active >= settings.CAPTION_MAX_ACTIVE_BATCHES_PER_USER:
                raise CaptioningError(
                    f"You already have {active} caption batches running, the most at once: wait for "
                    "one to finish."
                )
            with transaction.atomic():
                batch = CaptionBatch.objects.create(
                    dataset=dataset,
                    owner=user,
                    purpose=CaptionBatch.Purpose.INSPECT if inspect else CaptionBatch.Purpose.CAPTION,
                    model=model.ref,
                    version=model.version,
                    mode=mode,
                    style=style,
                    trigger_placement=trigger_placement,
                    trigger_template=template,
                    subject_kind=dataset.training.subject_kind,
                    price_per_photo=price,
                    cost_credits=price * len(images),
                )
            CaptionTask.objects.bulk_create(
                CaptionTask(
                    batch=batch, image=image, image_name=image.original_name, caption_before=image.caption
                )
                for image in images
            )
            reference = f"caption-batch:{batch.pk}"
            credits_spend(
                user=user,
                amount=batch.cost_credits,
                reference=reference,
                kind=CreditKind.SPEND_CAPTIONING,
                note=(
                    f"{'Inspection' if inspect else 'Captions'} of {len(images)} "
                    f"photo{'s' if len(images) != 1 else ''} of “{dataset.training.name}”"
                ),
            )
            CaptionBatch.objects.filter(pk=batch.pk).update(credit_reference=reference)
            batch.credit_reference = reference
            _enqueue_pump(batch.pk)
    except IntegrityError:
        # A twin request created this dataset's running batch between our check and our insert.
        running = CaptionBatch.objects.filter(dataset=dataset, status=B.RUNNING).first()
        if running is None:
            raise
        return running
    return batch


def _enqueue_pump(batch_id: int) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task(
            "training.tasks.caption_batch_pump_task", batch_id, task_name=f"caption-batch-{batch_id}-pump"
        )
    )


# --- Creating the predictions, a few at a time ------------------------------------------------------------
def _claim(batch_id: int) -> list[int]:
    """Claim up to CAPTION_CONCURRENCY minus what is in flight; the batch row is locked meanwhile so
    two pumps cannot both fill the same free slots."""
    now = timezone.now()
    with transaction.atomic():
        batch = CaptionBatch.objects.select_for_update().filter(pk=batch_id, status=B.RUNNING).first()
        if batch is None:
            return []
        in_flight = batch.tasks.filter(status__in=(T.SUBMITTING, T.RUNNING)).count()
        free = max(0, settings.CAPTION_CONCURRENCY - in_flight)
        if not free:
            return []
        candidates = list(
            batch.tasks.filter(status=T.QUEUED)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .order_by("pk")
            .values_list("pk", flat=True)[:free]
        )
        claimed = []
        for pk in candidates:
            if CaptionTask.objects.filter(pk=pk, status=T.QUEUED).update(
                status=T.SUBMITTING, submit_started_at=now, updated_at=now
            ):
                claimed.append(pk)
        return claimed


def caption_batch_pump(*, batch_id: int) -> int:
    """Create predictions for queued photos while there is room; returns how many were created.

    Safe to run twice and at once (each photo is claimed before its paid call). Ends the batch
    when nothing is left to do.
    """
    created = 0
    while True:
        claimed = _claim(batch_id)
        if not claimed:
            break
        # Claimed again after these: predictions that finished meanwhile (a fast model) freed slots.
        for pk in claimed:
            created += _submit(pk)
    _batch_finish_if_done(batch_id)
    return created


def _webhook_url(task: CaptionTask) -> str:
    return f"{settings.SITE_URL.rstrip('/')}{reverse('training:caption_webhook')}?task={task.pk}"


def _retry_wait(exc: IntegrationError, attempt: int) -> float:
    wait = backoff_seconds(attempt, base=float(settings.GENERATION_RETRY_BASE_SECONDS), cap=300)
    return max(wait, float(exc.retry_after or 0))


def _submit(task_id: int) -> int:
    task = CaptionTask.objects.select_related("batch", "image").filter(pk=task_id).first()
    if task is None or task.status != T.SUBMITTING or task.replicate_prediction_id:
        return 0
    batch = task.batch
    if task.image is None:
        caption_task_end(task=task, status=T.CANCELED, note="The photo was deleted. Refunded.")
        return 0
    model = _model(batch.model)
    image_url = storage.signed_url(alias=storage.PRIVATE, name=task.image.file_name, expires=3600)
    if batch.purpose == CaptionBatch.Purpose.INSPECT:
        data = captioning_models.inspection_input(image_url=image_url)
    else:
        data = model.build_input(image_url=image_url, style=batch.style, subject_kind=batch.subject_kind)
    try:
        info = replicate_client.prediction_create(
            version=batch.version, input=data, webhook_url=_webhook_url(task), events=("completed",)
        )
    except IntegrationError as exc:
        _submit_refused(task, exc)
        return 0
    CaptionTask.objects.filter(pk=task.pk, replicate_prediction_id="").update(
        replicate_prediction_id=info.id, replicate_status=info.status, note="", updated_at=timezone.now()
    )
    task.refresh_from_db()
    transition(task, T.SUBMITTING, T.RUNNING)
    if info.is_finished:
        caption_apply_replicate(info=info)
    return 1


def _submit_refused(task: CaptionTask, exc: IntegrationError) -> None:
    attempts = task.attempts + 1
    if exc.category == Category.TIMEOUT and exc.status is None:
        # The prediction may exist: keep the claim. Its webhook adopts it (the address names this
        # task); if none comes, the poller fails the claim and refunds it.
        CaptionTask.objects.filter(pk=task.pk).update(attempts=attempts, note="Replicate is slow to answer…")
        logger.warning("caption task %s: create timed out: %s", task.pk, exc.detail)
        return
    if exc.retryable and attempts < settings.GENERATION_MAX_ATTEMPTS:
        wait = _retry_wait(exc, attempts)
        transition(
            task,
            T.SUBMITTING,
            T.QUEUED,
            attempts=attempts,
            submit_started_at=None,
            next_attempt_at=timezone.now() + timedelta(seconds=wait),
            note=f"Replicate is busy; trying again in {round(wait)} s.",
        )
        return
    reason = exc.message
    if exc.category == Category.VALIDATION and exc.invalid_fields:
        reason = "Replicate refused the input: " + "; ".join(
            f"{str(f.get('field', '')).removeprefix('input.')}: {f.get('description', '')}"
            for f in exc.invalid_fields
        )
    elif exc.category == Category.RATE_LIMIT:
        reason = f"Replicate kept asking us to slow down ({attempts} attempts)."
    caption_task_end(task=task, status=T.FAILED, note=f"{reason} Refunded.")


# --- What Replicate reports (webhook, poller and submit share this) -----------------------------------
def _adopt(info: replicate_client.PredictionInfo, task_hint: int | None) -> CaptionTask | None:
    if not task_hint:
        return None
    CaptionTask.objects.filter(
        pk=task_hint, status__in=(T.SUBMITTING, T.QUEUED), replicate_prediction_id=""
    ).exclude(submit_started_at__isnull=True).update(replicate_prediction_id=info.id)
    task = CaptionTask.objects.filter(replicate_prediction_id=info.id).first()
    if task is not None:
        transition(task, T.SUBMITTING, T.RUNNING)
    return task


def caption_apply_replicate(
    *, info: replicate_client.PredictionInfo, task_hint: int | None = None
) -> CaptionTask | None:
    """Apply a caption prediction as Replicate reports it. Idempotent and safe in any order."""
    task = CaptionTask.objects.filter(replicate_prediction_id=info.id).first() or _adopt(info, task_hint)
    if task is None:
        return None
    fields: dict[str, Any] = {"updated_at": timezone.now()}
    if info.predict_time is not None:
        fields["predict_time"] = info.predict_time
    if task.status in ACTIVE:
        fields["replicate_status"] = info.status
    CaptionTask.objects.filter(pk=task.pk).update(**fields)
    task.refresh_from_db()
    if task.status not in ACTIVE:
        return task
    if task.status == T.SUBMITTING:
        # Its webhook came between our storing the id and our own move to running (a fast model).
        transition(task, T.SUBMITTING, T.RUNNING)
    if info.status == "succeeded":
        _caption_store(task, info)
    elif info.status == "failed":
        error = " ".join((info.error or "the model failed without saying why").split())[:200]
        caption_task_end(task=task, status=T.FAILED, note=f"The model failed: {error}. Refunded.")
    elif info.status in ("canceled", "aborted"):
        caption_task_end(task=task, status=T.FAILED, note="Replicate stopped this run. Refunded.")
    task.refresh_from_db()
    if task.status not in ACTIVE:
        _enqueue_pump(task.batch_id)
    return task


def _compose(batch: CaptionBatch, body: str) -> str:
    if batch.trigger_placement == CaptionBatch.TriggerPlacement.START:
        return f"{TRIGGER_TOKEN}, {body}"
    if batch.trigger_placement == CaptionBatch.TriggerPlacement.TOKEN:
        template = batch.trigger_template
        return template.replace(CAPTION_TOKEN, body) if CAPTION_TOKEN in template else f"{template} {body}"
    return body


def _inspection_store(task: CaptionTask, batch: CaptionBatch, info: replicate_client.PredictionInfo) -> None:
    try:
        checklist = captioning_models.inspection_parse(info.output)
    except CaptionOutputError as exc:
        caption_task_end(task=task, status=T.FAILED, note=f"{exc} Refunded.")
        return
    checklist["model"] = f"{batch.model}:{batch.version}"
    if not task.image_id or not DatasetImage.objects.filter(pk=task.image_id).update(inspection=checklist):
        caption_task_end(task=task, status=T.CANCELED, note="The photo was deleted. Refunded.")
        return
    CaptionTask.objects.filter(pk=task.pk).update(caption=str(checklist)[:1000])
    transition(task, T.RUNNING, T.DONE, finished_at=timezone.now(), note="")


def _caption_store(task: CaptionTask, info: replicate_client.PredictionInfo) -> None:
    batch = CaptionBatch.objects.get(pk=task.batch_id)
    if batch.purpose == CaptionBatch.Purpose.INSPECT:
        _inspection_store(task, batch, info)
        return
    model = captioning_models.MODELS.get(batch.model)
    try:
        if model is None:
            raise CaptionOutputError("This captioning model is no longer known.")
        raw = model.parse_output(info.output)
    except CaptionOutputError as exc:
        caption_task_end(task=task, status=T.FAILED, note=f"{exc} Refunded.")
        return
    if batch.style == CaptionBatch.Style.TAGS and model.output_format == "python-dict-string":
        raw = captioning_models.caption_as_tags(raw)  # Florence-2 writes sentences only
    body, cut = _caption_clean(raw)
    if not body.strip(" ,.;:"):
        caption_task_end(task=task, status=T.FAILED, note="The model returned an empty caption. Refunded.")
        return
    composed = _compose(batch, body)
    if batch.mode == CaptionBatch.Mode.APPEND and task.caption_before.strip():
        composed = f"{task.caption_before} {body}"
    text, cut_again = _caption_clean(composed)
    note = f"Cut at {CAPTION_MAX} characters." if (cut or cut_again) else ""
    CaptionTask.objects.filter(pk=task.pk).update(caption=text)
    if task.image_id is None:
        caption_task_end(task=task, status=T.CANCELED, note="The photo was deleted. Refunded.")
        return
    # Written only if the photo's caption is still what it was when the batch started ("keep": still
    # empty or the template), and the training is still a draft: a person's edit meanwhile always wins.
    written = DatasetImage.objects.filter(
        pk=task.image_id, caption=task.caption_before, dataset__training__status=TrainingJob.Status.DRAFT
    ).update(
        caption=text,
        caption_source=DatasetImage.CaptionSource.MODEL,
        caption_model=f"{batch.model}:{batch.version}",
    )
    if written:
        transition(task, T.RUNNING, T.DONE, finished_at=timezone.now(), note=note)
    elif not DatasetImage.objects.filter(pk=task.image_id).exists():
        caption_task_end(task=task, status=T.CANCELED, note="The photo was deleted. Refunded.")
    else:
        transition(
            task,
            T.RUNNING,
            T.SKIPPED,
            finished_at=timezone.now(),
            note="You changed this caption meanwhile: yours was kept.",
        )


# --- Endings ---------------------------------------------------------------------------------------------
def caption_task_end(*, task: CaptionTask, status: str, note: str) -> bool:
    """An active task → failed or canceled, once, with its photo refunded in the same transaction."""
    with transaction.atomic():
        if not transition(task, ACTIVE, status, note=note[:300], finished_at=timezone.now()):
            return False
        batch = CaptionBatch.objects.get(pk=task.batch_id)
        if batch.credit_reference:
            credits_refund_part(
                spend_reference=batch.credit_reference,
                part=str(task.pk),
                amount=batch.price_per_photo,
                note=f"Caption of {task.image_name or 'a photo'} not made",
            )
            CaptionTask.objects.filter(pk=task.pk).update(refunded=True)
    if task.replicate_prediction_id and task.replicate_status not in replicate_client.FINISHED:
        try:
            replicate_client.prediction_cancel(prediction_id=task.replicate_prediction_id)
        except IntegrationError as exc:
            logger.warning("caption task %s: cancel at Replicate failed: %s", task.pk, exc)
    return True


def _batch_finish_if_done(batch_id: int) -> None:
    if not CaptionTask.objects.filter(batch_id=batch_id, status__in=ACTIVE).exists():
        CaptionBatch.objects.filter(pk=batch_id, status=B.RUNNING).update(
            status=B.FINISHED, finished_at=timezone.now(), updated_at=timezone.now()
        )


def caption_batch_cancel(*, batch: CaptionBatch) -> int:
    """Stop a running batch: every photo not captioned yet is canceled and refunded. Returns how many."""
    if batch.status != B.RUNNING:
        raise CaptioningError("This batch has already finished.")
    count = 0
    for task in CaptionTask.objects.filter(batch=batch, status__in=ACTIVE):
        if caption_task_end(task=task, status=T.CANCELED, note="Canceled by you. Refunded."):
            count += 1
    CaptionBatch.objects.filter(pk=batch.pk, status=B.RUNNING).update(
        status=B.CANCELED, finished_at=timezone.now(), updated_at=timezone.now()
    )
    batch.refresh_from_db()
    return count


# --- The poller ---------------------------------------------------------------------------------------------
def captions_reconcile() -> dict[str, int]:
    """Catch up on lost webhooks, dead workers and due retries. Run every minute."""
    now = timezone.now()
    stale = now - timedelta(minutes=settings.PIPELINE_STALE_MINUTES)
    counts = {"polled": 0, "failed": 0, "submitted": 0}
    quiet = CaptionTask.objects.filter(status=T.RUNNING, updated_at__lt=stale).exclude(
        replicate_prediction_id=""
    )
    for task in quiet:
        try:
            caption_apply_replicate(
                info=replicate_client.prediction_get(prediction_id=task.replicate_prediction_id)
            )
            counts["polled"] += 1
        except IntegrationError as exc:
            logger.warning("caption task %s: poll failed: %s", task.pk, exc)
    unconfirmed = CaptionTask.objects.filter(
        status=T.SUBMITTING, replicate_prediction_id="", submit_started_at__lt=stale
    )
    for task in unconfirmed:
        if caption_task_end(
            task=task, status=T.FAILED, note="Replicate never confirmed that this run started. Refunded."
        ):
            counts["failed"] += 1
    for batch_id in CaptionBatch.objects.filter(status=B.RUNNING).values_list("pk", flat=True):
        counts["submitted"] += caption_batch_pump(batch_id=batch_id)
    return counts
