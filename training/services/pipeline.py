"""The training pipeline: an explicit state machine driven by thin django-q2 tasks.

    draft → initializing → zip_creation → replicate_training → huggingface_upload → completion → succeeded
                     any active stage → failed (credits refunded) | canceled (credits refunded)

Every transition is a compare-and-swap on `status` (`filter(pk=, status=old).update(...) == 1`),
because a worker, the Replicate webhook and the poller can race for the same job. Attempts are
counted on the job itself: django-q2 does not count a worker that was killed (issue #327), so a
stage that keeps dying ends failed and refunded instead of looping forever.

Starting a paid Replicate training is guarded by a claim (`replicate_create_started_at`): only
the task that sets it may call the API, so a redelivered task never starts a second training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from billing.services import credits_refund
from fluxsite.accounts.services.webhooks import webhook_event_emit
from fluxsite.integrations import replicate_client
from fluxsite.integrations.errors import HINTS, Category, IntegrationError
from fluxsite.statemachine import backoff_seconds, transition
from models_app.services import TarCaptions, lora_model_create_from_training, lora_publish
from training.failures import trainer_failure_explain
from training.models import ACTIVE_STATUSES, TrainingEvent, TrainingJob
from training.progress import progress_from_logs
from training.selectors import dataset_readiness
from training.services.captions import trainer_captions_record
from training.services.datasets import dataset_build_zip, dataset_zip_url
from training.services.samples import sample_grid_enqueue
from training.trainers.registry import trainer_get

logger = logging.getLogger(__name__)
S = TrainingJob.Status

ACTIVE = ACTIVE_STATUSES  # the one definition is in training.models
TERMINAL = (S.SUCCEEDED, S.FAILED, S.CANCELED)
NEXT = {
    S.INITIALIZING: S.ZIP_CREATION,
    S.ZIP_CREATION: S.REPLICATE_TRAINING,
    S.REPLICATE_TRAINING: S.HUGGINGFACE_UPLOAD,
    S.HUGGINGFACE_UPLOAD: S.COMPLETION,
    S.COMPLETION: S.SUCCEEDED,
}
LOGS_KEPT = 20_000  # characters of the trainer's log kept on the job (the tail)


class PipelineError(Exception):
    """A refused pipeline action; the message is safe to show."""


# --- Events -------------------------------------------------------------------------------------
def training_event_record(
    *,
    job: TrainingJob,
    message: str,
    level: str = "info",
    stage: str = "",
    category: str = "",
    hint: str = "",
    data: dict | None = None,
) -> TrainingEvent:
    return TrainingEvent.objects.create(
        job=job,
        stage=stage or job.status,
        level=level,
        category=category,
        message=message[:1000],
        hint=hint[:500],
        data=data or {},
        attempt=job.attempts,
    )


# --- Transitions --------------------------------------------------------------------------------
def _transition(job: TrainingJob, old: str, new: str, **fields) -> bool:
    """Compare-and-swap `old` → `new` (fluxsite.statemachine), stamping the stage timeline and
    resetting the stage's attempts. False when someone else moved it first."""
    now = timezone.now()
    times = {k: dict(v) for k, v in (job.stage_times or {}).items()}
    if old in times:
        times[old]["ended"] = now.isoformat()
    if new in ACTIVE:
        times[new] = {"started": now.isoformat()}
    extra = {"finished_at": now} if new in TERMINAL else {}
    moved = transition(
        job, old, new, stage_times=times, attempts=0, next_attempt_at=None, updated_at=now, **extra, **fields
    )
    if moved:
        _emit_transition(job, old, new)
    return moved


def _emit_transition(job: TrainingJob, old: str, new: str) -> None:
    """The owner's webhooks (fluxsite.accounts.services.webhooks): recorded with the move, sent on commit."""
    data = {
        "training": {
            "id": job.pk,
            "name": job.name,
            "status": new,
            "previous_status": old,
            "error_message": job.error_message if new == S.FAILED else "",
        }
    }
    webhook_event_emit(user_id=job.owner_id, event_type="training.stage_changed", data=data)
    if new in (S.SUCCEEDED, S.FAILED):
        webhook_event_emit(user_id=job.owner_id, event_type=f"training.{new}", data=data)


