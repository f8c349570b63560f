"""The sample grid made after every successful training: what the LoRA learned, and at which strength.

    training succeeds → sample_grid_start (task: plan the cells, then run them) → each cell, in a
    bounded thread pool (SAMPLE_GRID_CONCURRENCY): claim → prediction (Prefer: wait) → image copied
    → the grid is copied onto the model (models_app.services.lora_sample_grid_set: the model page,
    the cover and the Hugging Face card read it there) → the card is committed again

A cell is a prompt (row) at a LoRA strength (column), all with one seed (SAMPLE_GRID_SEED), so
the columns differ only by the strength; strength 0 is the base model without the LoRA, a
baseline. The prompts are the person's, from the start page (SAMPLE_GRID_PROMPTS at most), by
default taken from the dataset's captions and the subject or style kind. The strengths
(SAMPLE_GRID_STRENGTHS) are kept only within the target model's own schema.

The predictions run on exactly what the generate page would send for this model
(generations.services.prediction_request: the trained version, or the base model with the
published weights), so the grid shows what the person will get.

Money: the grid is part of the training's price (billing.pricing.sample_grid_cost_credits, shown as
a line of the estimate, spent with the training in one ledger entry). A failed cell does not fail
the training; its owner can run it again at no charge, since it was paid for and never delivered,
up to SAMPLE_GRID_MAX_ATTEMPTS times a cell (so a free rerun cannot become a free generator).

Cells move queued → running → succeeded | failed (failed → queued on a rerun), every move a
compare-and-swap, because the grid's task, a redelivered one and the poller race. Only the holder
of a cell's claim creates its prediction; a worker killed mid-grid leaves cells that the poller
(samples_reconcile, every minute) polls, queues again or fails: nothing stays stuck.
"""

from __future__ import annotations

import io
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import stamina
from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from billing.pricing import sample_grid_cost_credits
from fluxsite.integrations import replicate_client, storage
from fluxsite.integrations.errors import Category, IntegrationError
from fluxsite.integrations.replicate_files import image_download
from fluxsite.statemachine import transition
from generations.models import Generation
from generations.services import (
    GenerationError,
    effective_prompt,
    generation_limits,
    output_image_decode,
    prediction_request,
    prompt_suggestions,
)
from models_app.models import LoraModel
from models_app.services import lora_card_publish, lora_sample_grid_set
from training.models import DatasetImage, SampleImage, TrainingEvent, TrainingJob
from training.selectors import sample_grid_as_json
from training.services.datasets import caption_render

logger = logging.getLogger(__name__)
C = SampleImage.Status
ACTIVE = (C.QUEUED, C.RUNNING)
PROMPT_MAX_CHARS = 300
THUMBNAIL_PX = 256
# The generate form's defaults (generations.forms.GenerateForm): the grid is what a first try gives.
SAMPLE_PARAMS: dict[str, Any] = {
    "aspect_ratio": "1:1",
    "num_outputs": 1,
    "num_inference_steps": 28,
    "guidance_scale": 3,
    "output_format": "webp",
}


class SampleGridError(Exception):
    """A refused grid action; the message is safe to show."""


# --- Prompts, strengths, price ------------------------------------------------------------------------
def sample_prompts_default(*, job: TrainingJob) -> list[str]:
    """SAMPLE_GRID_PROMPTS prompts: some of the dataset's own captions (what the LoRA was shown),
    then prompts for its kind (a subject, a style) that put it somewhere it was not shown."""
    wanted = max(0, settings.SAMPLE_GRID_PROMPTS)
    captions: list[str] = []
    rows = DatasetImage.objects.filter(dataset__training=job).exclude(caption="").order_by("pk")
    for caption in rows.values_list("caption", flat=True)[:50]:
        text = " ".join(caption_render(caption, job.trigger_word).split())[:PROMPT_MAX_CHARS]
        if text and text not in captions:
            captions.append(text)
    from_captions = captions[: max(1, wanted - 2)] if wanted else []
    kind = LoraModel(trigger_word=job.trigger_word, subject_kind=job.subject_kind)  # unsaved: its kind only
    prompts = from_captions + [p for p in prompt_suggestions(model=kind) if p not in from_captions]
    return prompts[:wanted]


