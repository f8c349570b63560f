"""Reads for LoRA models, scoped to their owner (or to the public, for public models)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from fluxsite.integrations import storage
from models_app.models import HuggingFaceAccount, LoraModel


def models_for_user(user) -> QuerySet[LoraModel]:
    return LoraModel.objects.filter(owner=user).select_related("training")


def get_model_for_user(user, pk: int) -> LoraModel:
    """The user's model, or 404 (never 403: another user's ids are not confirmed to exist)."""
    return get_object_or_404(models_for_user(user), pk=pk)


def get_public_model(public_id, user=None) -> LoraModel:
    """A public model by its public id; a private one only for its owner, 404 for everyone else."""
    model = get_object_or_404(LoraModel.objects.select_related("owner"), public_id=public_id)
    if not model.is_public and (user is None or not user.is_authenticated or model.owner_id != user.pk):
        from django.http import Http404

        raise Http404("No such model.")
    return model


def hf_account_for_user(user) -> HuggingFaceAccount | None:
    return HuggingFaceAccount.objects.filter(user=user).first()


@dataclass(frozen=True)
class SampleImage:
    alias: str
    name: str
    prompt: str


def model_sample_images(model: LoraModel, limit: int = 4) -> list[SampleImage]:
    """Images that show what the model does: for the card's widget and the list's thumbnail.

    Only the cover image exists for now; when generations exist, the latest ones go here too
    (this is the one place that decides which image stands for a model).
    """
    if model.cover_image_name:
        return [SampleImage(alias=storage.PUBLIC, name=model.cover_image_name, prompt=model.trigger_word)][:limit]
    return []


def model_thumbnail_url(model: LoraModel) -> str:
    """URL of the model's card image, or "" for the placeholder."""
    samples = model_sample_images(model, limit=1)
    if not samples:
        return ""
    return storage.public_url(name=samples[0].name)


def owned_file_names(user) -> list[tuple[str, str]]:
    """Every stored file of the user's models, as (storage alias, name): for account deletion."""
    files: list[tuple[str, str]] = []
    for weights, config in LoraModel.objects.filter(owner=user).values_list("weights_file_name", "config_file_name"):
        files.append((storage.PRIVATE, weights))
        if config:
            files.append((storage.PRIVATE, config))
    return files