def _enqueue_advance(job_id: int) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task(
            "training.tasks.training_advance_task", job_id, task_name=f"training-{job_id}-advance"
        )
    )


# --- The worker's entry point ---------------------------------------------------------------------
def training_advance(*, job_id: int) -> None:
    """Run the current stage once. Safe to call twice, from a redelivered task or the poller."""
    job = TrainingJob.objects.filter(pk=job_id).first()
    if job is None or job.status not in ACTIVE:
        return
    if job.next_attempt_at and job.next_attempt_at > timezone.now():
        return  # a retry is scheduled; the poller runs it when due
    stage = job.status
    if stage == S.REPLICATE_TRAINING and job.replicate_training_id:
        return  # waiting for Replicate: webhooks and the poller move it on
    TrainingJob.objects.filter(pk=job.pk, status=stage).update(
        attempts=F("attempts") + 1, updated_at=timezone.now()
    )
    job.refresh_from_db()
    if job.status != stage:
        return
    if job.attempts > settings.PIPELINE_MAX_ATTEMPTS:
        training_fail(
            job=job,
            category=Category.SERVICE_ERROR,
            message=f"The stage “{job.get_status_display()}” did not finish after {job.attempts - 1} attempts.",
        )
        return
    handler = _HANDLERS[stage]
    try:
        handler(job)
    except IntegrationError as exc:
        _handle_integration_error(job, stage, exc)
    except PipelineError as exc:
        training_fail(job=job, category=Category.VALIDATION, message=str(exc))
    except Exception as exc:  # a bug or an unexpected failure: counted, retried, then failed and refunded
        logger.exception("training %s: stage %s crashed", job.pk, stage)
        _handle_integration_error(
            job,
            stage,
            IntegrationError(
                service="fluxsite",
                category=Category.SERVICE_ERROR,
                message="An unexpected error stopped this stage.",
                detail=repr(exc),
                retryable=True,
            ),
        )


def _backoff_seconds(attempt: int) -> float:
    """30 s, 60 s, 120 s … capped at 15 minutes, with half jitter."""
    return backoff_seconds(attempt, base=30, cap=900)


def _handle_integration_error(job: TrainingJob, stage: str, exc: IntegrationError) -> None:
    training_event_record(
        job=job,
        stage=stage,
        level="error" if not exc.retryable else "warning",
        category=str(exc.category),
        message=exc.message,
        hint=exc.hint,
        data={"service": exc.service, "status": exc.status, "detail": exc.detail[:500]},
    )
    if exc.retryable and job.attempts < settings.PIPELINE_MAX_ATTEMPTS:
        delay = max(_backoff_seconds(job.attempts), exc.retry_after or 0)
        TrainingJob.objects.filter(pk=job.pk, status=stage).update(
            next_attempt_at=timezone.now() + timedelta(seconds=delay)
        )
        return
    training_fail(job=job, category=exc.category, message=exc.message, hint=exc.hint)


# --- Stages -----------------------------------------------------------------------------------
def _stage_initializing(job: TrainingJob) -> None:

    readiness = dataset_readiness(job.dataset)
    if not readiness.ready:
        raise PipelineError(readiness.summary)
    if _transition(job, S.INITIALIZING, S.ZIP_CREATION):
        _enqueue_advance(job.pk)


def _stage_zip(job: TrainingJob) -> None:

    dataset = dataset_build_zip(dataset_id=job.dataset.pk)
    training_event_record(
        job=job, message=f"Dataset ZIP ready ({dataset.zip_size} bytes).", data={"crc32": dataset.zip_crc32}
    )
    if _transition(job, S.ZIP_CREATION, S.REPLICATE_TRAINING):
        _enqueue_advance(job.pk)


def destination_name(job: TrainingJob) -> str:
    """A Replicate model name unique to this training: owner handle, training name, primary key."""
    base = slugify(f"{job.owner.handle}-{job.name}")[:60].strip("-") or "lora"
    return f"{base}-{job.pk}".lower()