def sample_prompts_parse(text: str) -> list[str]:
    """The start page's prompts, one a line. Raises SampleGridError (shown at the field)."""
    prompts = [" ".join(line.split()) for line in (text or "").splitlines()]
    prompts = [p for p in prompts if p]
    if len(prompts) > settings.SAMPLE_GRID_PROMPTS:
        raise SampleGridError(f"At most {settings.SAMPLE_GRID_PROMPTS} sample prompts, one a line.")
    if any(len(p) > PROMPT_MAX_CHARS for p in prompts):
        raise SampleGridError(f"A sample prompt has at most {PROMPT_MAX_CHARS} characters.")
    return prompts


def sample_grid_images(*, prompts: int) -> int:
    """How many images a grid of `prompts` prompts makes (before the target's schema is known, every
    configured strength is counted: the price never grows when the schema drops one)."""
    return max(0, prompts) * len(settings.SAMPLE_GRID_STRENGTHS)


def sample_grid_estimate(*, prompts: int) -> tuple[int, int]:
    """(images, credits) of a grid of `prompts` prompts, part of the training's price."""
    images = sample_grid_images(prompts=prompts)
    return images, sample_grid_cost_credits(num_images=images)


def sample_strengths(*, model: LoraModel) -> list[float]:
    """The configured strengths the target model's schema allows (its lora_scale minimum and maximum).

    Raises GenerationError (the model cannot run) or IntegrationError (the schema cannot be read)."""
    spec = generation_limits(model=model).get("lora_scale")
    low = spec.minimum if spec is not None and spec.minimum is not None else float("-inf")
    high = spec.maximum if spec is not None and spec.maximum is not None else float("inf")
    return sorted({float(s) for s in settings.SAMPLE_GRID_STRENGTHS if low <= float(s) <= high})


# --- Planning and running ----------------------------------------------------------------------------------
def _event(job: TrainingJob, message: str, level: str = "info") -> None:
    TrainingEvent.objects.create(job=job, stage="samples", level=level, message=message[:1000], attempt=0)


def _enqueue(task: str, job_id: int) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task(task, job_id, task_name=f"training-{job_id}-samples"))


def sample_grid_enqueue(*, job_id: int) -> None:
    """After the training succeeded (the pipeline's completion): plan and run the grid in a task."""
    _enqueue("training.tasks.sample_grid_start_task", job_id)


def sample_grid_plan(*, job: TrainingJob) -> int:
    """Create the grid's cells once (idempotent: a second call creates none). Returns how many were
    created. Raises GenerationError or IntegrationError when the model's target cannot be asked."""
    model = LoraModel.objects.filter(training_id=job.pk).first()
    if model is None or job.status != TrainingJob.Status.SUCCEEDED or job.samples.exists():
        return 0
    typed = (job.params or {}).get("sample_prompts")
    prompts = list(typed) if isinstance(typed, list) else sample_prompts_default(job=job)
    prompts = prompts[: settings.SAMPLE_GRID_PROMPTS]
    strengths = sample_strengths(model=model)
    cells = [
        SampleImage(
            job=job,
            row=row,
            col=col,
            prompt=effective_prompt(prompt=prompt, model=model),
            lora_scale=scale,
            seed=settings.SAMPLE_GRID_SEED,
        )
        for row, prompt in enumerate(prompts)
        for col, scale in enumerate(strengths)
    ]
    # The unique (job, row, col) makes a racing second plan a no-op.
    SampleImage.objects.bulk_create(cells, ignore_conflicts=True)
    return len(cells)


def sample_grid_start(*, job_id: int) -> int:
    """Plan the grid (if not yet) and run its queued cells. Safe to run twice."""
    job = TrainingJob.objects.filter(pk=job_id).first()
    if job is None:
        return 0
    try:
        planned = sample_grid_plan(job=job)
    except (GenerationError, IntegrationError) as exc:
        # The training stays succeeded: the owner can make the grid later from the training page.
        logger.warning("training %s: the sample grid could not be planned: %s", job.pk, exc)
        _event(
            job, f"The sample images could not be started: {exc}. Run them again from this page.", "warning"
        )
        return 0
    if planned:
        _event(job, f"Making {planned} sample images.")
    return sample_grid_run(job_id=job_id)


