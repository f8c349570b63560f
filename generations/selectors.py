"""Reads of generations and their images, always scoped to their owner."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from fluxsite.accounts.models import User
from fluxsite.integrations import storage
from generations.models import GeneratedImage, Generation, InputImage
from models_app.models import LoraModel


def models_usable_q() -> Q:
    """A model can generate with its own trained version, or once published (the base model with its weights)."""
    return Q(replicate_version__gt="") | Q(hf_repo_id__gt="", status=LoraModel.Status.READY)


# --- Generations and their images -------------------------------------------------------------------
def models_for_generation(user: User) -> QuerySet[LoraModel]:
    """The user's models that can generate (see generations.services.generation for the targets)."""
    return LoraModel.objects.filter(owner=user).filter(models_usable_q())


PICKER_MODELS = 20  # the generate page's model picker: the most recent, and a search for the rest


def model_picker_choices(user: User, *, query: str = "", limit: int = PICKER_MODELS) -> list[LoraModel]:
    """The picker's options: the user's most recent usable models, or those whose name or trigger
    word contains `query`; `limit` of them, whatever the number of models."""
    models = models_for_generation(user).only("id", "name", "trigger_word", "base_model", "created_at")
    query = query.strip()
    if query:
        models = models.filter(Q(name__icontains=query) | Q(trigger_word__icontains=query))
    return list(models.order_by("-created_at", "-pk")[:limit])


def model_is_usable(model: LoraModel) -> bool:
    """models_usable_q() for one model already read (no query)."""
    return bool(model.replicate_version) or (
        bool(model.hf_repo_id) and model.status == LoraModel.Status.READY
    )


def get_generation_for_user(user: User, pk: int) -> Generation:
    return get_object_or_404(Generation.objects.filter(owner=user).select_related("lora_model"), pk=pk)


IMAGE_ORDERING = ("-created_at", "-pk")


def images_for_user(user: User, model: LoraModel | None = None) -> QuerySet[GeneratedImage]:
    """The user's images, newest first; only those of `model` when given."""
    images = GeneratedImage.objects.filter(owner=user).select_related("generation", "generation__lora_model")
    if model is not None:
        images = images.filter(generation__lora_model=model)
    return images.order_by(*IMAGE_ORDERING)


def get_input_image_for_user(user: User, pk: int) -> InputImage:
    return get_object_or_404(InputImage.objects.filter(owner=user), pk=pk)


def get_image_for_user(user: User, pk: int) -> GeneratedImage:
    return get_object_or_404(images_for_user(user), pk=pk)


def upscales_of(image: GeneratedImage) -> list[GeneratedImage]:
    """The upscaled versions of one image (each an upscale generation's single output)."""
    return list(
        GeneratedImage.objects.filter(
            owner_id=image.owner_id,
            generation__source_image=image,
            generation__mode=Generation.Mode.UPSCALE,
        ).order_by(*IMAGE_ORDERING)
    )


def images_to_compare(user: User, ids: list[int]) -> list[GeneratedImage]:
    """The user's images `ids`, in that order, with their generations' settings; 404 when any of
    them is not the user's (or does not exist): nothing says which."""
    found = {
        image.pk: image
        for image in images_for_user(user)
        .filter(pk__in=ids)
        .select_related("generation__extra_lora_model", "generation__source_image")
    }
    if len(found) != len(set(ids)):
        raise Http404("No such image.")
    return [found[pk] for pk in ids]


def owned_file_names(user: User) -> list[tuple[str, str]]:
    """Every stored file of the user's generated images, as (storage alias, name): for account deletion."""
    files: list[tuple[str, str]] = []
    for image, thumbnail in GeneratedImage.objects.filter(generation__owner=user).values_list(
        "file_name", "thumbnail_name"
    ):
        files += [(storage.PUBLIC, image), (storage.PUBLIC, thumbnail)]
    # The private inputs of image to image, inpainting and upscaling (several generations may share one).
    inputs = Generation.objects.filter(owner=user).values_list("input_image_name", "mask_name")
    for name in sorted({n for pair in inputs for n in pair if n}):
        files.append((storage.PRIVATE, name))
    # Images kept to start from (dataset photos handed over by the training app).
    files += [
        (storage.PRIVATE, n)
        for n in InputImage.objects.filter(owner=user).values_list("file_name", flat=True)
    ]
    return files