def trainer_input(job: TrainingJob, zip_url: str) -> dict:
    """The input of this training's trainer (training/trainers/), built from its params."""
    return trainer_get(job.trainer).build_input(job, zip_url, dict(job.params))


def _stage_replicate_start(job: TrainingJob) -> None:

    claimed = TrainingJob.objects.filter(
        pk=job.pk,
        status=S.REPLICATE_TRAINING,
        replicate_training_id="",
        replicate_create_started_at__isnull=True,
    ).update(replicate_create_started_at=timezone.now())
    if not claimed:
        return  # another run claimed the create: never start a second paid training
    owner = settings.REPLICATE_OWNER
    name = destination_name(job)
    try:
        replicate_client.model_ensure(
            owner=owner, name=name, visibility="private", description=f"Fluxsite LoRA: {job.name}"[:200]
        )
        webhook = f"{settings.SITE_URL}{reverse('training:replicate_webhook')}?job={job.pk}"
        trainer = trainer_get(job.trainer)
        version = replicate_client.trainer_version_get(model=trainer.model(), pinned=trainer.version())
        data = trainer_input(job, dataset_zip_url(dataset=job.dataset))
        # Kept before the paid call: a training we never hear back about is recognised by what it
        # carries (model, version, input), since a training object names no destination.
        TrainingJob.objects.filter(pk=job.pk).update(
            replicate_trainer_version=version, replicate_input=data, replicate_destination=f"{owner}/{name}"
        )
        info = replicate_client.training_create(
            destination=f"{owner}/{name}",
            input=data,
            webhook_url=webhook,
            version=version,
            model=trainer.model(),
        )
    except IntegrationError as exc:
        if exc.category != Category.TIMEOUT:
            # Replicate answered, so we know nothing was started: the next attempt may create it.
            TrainingJob.objects.filter(pk=job.pk).update(replicate_create_started_at=None)
        else:
            # No answer: a training may or may not exist. Do not create another; its start webhook
            # or the poller (which lists recent trainings) adopts it, or fails and refunds the job.
            exc.retryable = False
            training_event_record(
                job=job,
                level="warning",
                category=str(exc.category),
                message="Replicate did not answer in time; waiting to learn whether it started.",
            )
            return
        raise
    TrainingJob.objects.filter(pk=job.pk, replicate_training_id="").update(
        replicate_training_id=info.id, replicate_status=info.status, last_news_at=timezone.now()
    )
    job.refresh_from_db()
    training_event_record(job=job, message=f"Replicate training {info.id} created.", data={"id": info.id})


def _trainer_captions_keep(job: TrainingJob, found: TarCaptions) -> None:
    kept = trainer_captions_record(job=job, found=found)
    if kept.kept or kept.notes:
        training_event_record(job=job, message=kept.text)


def _stage_publish(job: TrainingJob) -> None:

    model = lora_model_create_from_training(
        training=job,
        weights_url=job.weights_url,
        replicate_version=job.replicate_version,
        params=job.params,
        base_model=trainer_get(job.trainer).base_model,
        trained_with=trainer_get(job.trainer).model(),
        on_captions=lambda found: _trainer_captions_keep(job, found),
    )
    try:
        lora_publish(model_id=model.pk)
        training_event_record(job=job, message="Weights published to Hugging Face.")
    except IntegrationError as exc:
        if exc.retryable and job.attempts < settings.PIPELINE_MAX_ATTEMPTS:
            raise
        # The training worked and the weights are safe in our storage: finish, and let the owner
        # retry publishing from the model page.
        training_event_record(
            job=job,
            level="warning",
            category=str(exc.category),
            message=f"Publishing to Hugging Face failed: {exc.message} The model is usable; "
            "retry publishing from its page.",
            hint=exc.hint,
        )
    if _transition(job, S.HUGGINGFACE_UPLOAD, S.COMPLETION):
        _enqueue_advance(job.pk)


def _stage_completion(job: TrainingJob) -> None:
    if _transition(job, S.COMPLETION, S.SUCCEEDED):
        training_event_record(job=job, message="Training finished.")
        _enqueue_notify(job.pk)
        # Its sample grid, in its own task: a failed sample never fails the training.
        sample_grid_enqueue(job_id=job.pk)


