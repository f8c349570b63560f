"""Reads for LoRA models, scoped to their owner (or to the public, for public models)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from fluxsite.accounts.models import User
from fluxsite.integrations import storage
from models_app.models import HuggingFaceAccount, LoraModel


def models_for_user(user: User) -> QuerySet[LoraModel]:
    return LoraModel.objects.filter(owner=user).select_related("training")


def get_model_for_user(user: User, pk: int) -> LoraModel:
    """The user's model, or 404 (never 403: another user's ids are not confirmed to exist)."""
    return get_object_or_404(models_for_user(user), pk=pk)


def get_public_model(public_id: uuid.UUID, user: AbstractBaseUser | AnonymousUser | None = None) -> LoraModel:
    """A public model by its public id; a private one only for its owner, 404 for everyone else."""
    model = get_object_or_404(LoraModel.objects.select_related("owner"), public_id=public_id)
    if not model.is_public and (user is None or not user.is_authenticated or model.owner_id != user.pk):
        from django.http import Http404

        raise Http404("No such model.")
    return model


def hf_account_for_user(user: User) -> HuggingFaceAccount | None:
    return HuggingFaceAccount.objects.filter(user=user).first()


@dataclass(frozen=True)
class SampleImage:
    alias: str
    name: str
    prompt: str


SUCCEEDED = "succeeded"  # a grid cell's status, as the training app writes it


def grid_cover_cell(grid: dict[str, Any], *, lora_scale: float | None = None) -> dict[str, Any] | None:
    """The grid's image that stands for the model: the first prompt's image at `lora_scale` (the
    suggested strength), else at the strength nearest 1.0 that is not the baseline 0."""
    strengths = [float(s) for s in grid.get("strengths") or []]
    columns = [i for i, s in enumerate(strengths) if s != 0]
    if lora_scale is not None and lora_scale in strengths:
        columns = [strengths.index(lora_scale)]
    columns.sort(key=lambda i: abs(strengths[i] - 1.0))
    for row in grid.get("cells") or []:
        for col in columns:
            if col < len(row) and row[col].get("status") == SUCCEEDED and row[col].get("file_name"):
                return row[col]
    return None


def _grid_samples(model: LoraModel) -> list[SampleImage]:
    """One image a prompt of the sample grid, at the suggested strength (else the one nearest 1.0)."""
    grid = model.sample_grid or {}
    samples = []
    for prompt, row in zip(grid.get("prompts") or [], grid.get("cells") or [], strict=False):
        cell = grid_cover_cell({**grid, "cells": [row]}, lora_scale=model.suggested_lora_scale)
        if cell is not None and cell.get("status") == SUCCEEDED:
            samples.append(SampleImage(alias=storage.PUBLIC, name=cell["file_name"], prompt=prompt))
    return samples


def model_sample_images(model: LoraModel, limit: int = 4) -> list[SampleImage]:
    """Images that show what the model does: for the card's widget and the list's thumbnail.

    The cover first (if any), then the sample grid's images (one a prompt), then the latest images
    made with the model, as kept on the model by the generations app (LoraModel.showcase): this is
    the one place that decides which image stands for a model.
    """
    grid = _grid_samples(model)
    prompts = {sample.name: sample.prompt for sample in grid}
    samples: list[SampleImage] = []
    if model.cover_image_name:
        samples.append(
            SampleImage(
                alias=storage.PUBLIC,
                name=model.cover_image_name,
                prompt=prompts.get(model.cover_image_name, model.trigger_word),
            )
        )
    samples += [sample for sample in grid if sample.name != model.cover_image_name]
    samples += [
        SampleImage(alias=storage.PUBLIC, name=item["file_name"], prompt=item["prompt"])
        for item in model.showcase
        if item["file_name"] != model.cover_image_name
    ]
    return samples[:limit]


@dataclass(frozen=True)
class ShowcaseImage:
    image_id: int
    thumbnail_url: str
    prompt: str


def model_showcase(model: LoraModel) -> list[ShowcaseImage]:
    """The latest images made with the model, for its page (newest first)."""
    return [
        ShowcaseImage(
            image_id=item["id"],
            thumbnail_url=storage.public_url(name=item["thumbnail_name"]),
            prompt=item["prompt"],
        )
        for item in model.showcase
    ]


def _card_url(model: LoraModel) -> str:
    name = model.cover_image_name or next((item["thumbnail_name"] for item in model.showcase), "")
    return storage.public_url(name=name) if name else ""


def model_thumbnail_url(model: LoraModel) -> str:
    """URL of the model's card image (its cover, else its latest image's thumbnail), or "" for the placeholder."""
    return _card_url(model)


# What a card of the model list shows: the training (and its 20 kB log tail) is not joined.
CARD_FIELDS = (
    "id",
    "name",
    "trigger_word",
    "status",
    "visibility",
    "created_at",
    "cover_image_name",
    "showcase",
)
CARD_ORDERING = ("-created_at", "-pk")


def model_list_for_user(user: User) -> QuerySet[LoraModel]:
    """The models of the list page, only the columns a card shows."""
    return LoraModel.objects.filter(owner=user).only(*CARD_FIELDS)


def model_cards(models: list[LoraModel]) -> list[tuple[LoraModel, str]]:
    """Each model of a page of the list with its card image (no query: the showcase is on the row)."""
    return [(model, _card_url(model)) for model in models]


def owned_file_names(user: User) -> list[tuple[str, str]]:
    """Every stored file of the user's models, as (storage alias, name): for account deletion."""
    files: list[tuple[str, str]] = []
    for weights, config in LoraModel.objects.filter(owner=user).values_list(
        "weights_file_name", "config_file_name"
    ):
        files.append((storage.PRIVATE, weights))
        if config:
            files.append((storage.PRIVATE, config))
    return files


def model_sample_grid(model: LoraModel) -> dict[str, Any] | None:
    """The model's sample grid for its page. No query: the grid is on the model's row."""
    return sample_grid_display(model.sample_grid or {}, suggested=model.suggested_lora_scale)


def sample_grid_display(grid: dict[str, Any], *, suggested: float | None) -> dict[str, Any] | None:
    """A grid (as LoraModel.sample_grid keeps it) as the shared partial (partials/_sample_grid.html)
    shows it: prompt rows × strength columns, with image URLs; None when there is none."""
    if not grid.get("cells"):
        return None
    strengths = [float(s) for s in grid.get("strengths") or []]
    rows = []
    for prompt, row in zip(grid.get("prompts") or [], grid["cells"], strict=False):
        cells = []
        for scale, cell in zip(strengths, row, strict=False):
            done = cell.get("status") == SUCCEEDED and cell.get("file_name")
            cells.append(
                {
                    "lora_scale": scale,
                    "status": cell.get("status", ""),
                    "url": storage.public_url(name=cell["file_name"]) if done else "",
                    "thumbnail_url": storage.public_url(name=cell.get("thumbnail_name") or cell["file_name"])
                    if done
                    else "",
                }
            )
        rows.append({"prompt": prompt, "cells": cells})
    return {
        "seed": grid.get("seed"),
        "strengths": strengths,
        "rows": rows,
        "suggested": suggested,
        "pending": any(c["status"] in ("queued", "running") for r in rows for c in r["cells"]),
        "failed": any(c["status"] == "failed" for r in rows for c in r["cells"]),
    }