def sample_grid_run(*, job_id: int) -> int:
    """Run the grid's queued cells, SAMPLE_GRID_CONCURRENCY at once; returns how many this call ran.

    Each cell is claimed by the thread that runs it, just before its prediction is created, so a
    second run at the same time (a redelivered task) takes only the cells nobody holds.
    """
    queued = list(SampleImage.objects.filter(job_id=job_id, status=C.QUEUED).values_list("pk", flat=True))
    ran = 0
    if queued:
        sample_grid_publish(job_id=job_id, card=False)  # the model page shows them as queued
        workers = max(1, min(settings.SAMPLE_GRID_CONCURRENCY, len(queued)))
        if workers == 1:
            ran = sum(_cell_run(pk) for pk in queued)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"samples-{job_id}") as pool:
                ran = sum(pool.map(_cell_run_in_thread, queued))
    sample_grid_publish(job_id=job_id)
    return ran


def _cell_run_in_thread(cell_id: int) -> int:
    try:
        return _cell_run(cell_id)
    finally:
        connections.close_all()  # this thread's own connections: a pool thread never returns them


def _cell_claim(cell_id: int) -> SampleImage | None:
    now = timezone.now()
    claimed = SampleImage.objects.filter(pk=cell_id, status=C.QUEUED, replicate_prediction_id="").update(
        status=C.RUNNING, claimed_at=now, attempts=F("attempts") + 1, error_message="", updated_at=now
    )
    if not claimed:
        return None
    return SampleImage.objects.select_related("job").get(pk=cell_id)


def _cell_run(cell_id: int) -> int:
    """Claim one cell, create its prediction, wait a while for it and keep its image. 1 if run."""
    cell = _cell_claim(cell_id)
    if cell is None:
        return 0
    model = LoraModel.objects.filter(training_id=cell.job_id).first()
    if model is None:
        _cell_fail(cell, "The model of this training was deleted.")
        return 1
    try:
        # The generate page's own request builder, on an unsaved generation carrying the cell.
        target, data = prediction_request(
            generation=Generation(
                effective_prompt=cell.prompt,
                params={**SAMPLE_PARAMS, "lora_scale": cell.lora_scale, "seed": cell.seed},
            ),
            model=model,
        )
        info = replicate_client.prediction_create(
            **target, input=data, wait_seconds=settings.SAMPLE_GRID_WAIT_SECONDS
        )
    except GenerationError as exc:
        _cell_fail(cell, str(exc))
        return 1
    except IntegrationError as exc:
        _cell_refused(cell, exc)
        return 1
    SampleImage.objects.filter(pk=cell.pk, replicate_prediction_id="").update(
        replicate_prediction_id=info.id, replicate_status=info.status, updated_at=timezone.now()
    )
    sample_apply_replicate(info=_wait_finished(info))
    return 1


class _StillRunning(Exception):
    pass


def _wait_finished(info: replicate_client.PredictionInfo) -> replicate_client.PredictionInfo:
    """The prediction once finished, polled for at most SAMPLE_GRID_WAIT_SECONDS (stamina's waits);
    still unfinished after that, or not readable, it is the poller's (samples_reconcile)."""
    if info.is_finished or settings.SAMPLE_GRID_WAIT_SECONDS <= 0:
        return info
    last = info
    try:
        for attempt in stamina.retry_context(
            on=_StillRunning,
            attempts=None,
            timeout=float(settings.SAMPLE_GRID_WAIT_SECONDS),
            wait_initial=0.5,
            wait_max=5.0,
            wait_jitter=0.5,
        ):
            with attempt:
                last = replicate_client.prediction_get(prediction_id=info.id)
                if not last.is_finished:
                    raise _StillRunning
    except (_StillRunning, IntegrationError) as exc:
        logger.info("sample prediction %s not finished yet (%s): left to the poller", info.id, exc)
    return last