_HANDLERS: dict[str, Callable[[TrainingJob], None]] = {
    S.INITIALIZING: _stage_initializing,
    S.ZIP_CREATION: _stage_zip,
    S.REPLICATE_TRAINING: _stage_replicate_start,
    S.HUGGINGFACE_UPLOAD: _stage_publish,
    S.COMPLETION: _stage_completion,
}


# --- What Replicate reports (webhook and poller share this) -----------------------------------------
def _is_ours(job: TrainingJob, info: replicate_client.TrainingInfo) -> bool:
    """Whether a training Replicate reports is the one this job asked for (its create went unanswered).

    A real training object has no `destination`; it carries the trainer's model and version and the
    input we sent, whose `input_images` is the dataset URL we generated for this job alone.
    """
    sent = job.replicate_input or {}
    trainer = trainer_get(job.trainer)
    dataset = trainer.dataset_input
    return (
        bool(sent.get(dataset))
        and info.model == trainer.model()
        and info.version == job.replicate_trainer_version
        and info.input.get(dataset) == sent[dataset]
    )


def _adopt(info: replicate_client.TrainingInfo, job_hint: int | None) -> TrainingJob | None:
    """A training we asked for but never heard back about (the create call timed out, or the worker
    died before saving the id): its webhook names our job in the URL, and it carries our input.
    If that job has meanwhile ended (failed and refunded), the training is canceled at Replicate."""
    if not job_hint:
        return None
    job = TrainingJob.objects.filter(
        pk=job_hint, replicate_training_id="", replicate_create_started_at__isnull=False
    ).first()
    if job is None or not _is_ours(job, info):
        return None
    if job.status != S.REPLICATE_TRAINING:
        _cancel_orphan(job, info)
        return None
    if TrainingJob.objects.filter(pk=job.pk, replicate_training_id="").update(replicate_training_id=info.id):
        training_event_record(job=job, message=f"Replicate training {info.id} found and linked to this job.")
    return TrainingJob.objects.filter(replicate_training_id=info.id).first()


def _cancel_orphan(job: TrainingJob, info: replicate_client.TrainingInfo) -> None:
    """Our training, but the job gave up on it: stop it so nobody pays for a run that nobody uses."""
    if info.is_finished:
        return
    try:
        replicate_client.training_cancel(training_id=info.id)
    except IntegrationError as exc:
        logger.warning(
            "training %s: could not cancel orphaned Replicate training %s: %s", job.pk, info.id, exc
        )
        return
    training_event_record(
        job=job,
        level="warning",
        message=f"Replicate training {info.id} started after this job "
        "had ended; it was canceled at Replicate.",
    )


def training_find_lost(*, job: TrainingJob) -> TrainingJob | None:
    """The poller's adoption: look for this job's training among the account's recent trainings."""
    for info in replicate_client.trainings_recent():
        if _is_ours(job, info):
            return training_apply_replicate(info=info, job_hint=job.pk)
    return None


