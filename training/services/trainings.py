"""Training writes: create, duplicate, estimate, start, cancel, retry.

Starting, cancelling and retrying move the pipeline's state machine (training.services.pipeline),
through its transition and event helpers, so there is one copy of each.
"""

from __future__ import annotations

import secrets
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing.models import CreditKind
from billing.services import credits_spend, wallet_lock
from fluxsite.accounts.models import User
from fluxsite.integrations import replicate_client, storage
from fluxsite.integrations.errors import Category, IntegrationError
from fluxsite.integrations.storage import PRIVATE
from training.dataset_zip import member_stem
from training.models import ACTIVE_STATUSES, Dataset, DatasetImage, TrainingJob
from training.selectors import dataset_readiness
from training.services import pipeline
from training.services.datasets import TRIGGER_TOKEN, _delete_files
from training.services.pipeline import PipelineError, training_event_record
from training.services.samples import sample_grid_estimate, sample_prompts_default
from training.trainers.registry import DEFAULT as DEFAULT_TRAINER
from training.trainers.registry import trainer_get

S = TrainingJob.Status


# --- Create and duplicate ------------------------------------------------------------------------------------
def training_create(
    *,
    owner: User,
    name: str,
    trigger_word: str,
    subject_kind: str,
    description: str = "",
    trainer: str = DEFAULT_TRAINER,
) -> TrainingJob:
    """A draft training with its empty dataset, on `trainer` (a key of the registry)."""
    trainer_get(trainer)  # an unknown key is a bug of the caller: UnknownTrainer
    with transaction.atomic():
        job = TrainingJob.objects.create(
            owner=owner,
            trainer=trainer,
            name=name.strip(),
            trigger_word=trigger_word,
            subject_kind=subject_kind,
            description=description.strip(),
        )
        Dataset.objects.create(training=job, caption_template=f"a photo of {TRIGGER_TOKEN}")
    return job


COPY_SUFFIX = " (copy)"


def _copy_stored_file(source_name: str, base: str, suffix: str) -> str:
    with storage.get_storage(PRIVATE).open(source_name, "rb") as handle:
        return storage.file_save(alias=PRIVATE, name=f"{base}{suffix}", content=handle)


def training_duplicate(*, job: TrainingJob, use_trainer_captions: bool = False) -> TrainingJob:
    """A new draft with `job`'s settings and the same photos and captions (who wrote each kept).

    With `use_trainer_captions`, a photo that had no caption takes the one the trainer's
    autocaption wrote for it in `job` (`job.trainer_captions`), marked as the trainer's.

    Every photo and thumbnail is copied to a new generated name, so deleting either training's
    photos never touches the other's files. The copies are written before the rows (the slow part
    stays outside the transaction) and deleted again if the rows cannot be created. Raises
    IntegrationError (file_error) when a stored photo cannot be read or written.
    """
    source_images = list(DatasetImage.objects.filter(dataset__training=job).order_by("position", "pk"))
    source_dataset = Dataset.objects.filter(training=job).first()
    name = job.name[: TrainingJob.NAME_MAX_LENGTH - len(COPY_SUFFIX)] + COPY_SUFFIX
    with transaction.atomic():
        copy = TrainingJob.objects.create(
            owner=job.owner,
            name=name,
            trigger_word=job.trigger_word,
            subject_kind=job.subject_kind,
            description=job.description,
            params=dict(job.params or {}),
            preset=job.preset,
            trainer=job.trainer,
            duplicated_from=job,
        )
        dataset = Dataset.objects.create(
            training=copy,
            caption_template=source_dataset.caption_template
            if source_dataset
            else f"a photo of {TRIGGER_TOKEN}",
        )
    trainer_captions = dict(job.trainer_captions or {}) if use_trainer_captions else {}
    written: list[str] = []
    rows: list[DatasetImage] = []
    try:
        for index, image in enumerate(source_images, start=1):
            caption, source, model = image.caption, image.caption_source, image.caption_model
            if not caption and (from_trainer := str(trainer_captions.get(member_stem(index), ""))):
                caption, source, model = from_trainer, DatasetImage.CaptionSource.TRAINER, ""
            base = f"datasets/{copy.pk}/{secrets.token_hex(16)}"
            file_name = _copy_stored_file(image.file_name, base, ".jpg")
            written.append(file_name)
            thumbnail_name = _copy_stored_file(image.thumbnail_name, base, "_t.jpg")
            written.append(thumbnail_name)
            rows.append(
                DatasetImage(
                    dataset=dataset,
                    file_name=file_name,
                    thumbnail_name=thumbnail_name,
                    original_name=image.original_name,
                    width=image.width,
                    height=image.height,
                    original_width=image.original_width,
                    original_height=image.original_height,
                    byte_size=image.byte_size,
                    crc32=image.crc32,
                    pixel_sha256=image.pixel_sha256,
                    dhash=image.dhash,
                    warnings=list(image.warnings or []),
                    caption=caption,
                    caption_source=source,
                    caption_model=model,
                    position=image.position,
                )
            )
        DatasetImage.objects.bulk_create(rows)
    except Exception as exc:
        # Half a copy is worse than none: remove the new draft and every file written for it.
        _delete_files(written)
        copy.delete()
        if isinstance(exc, OSError):  # FileNotFoundError included: a stored photo has gone missing
            raise IntegrationError(
                service="storage",
                category=Category.FILE_ERROR,
                retryable=False,
                message="A photo of this training could not be copied.",
                detail=repr(exc),
            ) from exc
        raise
    return copy