def _cell_refused(cell: SampleImage, exc: IntegrationError) -> None:
    if exc.category == Category.TIMEOUT and exc.status is None:
        # The prediction may exist: keep the claim; the poller queues the cell again once it is stale.
        logger.warning("sample %s: create timed out: %s", cell.pk, exc.detail)
        return
    if exc.retryable and cell.attempts < settings.SAMPLE_GRID_MAX_ATTEMPTS:
        transition(cell, C.RUNNING, C.QUEUED, claimed_at=None, error_message=exc.message[:500])
        return  # the poller runs queued cells again
    _cell_fail(cell, f"{exc.message} {exc.hint}".strip())


def _cell_fail(cell: SampleImage, message: str) -> bool:
    return transition(cell, ACTIVE, C.FAILED, error_message=message[:1000])


def sample_apply_replicate(*, info: replicate_client.PredictionInfo) -> SampleImage | None:
    """Apply a sample's prediction as Replicate reports it. Idempotent and safe in any order."""
    cell = SampleImage.objects.filter(replicate_prediction_id=info.id).first()
    if cell is None or cell.status != C.RUNNING:
        return cell
    SampleImage.objects.filter(pk=cell.pk).update(
        replicate_status=info.status, predict_time=info.predict_time, updated_at=timezone.now()
    )
    if info.status == "succeeded":
        _image_keep(cell, info)
    elif info.status == "failed":
        _cell_fail(cell, f"The model failed: {(info.error or 'without saying why')[:300]}")
    elif info.status in ("canceled", "aborted"):
        _cell_fail(cell, "Replicate stopped this run.")
    cell.refresh_from_db()
    return cell


def _image_keep(cell: SampleImage, info: replicate_client.PredictionInfo) -> None:
    if not info.output_urls:
        _cell_fail(cell, "Replicate reported success without an image.")
        return
    try:
        names = _image_store(image_download(info.output_urls[0]))
    except IntegrationError as exc:
        logger.warning("sample %s: keeping the image failed: %s (%s)", cell.pk, exc, exc.detail)
        _cell_fail(cell, f"{exc.message} The image could not be saved.")
        return
    if not transition(cell, C.RUNNING, C.SUCCEEDED, file_name=names[0], thumbnail_name=names[1]):
        _files_delete(names)  # another worker kept this cell's image first


def _image_store(data: bytes) -> tuple[str, str]:
    """The image and its thumbnail in the public storage, under an unguessable folder (checked as a
    generation's outputs are: an allowlist of formats, no decompression bombs)."""
    image = output_image_decode(data)
    extension = {"WEBP": "webp", "JPEG": "jpg", "PNG": "png"}[str(image.format)]
    folder = f"samples/{secrets.token_hex(12)}"
    name = storage.file_save(
        alias=storage.PUBLIC, name=f"{folder}/image.{extension}", content=io.BytesIO(data)
    )
    thumb = image.convert("RGB")
    thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    out = io.BytesIO()
    thumb.save(out, format="WEBP", quality=80)
    out.seek(0)
    return name, storage.file_save(alias=storage.PUBLIC, name=f"{folder}/thumb.webp", content=out)


def _files_delete(names: tuple[str, ...] | list[str]) -> None:
    for name in names:
        try:
            storage.file_delete(alias=storage.PUBLIC, name=name)
        except IntegrationError:
            logger.warning("could not delete %s", name, exc_info=True)


# --- Onto the model ------------------------------------------------------------------------------------------
def sample_grid_publish(*, job_id: int, card: bool = True) -> None:
    """Copy the grid onto the model (its cover, when it has none); once no cell is left to run and
    one has an image, commit the Hugging Face card again with them. A card Hugging Face refuses
    is logged on the training: the grid is shown here either way."""
    model = LoraModel.objects.filter(training_id=job_id).first()
    if model is None or not SampleImage.objects.filter(job_id=job_id).exists():
        return
    lora_sample_grid_set(model_id=model.pk, grid=sample_grid_as_json(job_id=job_id))
    cells = SampleImage.objects.filter(job_id=job_id)
    if not card or cells.filter(status__in=ACTIVE).exists() or not cells.filter(status=C.SUCCEEDED).exists():
        return
    try:
        lora_card_publish(model_id=model.pk)
    except IntegrationError as exc:
        logger.warning("training %s: the model card could not be updated: %s (%s)", job_id, exc, exc.detail)
        job = TrainingJob.objects.get(pk=job_id)
        _event(
            job, f"The sample images could not be added to the Hugging Face card: {exc.message}", "warning"
        )


