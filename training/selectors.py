"""Reads for trainings and datasets, always scoped to the owner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404
from django.utils import timezone

from fluxsite.accounts.models import User
from fluxsite.integrations.storage import PRIVATE, PUBLIC
from fluxsite.prepared import PreparedQuery
from fluxsite.units import duration_text
from models_app.models import LoraModel
from models_app.selectors import sample_grid_display
from training.dataset_zip import member_stem
from training.models import (
    ACTIVE_STATUSES,
    CaptionBatch,
    CaptionTask,
    Dataset,
    DatasetImage,
    SampleImage,
    TrainingEvent,
    TrainingJob,
)


def trainings_for_user(user: User) -> QuerySet[TrainingJob]:
    return TrainingJob.objects.filter(owner=user).select_related("dataset")


def get_training_for_user(user: User, pk: int) -> TrainingJob:
    """The user's training, or 404 (never 403: another user's ids are not confirmed to exist)."""
    return get_object_or_404(trainings_for_user(user), pk=pk)


def get_dataset_for_user(user: User, training_pk: int) -> Dataset:
    return get_object_or_404(
        Dataset.objects.select_related("training"), training__pk=training_pk, training__owner=user
    )


def training_ready_model_pk(job: TrainingJob) -> int | None:
    """The id of the ready model this training made, if any (one query)."""
    return (
        LoraModel.objects.filter(training=job, status=LoraModel.Status.READY)
        .values_list("pk", flat=True)
        .first()
    )


def get_image_for_user(user: User, training_pk: int, image_pk: int) -> DatasetImage:
    return get_object_or_404(
        DatasetImage.objects.select_related("dataset__training"),
        pk=image_pk,
        dataset__training__pk=training_pk,
        dataset__training__owner=user,
    )


def owned_file_names(user: User) -> list[tuple[str, str]]:
    """Every stored file of the user's datasets, as (storage alias, name): for account deletion."""
    files: list[tuple[str, str]] = []
    for file_name, thumbnail_name in DatasetImage.objects.filter(dataset__training__owner=user).values_list(
        "file_name", "thumbnail_name"
    ):
        files += [(PRIVATE, file_name), (PRIVATE, thumbnail_name)]
    for zip_name in (
        Dataset.objects.filter(training__owner=user).exclude(zip_name="").values_list("zip_name", flat=True)
    ):
        files.append((PRIVATE, zip_name))
    for file_name, thumbnail_name in (
        SampleImage.objects.filter(job__owner=user)
        .exclude(file_name="")
        .values_list("file_name", "thumbnail_name")
    ):
        files += [(PUBLIC, file_name), (PUBLIC, thumbnail_name)]
    return files


@dataclass
class Readiness:
    count: int
    warnings: int
    ready: bool
    text: str

    @property
    def summary(self) -> str:
        """The same line; the pipeline refuses a start with it."""
        return self.text


def dataset_readiness(dataset: Dataset, images: list[DatasetImage] | None = None) -> Readiness:
    """One line for the page: "14 photos, 2 warnings, ready to train"."""
    if images is None:
        # Values, not instances: instances read through the related manager with only("warnings")
        # would each load their deferred dataset_id (one query per photo) to be linked back.
        warnings = list(DatasetImage.objects.filter(dataset=dataset).values_list("warnings", flat=True))
    else:
        warnings = [image.warnings for image in images]
    count = len(warnings)
    warned = sum(1 for item in warnings if item)
    low, high = settings.DATASET_MIN_IMAGES, settings.DATASET_MAX_IMAGES
    parts = [f"{count} photo{'s' if count != 1 else ''}"]
    if warned:
        parts.append(f"{warned} warning{'s' if warned != 1 else ''}")
    if count < low:
        parts.append(f"add at least {low - count} more to train")
    elif count > high:
        parts.append(f"remove {count - high} to train (the most is {high})")
    else:
        parts.append("ready to train")
    return Readiness(count=count, warnings=warned, ready=low <= count <= high, text=", ".join(parts))


