"""Reads for trainings and datasets, always scoped to the owner."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from fluxsite.integrations.storage import PRIVATE
from training.models import Dataset, DatasetImage, TrainingJob


def trainings_for_user(user) -> QuerySet[TrainingJob]:
    return TrainingJob.objects.filter(owner=user).select_related("dataset")


def get_training_for_user(user, pk: int) -> TrainingJob:
    """The user's training, or 404 (never 403: another user's ids are not confirmed to exist)."""
    return get_object_or_404(trainings_for_user(user), pk=pk)


def get_dataset_for_user(user, training_pk: int) -> Dataset:
    return get_object_or_404(
        Dataset.objects.select_related("training"), training__pk=training_pk, training__owner=user
    )


def get_image_for_user(user, training_pk: int, image_pk: int) -> DatasetImage:
    return get_object_or_404(
        DatasetImage.objects.select_related("dataset__training"),
        pk=image_pk,
        dataset__training__pk=training_pk,
        dataset__training__owner=user,
    )


def owned_file_names(user) -> list[tuple[str, str]]:
    """Every stored file of the user's datasets, as (storage alias, name): for account deletion."""
    files: list[tuple[str, str]] = []
    for file_name, thumbnail_name in DatasetImage.objects.filter(dataset__training__owner=user).values_list(
        "file_name", "thumbnail_name"
    ):
        files += [(PRIVATE, file_name), (PRIVATE, thumbnail_name)]
    for zip_name in Dataset.objects.filter(training__owner=user).exclude(zip_name="").values_list(
        "zip_name", flat=True
    ):
        files.append((PRIVATE, zip_name))
    return files


@dataclass
class Readiness:
    count: int
    warnings: int
    ready: bool
    text: str


def dataset_readiness(dataset: Dataset, images: list[DatasetImage] | None = None) -> Readiness:
    """One line for the page: "14 photos, 2 warnings, ready to train"."""
    if images is None:
        images = list(dataset.images.only("warnings"))
    count = len(images)
    warned = sum(1 for image in images if image.warnings)
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