def training_apply_replicate(
    *, info: replicate_client.TrainingInfo, job_hint: int | None = None
) -> TrainingJob | None:
    """Apply a training object as Replicate reports it (webhook body or GET). Idempotent, order-safe."""
    job = TrainingJob.objects.filter(replicate_training_id=info.id).first() or _adopt(info, job_hint)
    if job is None:
        return None
    now = timezone.now()
    fields: dict = {"last_news_at": now}
    if job.status == S.REPLICATE_TRAINING:
        progress = progress_from_logs(info.logs, label=trainer_get(job.trainer).progress_label)
        if progress.step >= (job.progress_step or 0):  # an old webhook never moves progress back
            fields.update(
                progress_step=progress.step,
                progress_total=progress.total or None,
                seconds_per_step=progress.seconds_per_step,
                eta_seconds=progress.eta_seconds,
                current_loss=progress.loss,
                loss_history=[list(p) for p in progress.loss_history],
                logs_tail=(info.logs or "")[-LOGS_KEPT:],
            )
        if not info.is_finished:
            fields["replicate_status"] = info.status
    if info.predict_time is not None:
        fields["predict_time"] = info.predict_time
    TrainingJob.objects.filter(pk=job.pk).update(**fields)
    job.refresh_from_db()
    if info.status == "succeeded" and job.status == S.REPLICATE_TRAINING:
        if not info.weights_url:
            training_fail(
                job=job, category=Category.FILE_ERROR, message="Replicate reported success without weights."
            )
        elif _transition(
            job,
            S.REPLICATE_TRAINING,
            S.HUGGINGFACE_UPLOAD,
            replicate_status=info.status,
            replicate_version=info.output_version or "",
            weights_url=info.weights_url,
        ):
            training_event_record(
                job=job,
                stage=S.REPLICATE_TRAINING,
                message=f"Replicate training succeeded ({info.predict_time or 0:.0f} s of GPU).",
            )
            _enqueue_advance(job.pk)
    elif info.status == "failed" and job.status == S.REPLICATE_TRAINING:
        error = info.error or "The trainer failed without saying why."
        failure = trainer_failure_explain(error)  # the trainer's real messages: training/failures.py
        training_fail(
            job=job,
            category=failure.category,
            message=f"The trainer failed: {error}",
            hint=failure.hint,
            replicate_status=info.status,
        )
    elif info.status == "canceled" and job.status == S.REPLICATE_TRAINING:
        _finish_canceled(job, S.REPLICATE_TRAINING, "Replicate reports the training was canceled.")
    elif info.status == "aborted" and job.status == S.REPLICATE_TRAINING:
        training_fail(
            job=job,
            category=Category.TIMEOUT,
            replicate_status=info.status,
            message="Replicate stopped the training before it started (its deadline passed).",
        )
    return job


WATCH_REFRESH_SECONDS = 10


def training_watch(*, job: TrainingJob) -> bool:
    """While the owner watches a running training, refresh it from Replicate at most every
    WATCH_REFRESH_SECONDS, in a task (never in the request). Returns whether a refresh was queued."""
    from django.core.cache import cache
    from django_q.tasks import async_task

    if job.status != S.REPLICATE_TRAINING or not job.replicate_training_id:
        return False
    if job.last_news_at and (timezone.now() - job.last_news_at).total_seconds() < WATCH_REFRESH_SECONDS:
        return False
    if not cache.add(f"training-watch-{job.pk}", 1, WATCH_REFRESH_SECONDS):
        return False  # one refresh in flight per training, however many tabs poll
    async_task("training.tasks.training_sync_task", job.pk, task_name=f"training-{job.pk}-sync")
    return True


def training_sync(*, job: TrainingJob) -> None:
    """Ask Replicate for the training's state (the poller's path)."""
    info = replicate_client.training_get(training_id=job.replicate_training_id)
    training_apply_replicate(info=info)


# --- Endings ---------------------------------------------------------------------------------------
def training_fail(*, job: TrainingJob, category: str, message: str, hint: str = "", **fields) -> bool:
    """Active → failed, once: the credits come back and the owner gets an e-mail."""
    stage = job.status
    if stage not in ACTIVE:
        return False
    if not hint and category in Category._value2member_map_:
        hint = HINTS[Category(category)]
    with transaction.atomic():
        if not _transition(
            job,
            stage,
            S.FAILED,
            failed_stage=stage,
            error_category=str(category),
            error_message=message[:1000],
            error_hint=hint[:500],
            **fields,
        ):
            return False
        refund = (
            credits_refund(spend_reference=job.credit_reference, note=f"Training “{job.name}” failed")
            if job.credit_reference
            else None
        )
        training_event_record(
            job=job, stage=stage, level="error", category=str(category), message=message, hint=hint
        )
        if refund is not None and refund.created:
            training_event_record(job=job, stage=stage, message=f"{refund.entry.amount} credits refunded.")
        _enqueue_notify(job.pk)
    _cancel_at_replicate(job)
    return True