@dataclass(frozen=True)
class CaptionPlan:
    """Who captions the photos of a training: the person, or (for photos without) the trainer."""

    total: int
    uncaptioned: int  # photos whose ZIP entry has no .txt (an empty caption)
    autocaption: bool  # the person lets the trainer caption photos without one

    @property
    def trainer_captions(self) -> int:
        """How many photos the trainer's autocaption will caption (it skips those with a .txt)."""
        return self.uncaptioned if self.autocaption else 0

    @property
    def autocaption_input(self) -> bool:
        """The trainer's `autocaption` input: on only when it has photos to caption."""
        return self.trainer_captions > 0

    @property
    def text(self) -> str:
        if not self.uncaptioned:
            return "All photos have your captions: the trainer's autocaption stays off."
        if self.autocaption:
            return (
                f"{self.uncaptioned} of {self.total} photos will be captioned by the trainer "
                "(they have no caption of yours); the others keep yours."
            )
        return (
            f"{self.uncaptioned} of {self.total} photos have no caption and autocaption is off: "
            "they are trained without one."
        )


def trainer_captions_rows(job: TrainingJob) -> list[tuple[str, DatasetImage | None, str]]:
    """(ZIP stem, the photo it was, the trainer's caption) for the training page: one query."""
    if not job.trainer_captions:
        return []
    images = list(DatasetImage.objects.filter(dataset__training=job).order_by("position", "pk"))
    by_stem = {member_stem(index): image for index, image in enumerate(images, start=1)}
    return [(stem, by_stem.get(stem), str(text)) for stem, text in sorted(job.trainer_captions.items())]


def dataset_caption_plan(dataset: Dataset, *, autocaption: bool = True) -> CaptionPlan:
    """One query. An empty caption is exactly a photo the dataset ZIP writes no .txt for
    (captions are stored trimmed, and `[trigger]` alone renders to the trigger word)."""
    counts = DatasetImage.objects.filter(dataset=dataset).aggregate(
        total=Count("pk"), uncaptioned=Count("pk", filter=Q(caption=""))
    )
    return CaptionPlan(total=counts["total"], uncaptioned=counts["uncaptioned"], autocaption=autocaption)


# --- Dashboards ----------------------------------------------------------------------------------
STATUS_FILTERS = {
    "all": None,
    "active": ACTIVE_STATUSES,
    "succeeded": (TrainingJob.Status.SUCCEEDED,),
    "failed": (TrainingJob.Status.FAILED,),
    "canceled": (TrainingJob.Status.CANCELED,),
    "draft": (TrainingJob.Status.DRAFT,),
}
SORTS = {"newest": ("-created_at", "-pk"), "oldest": ("created_at", "pk"), "name": ("name", "pk")}


# What a list row shows (and what its live status cell needs): the wide columns (the log tail, the
# loss history, the Replicate input) stay in the database.
LIST_FIELDS = ("id", "name", "trigger_word", "status", "created_at", "progress_step", "progress_total")


def training_ordering(sort: str) -> tuple[str, ...]:
    """The history's order for `sort` (unknown values fall back to the newest first)."""
    return SORTS.get(sort, SORTS["newest"])


def _photo_count() -> Coalesce:
    """A training's number of photos, as a correlated subquery (counted for the rows read only)."""
    photos = (
        DatasetImage.objects.filter(dataset__training=OuterRef("pk"))
        .order_by()
        .values("dataset")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(photos, output_field=IntegerField()), 0)


def trainings_search(
    user: User, *, status: str = "all", query: str = "", sort: str = "newest"
) -> QuerySet[TrainingJob]:
    """The history list: one query whatever the number of rows (the model's id is joined and the photo
    count is a correlated subquery, so the template never asks per row). The count is computed for
    the rows of the page only: a Count() with GROUP BY would count the photos of every training the
    user has before the page's 20 are taken. Unknown filter or sort values fall back."""
    return _trainings(user.pk, status=status, query=query, sort=sort)


