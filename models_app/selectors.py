"""Reads for LoRA models, scoped to their owner (or to the public, for public models)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import OuterRef, QuerySet, Subquery
from django.shortcuts import get_object_or_404

from fluxsite.accounts.models import User
from fluxsite.integrations import storage
from models_app.models import GeneratedImage, Generation, HuggingFaceAccount, LoraModel


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

    The cover first (if any), then the latest images made with the model (this is the one place
    that decides which image stands for a model).
    """
    samples: list[SampleImage] = []
    if model.cover_image_name:
        samples.append(
            SampleImage(alias=storage.PUBLIC, name=model.cover_image_name, prompt=model.trigger_word)
        )
    recent = (
        GeneratedImage.objects.filter(generation__lora_model=model, generation__owner_id=model.owner_id)
        .exclude(file_name=model.cover_image_name or "")
        .select_related("generation")
        .order_by("-created_at", "-pk")[:limit]
    )
    samples += [
        SampleImage(alias=storage.PUBLIC, name=image.file_name, prompt=image.generation.effective_prompt)
        for image in recent
    ]
    return samples[:limit]


def _latest_thumbnail() -> Subquery:
    return Subquery(
        GeneratedImage.objects.filter(
            generation__lora_model=OuterRef("pk"), generation__owner_id=OuterRef("owner_id")
        )
        .order_by("-created_at", "-pk")
        .values("thumbnail_name")[:1]
    )


def _card_url(cover_image_name: str | None, latest_thumbnail: str | None) -> str:
    name = cover_image_name or latest_thumbnail
    return storage.public_url(name=name) if name else ""


def model_thumbnail_url(model: LoraModel) -> str:
    """URL of the model's card image (its cover, else its latest image's thumbnail), or "" for the placeholder."""
    if model.cover_image_name:
        return _card_url(model.cover_image_name, None)
    latest = LoraModel.objects.filter(pk=model.pk).values_list(_latest_thumbnail(), flat=True).first()
    return _card_url(None, latest)


def model_cards(user: User) -> list[tuple[LoraModel, str]]:
    """The model list: each model with its card image, in one query however many models there are."""
    models = models_for_user(user).annotate(latest_thumbnail=_latest_thumbnail())
    return [(model, _card_url(model.cover_image_name, model.latest_thumbnail)) for model in models]


# --- Generations and their images -------------------------------------------------------------------
def models_for_generation(user: User) -> QuerySet[LoraModel]:
    """The user's models that can generate (see models_app.services.generation for the rule)."""
    from models_app.services.generation import models_usable_q

    return LoraModel.objects.filter(owner=user).filter(models_usable_q())


def get_generation_for_user(user: User, pk: int) -> Generation:
    return get_object_or_404(Generation.objects.filter(owner=user).select_related("lora_model"), pk=pk)


def images_for_user(user: User, model: LoraModel | None = None) -> QuerySet[GeneratedImage]:
    """The user's images, newest first; only those of `model` when given."""
    images = GeneratedImage.objects.filter(generation__owner=user).select_related(
        "generation", "generation__lora_model"
    )
    if model is not None:
        images = images.filter(generation__lora_model=model)
    return images.order_by("-created_at", "-pk")


def get_image_for_user(user: User, pk: int) -> GeneratedImage:
    return get_object_or_404(images_for_user(user), pk=pk)


def owned_file_names(user: User) -> list[tuple[str, str]]:
    """Every stored file of the user's models, as (storage alias, name): for account deletion."""
    files: list[tuple[str, str]] = []
    for weights, config in LoraModel.objects.filter(owner=user).values_list(
        "weights_file_name", "config_file_name"
    ):
        files.append((storage.PRIVATE, weights))
        if config:
            files.append((storage.PRIVATE, config))
    for image, thumbnail in GeneratedImage.objects.filter(generation__owner=user).values_list(
        "file_name", "thumbnail_name"
    ):
        files += [(storage.PUBLIC, image), (storage.PUBLIC, thumbnail)]
    return files