# --- Start, cancel, retry ------------------------------------------------------------------------
def training_estimate(
    *, steps: int, sample_prompts: int | None = None, trainer: str = DEFAULT_TRAINER
) -> tuple[int, str]:
    """(credits, dollars of GPU time as text) for a training of `steps` steps on `trainer` (its
    hardware's price × its time per step, training/trainers/), its sample grid of `sample_prompts`
    prompts included (SAMPLE_GRID_PROMPTS when not given): one price, one spend."""
    prompts = settings.SAMPLE_GRID_PROMPTS if sample_prompts is None else sample_prompts
    _, grid_credits = sample_grid_estimate(prompts=prompts)
    chosen = trainer_get(trainer)
    dollars = chosen.cost_dollars(steps=steps).quantize(Decimal("0.01"))
    return chosen.cost_credits(steps=steps) + grid_credits, f"{dollars}"


def training_start(
    *, job: TrainingJob, params: dict, preset: str = "", trainer: str | None = None
) -> TrainingJob:
    """Hold the credits and start the pipeline on `trainer` (default: the job's own).
    Raises InsufficientCredits or PipelineError (also for a dataset the trainer cannot take)."""
    if job.status != S.DRAFT:
        raise PipelineError("This training has already started.")
    trainer = trainer or job.trainer
    chosen = trainer_get(trainer)
    problems = chosen.dataset_problems(job, params)
    if problems:  # the page shows them as field errors first; this keeps a paid run from starting
        raise PipelineError(" ".join(message for messages in problems.values() for message in messages))
    readiness = dataset_readiness(job.dataset)
    if not readiness.ready:
        raise PipelineError(readiness.summary)
    if not isinstance(params.get("sample_prompts"), list):
        # Fixed when paid for: the grid made after the training is the one priced here.
        params = {**params, "sample_prompts": sample_prompts_default(job=job)}
    credits, dollars = training_estimate(
        steps=int(params["steps"]), sample_prompts=len(params["sample_prompts"]), trainer=trainer
    )
    with transaction.atomic():
        # Counted under the wallet lock, in the spend's transaction: parallel starts cannot all pass.
        wallet_lock(user=job.owner)
        running = TrainingJob.objects.filter(owner=job.owner, status__in=ACTIVE_STATUSES).count()
        if running >= settings.MAX_ACTIVE_TRAININGS_PER_USER:
            raise PipelineError(
                f"You already have {running} trainings running, the most at once: start this one "
                "when one of them has finished."
            )
        reference = f"training:{job.pk}" if not job.credit_reference else f"training:{job.pk}:{job.runs + 1}"
        credits_spend(
            user=job.owner,
            amount=credits,
            reference=reference,
            kind=CreditKind.SPEND_TRAINING,
            note=f"Training “{job.name}”",
        )
        TrainingJob.objects.filter(pk=job.pk).update(
            params=params,
            preset=preset,
            trainer=trainer,
            cost_credits=credits,
            cost_estimate_dollars=dollars,
            credit_reference=reference,
            started_at=timezone.now(),
            runs=F("runs") + 1,
        )
        job.refresh_from_db()
        if not pipeline._transition(job, S.DRAFT, S.INITIALIZING):
            raise PipelineError("This training has already started.")
        training_event_record(job=job, message=f"Training started: {credits} credits held.")
        pipeline._enqueue_advance(job.pk)
    return job


def training_cancel(*, job: TrainingJob, by: str | None = None) -> TrainingJob:
    """Cancel at any stage: Replicate's cancel while training, then refund.

    `by` names who canceled it when it is not its owner (an operator, from the back office): the
    training's debugger then says so.
    """
    stage = job.status
    if stage not in ACTIVE_STATUSES:
        raise PipelineError("Only a running training can be canceled.")
    if stage == S.REPLICATE_TRAINING and job.replicate_training_id:
        replicate_client.training_cancel(training_id=job.replicate_training_id)  # errors reach the user
        TrainingJob.objects.filter(pk=job.pk).update(replicate_status="canceled")
        job.refresh_from_db()
    who = f"Canceled by {by}." if by else "Canceled by its owner."
    if not pipeline._finish_canceled(job, stage, who):
        raise PipelineError("This training changed state meanwhile; reload the page.")
    return job


def training_retry(*, job: TrainingJob) -> TrainingJob:
    """Run a failed training again from the stage that failed (credits are held again)."""
    if job.status != S.FAILED:
        raise PipelineError("Only a failed training can be retried.")
    stage = job.failed_stage or S.INITIALIZING
    if stage == S.HUGGINGFACE_UPLOAD and not job.weights_url:
        stage = S.REPLICATE_TRAINING
    if stage not in ACTIVE_STATUSES:
        stage = S.INITIALIZING
    with transaction.atomic():
        reference = f"training:{job.pk}:{job.runs + 1}"
        credits_spend(
            user=job.owner,
            amount=job.cost_credits or trainer_get(job.trainer).cost_credits(steps=int(job.params["steps"])),
            reference=reference,
            kind=CreditKind.SPEND_TRAINING,
            note=f"Retry of training “{job.name}”",
        )
        reset = (
            {
                "replicate_training_id": "",
                "replicate_create_started_at": None,
                "replicate_status": "",
                "progress_step": 0,
            }
            if stage in (S.INITIALIZING, S.ZIP_CREATION, S.REPLICATE_TRAINING)
            else {}
        )
        TrainingJob.objects.filter(pk=job.pk).update(
            credit_reference=reference,
            runs=F("runs") + 1,
            error_message="",
            error_category="",
            error_hint="",
            **reset,
        )
        job.refresh_from_db()
        if not pipeline._transition(job, S.FAILED, stage):
            raise PipelineError("This training changed state meanwhile; reload the page.")
        training_event_record(job=job, message=f"Retrying from “{job.get_status_display()}”.")
        pipeline._enqueue_advance(job.pk)
    return job