def _trainings(
    owner_id: int, *, status: str = "all", query: str = "", sort: str = "newest"
) -> QuerySet[TrainingJob]:
    qs = (
        TrainingJob.objects.filter(owner_id=owner_id)
        .annotate(
            image_count=_photo_count(),
            # The model's id, not the model: a row without one would raise (and Django's template
            # engine would catch, at the price of a dir() of the row) on every access.
            model_pk=F("lora_model__id"),
        )
        .only(*LIST_FIELDS)
    )
    statuses = STATUS_FILTERS.get(status)
    if statuses:
        qs = qs.filter(status__in=statuses)
    query = query.strip()
    if query:
        qs = qs.filter(Q(name__icontains=query) | Q(trigger_word__icontains=query))
    return qs.order_by(*training_ordering(sort))


TRAININGS_PER_PAGE = 20
# The history as most visits see it (no filter, newest first, the first page), compiled once per
# process: building this annotated query cost about as much as the rest of the page (issue 15).
_TRAININGS_FIRST_PAGE = PreparedQuery(
    TrainingJob, lambda owner_id: _trainings(owner_id)[: TRAININGS_PER_PAGE + 1], "owner_id"
)


def trainings_first_page(user: User) -> list[TrainingJob]:
    """The first `TRAININGS_PER_PAGE + 1` rows of `trainings_search(user)` (the extra row says
    whether there is a next page), as `fluxsite.pagination.cursor_first_page` takes them."""
    return _TRAININGS_FIRST_PAGE.list(owner_id=user.pk)


def get_training_with_dataset_for_user(user: User, pk: int) -> TrainingJob:
    """The training with its dataset joined (the start page reads both), without the log tail."""
    return get_object_or_404(
        TrainingJob.objects.filter(owner=user).select_related("dataset").defer("logs_tail"), pk=pk
    )


def _training_page(user_id: int, pk: int) -> QuerySet[TrainingJob]:
    return (
        TrainingJob.objects.filter(owner_id=user_id, pk=pk)
        .defer("logs_tail")
        .annotate(
            photo_count=_photo_count(),
            model_pk=F("lora_model__id"),
            duplicated_from_name=F("duplicated_from__name"),
        )
    )


# Compiled once per process: building this annotated query cost more than running it (issue 15).
_TRAINING_PAGE = PreparedQuery(TrainingJob, _training_page, "user_id", "pk")


def get_training_page_for_user(user: User, pk: int) -> TrainingJob:
    """The detail page's training and its live fragment's (one query). What the page shows of the
    related rows comes as annotations rather than joined objects (a wide join's rows cost more to
    build than the page's template to render): `photo_count`, `model_pk` (the model's id, None
    before there is one) and `duplicated_from_name`. The log tail (up to 20 kB, for the admin)
    stays in the database. Another user's training is a 404."""
    return _TRAINING_PAGE.get_or_404(user_id=user.pk, pk=pk)


EVENT_ORDERING = ("-created_at", "-pk")  # newest first, paged towards the older ones
EVENTS_PER_POLL = 100


def training_events(job: TrainingJob) -> QuerySet[TrainingEvent]:
    return TrainingEvent.objects.filter(job=job)


def training_events_by_ids(job: TrainingJob, ids: list[int]) -> QuerySet[TrainingEvent]:
    """The job's events with these ids, oldest first; lazy (read when a template first loops)."""
    return TrainingEvent.objects.filter(job=job, pk__in=ids).order_by(
        *(name.removeprefix("-") for name in EVENT_ORDERING)
    )


def training_events_since(job: TrainingJob, last_id: int) -> list[TrainingEvent]:
    """The events the live page does not have yet (after the one with `last_id`), oldest first;
    at most EVENTS_PER_POLL, the next poll asks for the rest."""
    return list(TrainingEvent.objects.filter(job=job, pk__gt=last_id).order_by("pk")[:EVENTS_PER_POLL])


@dataclass
class StageRow:
    status: str
    label: str
    state: str  # done | current | failed | canceled | pending
    seconds: int | None

    @property
    def duration(self) -> str:
        return duration_text(self.seconds) if self.seconds is not None else ""