def _finish_canceled(job: TrainingJob, stage: str, message: str) -> bool:
    with transaction.atomic():
        if not _transition(job, stage, S.CANCELED, failed_stage=stage):
            return False
        if job.credit_reference:
            credits_refund(spend_reference=job.credit_reference, note=f"Training “{job.name}” canceled")
        training_event_record(job=job, stage=stage, message=message + " Credits refunded.")
    return True


def _cancel_at_replicate(job: TrainingJob) -> None:
    if job.replicate_training_id and job.replicate_status not in ("succeeded", "failed", "canceled"):
        try:
            replicate_client.training_cancel(training_id=job.replicate_training_id)
        except IntegrationError as exc:
            logger.warning("training %s: cancel at Replicate failed: %s", job.pk, exc)


# --- The poller: no training is ever stuck -------------------------------------------------------------
def trainings_reconcile() -> dict[str, int]:
    """Catch up on everything a lost webhook or a dead worker left behind. Run every minute."""
    now = timezone.now()
    stale = now - timedelta(minutes=settings.PIPELINE_STALE_MINUTES)
    counts = {"polled": 0, "resumed": 0, "failed": 0, "adopted": 0}
    waiting = (
        TrainingJob.objects.filter(status=S.REPLICATE_TRAINING)
        .exclude(replicate_training_id="")
        .filter(Q(last_news_at__lt=stale) | Q(last_news_at__isnull=True))
    )
    for job in waiting:
        try:
            training_sync(job=job)
            counts["polled"] += 1
        except IntegrationError as exc:
            logger.warning("training %s: poll failed: %s", job.pk, exc)
    # A create that went unanswered: look for the training among the recent ones (a minute after, so
    # its own start webhook usually comes first); fail and refund only once the stale window has passed.
    unconfirmed = TrainingJob.objects.filter(
        status=S.REPLICATE_TRAINING,
        replicate_training_id="",
        replicate_create_started_at__lt=now - timedelta(minutes=1),
    )
    for job in unconfirmed:
        try:
            if training_find_lost(job=job) is not None:
                counts["adopted"] += 1
                continue
        except IntegrationError as exc:
            logger.warning("training %s: listing recent trainings failed: %s", job.pk, exc)
            continue  # we cannot know: never refund a training that may be running
        if (
            job.replicate_create_started_at is not None
            and job.replicate_create_started_at < stale
            and training_fail(
                job=job,
                category=Category.TIMEOUT,
                message="Replicate never confirmed that the training started.",
            )
        ):
            counts["failed"] += 1
    due = (
        TrainingJob.objects.filter(status__in=ACTIVE)
        .filter(Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True, updated_at__lt=stale))
        .exclude(status=S.REPLICATE_TRAINING, replicate_create_started_at__isnull=False)
    )
    for job in due:
        TrainingJob.objects.filter(pk=job.pk).update(next_attempt_at=None)
        training_advance(job_id=job.pk)
        counts["resumed"] += 1
    return counts


# --- E-mail ------------------------------------------------------------------------------------------
def _enqueue_notify(job_id: int) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task(
            "training.tasks.training_notify_task", job_id, task_name=f"training-{job_id}-notify"
        )
    )


def training_notify(*, job_id: int) -> None:
    """E-mail the owner when a training ends: a link to the model, or the reason and the refund."""
    job = TrainingJob.objects.select_related("owner").get(pk=job_id)
    link = f"{settings.SITE_URL}{reverse('training:detail', args=[job.pk])}"
    if job.status == S.SUCCEEDED:
        subject = f"Your model “{job.name}” is ready"
        model = getattr(job, "lora_model", None)
        if model is not None:
            link = f"{settings.SITE_URL}{reverse('models_app:detail', args=[model.pk])}"
        body = (
            f"Your training “{job.name}” finished. Use the trigger word “{job.trigger_word}” in your prompts.\n\n"
            f"Open your model: {link}\n"
        )
    elif job.status == S.FAILED:
        subject = f"Your training “{job.name}” failed"
        body = (
            f"Your training “{job.name}” failed: {job.error_message}\n{job.error_hint}\n\n"
            f"The {job.cost_credits or 0} credits it held were refunded. Details: {link}\n"
        )
    else:
        return
    send_mail(subject, body, None, [job.owner.email], fail_silently=True)
