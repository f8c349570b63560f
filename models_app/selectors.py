"""Reads for LoRA models, scoped to their owner (or to the public, for public models)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

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


def model_sample_images(model: LoraModel, limit: int = 4) -> list[SampleImage]:
    """Images that show what the model does: for the card's widget and the list's thumbnail.

    The cover first (if any), then the latest images made with the model, as kept on the model
    by the generations app (LoraModel.showcase): this is the one place that decides which image
    stands for a model.
    """
    samples: list[SampleImage] = []
    if model.cover_image_name:
        samples.append(
            SampleImage(alias=storage.PUBLIC, name=model.cover_image_name, prompt=model.trigger_word)
        )
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