def speed_text(seconds_per_step: float | None) -> str:
    """Slow trainers read better as seconds per step, fast ones as steps per second."""
    if not seconds_per_step or seconds_per_step <= 0:
        return ""
    if seconds_per_step >= 1:
        return f"{seconds_per_step:.2f} s/step"
    return f"{1 / seconds_per_step:.2f} steps/s"


PIPELINE_STAGES = (
    TrainingJob.Status.INITIALIZING,
    TrainingJob.Status.ZIP_CREATION,
    TrainingJob.Status.REPLICATE_TRAINING,
    TrainingJob.Status.HUGGINGFACE_UPLOAD,
    TrainingJob.Status.COMPLETION,
)


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def training_timeline(job: TrainingJob, *, now: datetime | None = None) -> list[StageRow]:
    """One row per pipeline stage with its state and how long it took (so far, for the current one)."""
    now = now or timezone.now()
    times = job.stage_times or {}
    rows = []
    for stage in PIPELINE_STAGES:
        stamp = times.get(stage) or {}
        started, ended = _parse(stamp.get("started")), _parse(stamp.get("ended"))
        if job.status == stage:
            state = "current"
        elif (
            job.status in (TrainingJob.Status.FAILED, TrainingJob.Status.CANCELED)
            and job.failed_stage == stage
        ):
            state = "failed" if job.status == TrainingJob.Status.FAILED else "canceled"
        elif ended is not None:
            state = "done"
        else:
            state = "pending"
        end = ended or (now if state == "current" else None)
        seconds = int((end - started).total_seconds()) if started and end else None
        rows.append(
            StageRow(status=stage, label=TrainingJob.Status(stage).label, state=state, seconds=seconds)
        )
    return rows


# --- Caption batches ------------------------------------------------------------------------------
def get_caption_batch_for_user(user: User, training_pk: int, batch_pk: int) -> CaptionBatch:
    return get_object_or_404(
        CaptionBatch.objects.select_related("dataset__training"),
        pk=batch_pk,
        dataset__training__pk=training_pk,
        dataset__training__owner=user,
    )


def caption_batch_latest(dataset: Dataset) -> CaptionBatch | None:
    """The running batch of this dataset, else its most recent one."""
    return (
        CaptionBatch.objects.filter(dataset=dataset, status=CaptionBatch.Status.RUNNING).first()
        or CaptionBatch.objects.filter(dataset=dataset).order_by("-created_at", "-pk").first()
    )


def caption_tasks(batch: CaptionBatch) -> list[CaptionTask]:
    """A batch's photos in order: at most CAPTION_MAX_PHOTOS_PER_BATCH rows, so never paginated."""
    return list(batch.tasks.order_by("pk"))


def caption_batch_counts(tasks: list[CaptionTask]) -> dict[str, int]:
    counts = {status: 0 for status in CaptionTask.Status.values}
    for task in tasks:
        counts[task.status] += 1
    return counts


# --- The sample grid ---------------------------------------------------------------------------------------
def sample_grid_as_json(*, job_id: int) -> dict[str, Any]:
    """The grid as the model keeps it (LoraModel.sample_grid): prompts, strengths and cells."""
    cells = list(SampleImage.objects.filter(job_id=job_id).order_by("row", "col"))
    strengths = sorted({c.lora_scale for c in cells})
    prompts: dict[int, str] = {}
    rows: dict[int, list[dict[str, str]]] = {}
    for cell in cells:
        prompts.setdefault(cell.row, cell.prompt)
        rows.setdefault(cell.row, []).append(
            {"status": cell.status, "file_name": cell.file_name, "thumbnail_name": cell.thumbnail_name}
        )
    return {
        "seed": cells[0].seed if cells else None,
        "strengths": strengths,
        "prompts": [prompts[r] for r in sorted(prompts)],
        "cells": [rows[r] for r in sorted(rows)],
    }


def training_sample_grid(job: TrainingJob) -> dict[str, Any] | None:
    """The training's sample grid for its page (one query), or None before it is planned."""
    model = getattr(job, "lora_model", None)
    return sample_grid_display(
        sample_grid_as_json(job_id=job.pk), suggested=model.suggested_lora_scale if model else None
    )