# --- The owner's rerun ---------------------------------------------------------------------------------------
def sample_grid_rerun(*, job: TrainingJob) -> int:
    """Queue the grid's failed cells again (or plan the grid, if it never started); no charge: they
    were paid for with the training and never delivered. Returns how many were queued.

    Raises SampleGridError when there is nothing to run again."""
    if job.status != TrainingJob.Status.SUCCEEDED:
        raise SampleGridError("Sample images are made for a training that succeeded.")
    if not job.samples.exists():
        _enqueue("training.tasks.sample_grid_start_task", job.pk)
        return 0
    if job.samples.filter(status__in=ACTIVE).exists():
        raise SampleGridError("The sample images are still being made.")
    queued = 0
    with transaction.atomic():
        for cell in job.samples.filter(status=C.FAILED, attempts__lt=settings.SAMPLE_GRID_MAX_ATTEMPTS):
            queued += transition(
                cell,
                C.FAILED,
                C.QUEUED,
                replicate_prediction_id="",
                replicate_status="",
                claimed_at=None,
                error_message="",
            )
        if not queued:
            failed = job.samples.filter(status=C.FAILED).exists()
            raise SampleGridError(
                f"These sample images failed {settings.SAMPLE_GRID_MAX_ATTEMPTS} times; generate "
                "from the model's page instead."
                if failed
                else "Every sample image is there: nothing to run again."
            )
        _event(job, f"Running {queued} failed sample image{'s' if queued != 1 else ''} again (no charge).")
        _enqueue("training.tasks.sample_grid_run_task", job.pk)
    return queued


# --- The poller: no sample stays stuck ---------------------------------------------------------------------
def samples_reconcile() -> dict[str, int]:
    """Catch up on what a dead worker or a slow prediction left behind. Run every minute."""
    now = timezone.now()
    stale = now - timedelta(minutes=settings.PIPELINE_STALE_MINUTES)
    counts = {"samples_polled": 0, "samples_requeued": 0, "samples_failed": 0}
    touched: set[int] = set()
    quiet = SampleImage.objects.filter(status=C.RUNNING, updated_at__lt=stale).exclude(
        replicate_prediction_id=""
    )
    for cell in quiet:
        try:
            sample_apply_replicate(
                info=replicate_client.prediction_get(prediction_id=cell.replicate_prediction_id)
            )
            counts["samples_polled"] += 1
            touched.add(cell.job_id)
        except IntegrationError as exc:
            logger.warning("sample %s: poll failed: %s", cell.pk, exc)
    # Claimed, but no prediction was recorded: the worker died (or its create went unanswered).
    lost = SampleImage.objects.filter(status=C.RUNNING, replicate_prediction_id="").filter(
        Q(claimed_at__lt=stale) | Q(claimed_at__isnull=True)
    )
    for cell in lost:
        touched.add(cell.job_id)
        if cell.attempts < settings.SAMPLE_GRID_MAX_ATTEMPTS:
            counts["samples_requeued"] += transition(cell, C.RUNNING, C.QUEUED, claimed_at=None)
        else:
            counts["samples_failed"] += _cell_fail(cell, "Replicate never confirmed that this image started.")
    # Queued cells whose task was lost, or that wait after a passing refusal, run again in a task;
    # not while a run of that grid is alive (a fresh running cell): two runs would double the bound.
    busy = set(
        SampleImage.objects.filter(status=C.RUNNING, updated_at__gte=stale).values_list("job_id", flat=True)
    )
    due = (
        set(
            SampleImage.objects.filter(status=C.QUEUED, updated_at__lt=stale).values_list("job_id", flat=True)
        )
        - busy
    )
    for job_id in due:
        _enqueue("training.tasks.sample_grid_run_task", job_id)
        touched.discard(job_id)
    for job_id in touched:
        sample_grid_publish(job_id=job_id)
    return counts
