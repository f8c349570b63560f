"""Generating images with a trained LoRA on Replicate, and the gallery of what was made.

    generation_start (request: row + credits spent, atomically) → generation_submit (task: create
    the prediction) → webhook / poller → generation_apply_replicate → images copied → succeeded

Statuses: queued → running → succeeded | failed | canceled. Every transition is a compare-and-swap
on `status` because the worker, the prediction webhook and the poller race for the same row. Two
claims guard the paid or heavy steps: `submit_started_at` (only its holder may create the
prediction: a redelivered task never pays twice) and `output_claimed_at` (only its holder copies
the images). Credits are spent with reference `generation:<pk>` before Replicate is called and
refunded, at most once (credits_refund is idempotent by reference), when the run fails or is
canceled.

Which Replicate target a model uses:
- its own trained version (`replicate_version`, "owner/name:<64 hex>"): we send the 64-hex id,
  which both the real API and the sandbox accept on POST /v1/predictions. A model still
  publishing to Hugging Face, or whose publishing failed, has this version and is usable.
- otherwise settings.REPLICATE_GENERATION_MODEL (black-forest-labs/flux-dev-lora) with
  `lora_weights = huggingface.co/<hf_repo_id>`, only once the model is published (status ready).
  That model names the parameter `guidance`, not `guidance_scale`. Note: Replicate downloads the
  weights anonymously, so a private Hugging Face repo only works through the first path.
A model with neither is "not ready".
"""

from __future__ import annotations

import io
import logging
import re
import secrets
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import stamina
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from billing.models import CreditKind
from billing.pricing import generation_cost_credits, upscale_cost_credits
from billing.services import credits_refund, credits_refund_part, credits_spend, wallet_lock
from fluxsite.accounts.models import User
from fluxsite.accounts.services.webhooks import webhook_event_emit
from fluxsite.integrations import replicate_client, storage
from fluxsite.integrations.errors import Category, IntegrationError
from fluxsite.integrations.replicate_files import file_refusal, image_download
from fluxsite.statemachine import backoff_seconds, transition
from generations.imaging import CheckedImage, InputImageError, image_check, mask_check
from generations.models import GeneratedImage, Generation, InputImage
from models_app.bases import base_get, version_input_adapt
from models_app.models import LoraModel
from models_app.services import lora_cover_set, lora_showcase_add, lora_showcase_remove

logger = logging.getLogger(__name__)
G = Generation.Status
M = Generation.Mode
ACTIVE = (G.QUEUED, G.RUNNING)

ASPECT_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
OUTPUT_FORMATS = ("webp", "jpg", "png")
PROMPT_MAX_CHARS = 1000
THUMBNAIL_PX = 384
IMAGE_FORMATS = {"webp": "WEBP", "jpg": "JPEG", "png": "PNG"}
MAX_IMAGE_PIXELS = 40_000_000  # FLUX makes at most ~2 MP; anything far bigger is not an honest output
NSFW_MESSAGE = (
    "The safety filter flagged this prompt or an image it produced as sensitive content. "
    "Try a different prompt; your credits were refunded."
)

# Our form's field for each Replicate input (the base model's `guidance` is our guidance_scale).
INPUT_TO_FIELD = {
    "prompt": "prompt",
    "aspect_ratio": "aspect_ratio",
    "num_outputs": "num_outputs",
    "lora_scale": "lora_scale",
    "num_inference_steps": "num_inference_steps",
    "guidance_scale": "guidance_scale",
    "guidance": "guidance_scale",
    "seed": "seed",
    "output_format": "output_format",
    "prompt_strength": "prompt_strength",
    "extra_lora_scale": "extra_lora_scale",
    "image": "input_image",
    "mask": "mask",
    "extra_lora": "extra_model",
}
UPSCALE_SCALES = (2, 4)  # offered factors, inside the upscaler's own 0-10 (real-esrgan.predict)

SUGGESTIONS: dict[str, list[str]] = {
    LoraModel.SubjectKind.SUBJECT: [
        "a portrait photo of {t}, soft window light, 85mm, shallow depth of field",
        "{t} as an astronaut floating in a space station, cinematic lighting",
        "a watercolor painting of {t} in a sunflower field",
        "{t} hiking on a misty mountain trail at sunrise, photo",
        "a studio product shot of {t} on a marble table, minimal background",
        "{t} in a cozy café, film photo, warm tones",
    ],
    LoraModel.SubjectKind.STYLE: [
        "a lighthouse on a cliff at dusk, in the style of {t}",
        "a busy city street in the rain, in the style of {t}",
        "a bowl of fruit on a wooden table, in the style of {t}",
        "a fox in a snowy forest, in the style of {t}",
        "a portrait of an old fisherman, in the style of {t}",
        "a futuristic city skyline, in the style of {t}",
    ],
}


class GenerationError(Exception):
    """A refused generation action; the message is safe to show."""


# --- Reads that services and views share ---------------------------------------------------------
def generation_target(*, model: LoraModel) -> str:
    """ "version" or "hf": how this model runs on Replicate. Raises GenerationError when not ready."""
    published = bool(model.hf_repo_id) and model.status == LoraModel.Status.READY
    if model.replicate_version and base_get(model.base_model).needs_replicate_weights and not published:
        # Its trained version applies the LoRA only from `replicate_weights` (the published file):
        # without it every image would be the base model's, paid for as the LoRA's.
        raise GenerationError(
            f"“{model.name}” is not ready to generate yet: its weights are not published on Hugging Face."
        )
    if model.replicate_version:
        return "version"
    # Only a base with a LoRA-by-URL generator whose schema we know (models_app.bases) runs that way.
    if (
        model.hf_repo_id
        and model.status == LoraModel.Status.READY
        and base_get(model.base_model).generator_model
    ):
        return "hf"
    raise GenerationError(
        f"“{model.name}” is not ready to generate yet: it has no trained version on Replicate "
        "and no published weights."
    )


# Our form's field → the input it fills, per target (the base model calls guidance `guidance`).
FIELD_TO_INPUT = {
    "version": {
        "lora_scale": "lora_scale",
        "num_outputs": "num_outputs",
        "guidance_scale": "guidance_scale",
        "num_inference_steps": "num_inference_steps",
        "aspect_ratio": "aspect_ratio",
        "output_format": "output_format",
        "prompt_strength": "prompt_strength",
        "extra_lora_scale": "extra_lora_scale",
        # Inputs without a field of their own range: present in the limits when the target takes them.
        "input_image": "image",
        "mask": "mask",
        "extra_model": "extra_lora",
    },
    "hf": {
        "lora_scale": "lora_scale",
        "num_outputs": "num_outputs",
        "guidance_scale": "guidance",
        "num_inference_steps": "num_inference_steps",
        "aspect_ratio": "aspect_ratio",
        "output_format": "output_format",
        "prompt_strength": "prompt_strength",
        "extra_lora_scale": "extra_lora_scale",
        "input_image": "image",
        "mask": "mask",
        "extra_model": "extra_lora",
    },
}


def generation_limits(*, model: LoraModel) -> dict[str, replicate_client.InputField]:
    """The limits of our form's fields, read from the schema of the target this model runs on.

    A trained version's predictor (replicate/flux-fine-tuner) bounds lora_scale at 2, while
    black-forest-labs/flux-dev-lora allows 3: ranges are never ours to assume. Keyed by our field
    names. Raises GenerationError when the model is not usable and IntegrationError when Replicate
    cannot be asked.
    """
    target = generation_target(model=model)
    if target == "version":
        ref, _, version_id = model.replicate_version.rpartition(":")
        fields = replicate_client.input_schema_get(model=ref, version_id=version_id)
    else:
        fields = replicate_client.input_schema_get(model=settings.REPLICATE_GENERATION_MODEL)
    mapping = dict(FIELD_TO_INPUT[target])
    base = base_get(model.base_model)
    if target == "version":  # the base's predictor may name guidance otherwise (models_app.bases)
        mapping["guidance_scale"] = base.guidance_input
    limits = {ours: fields[theirs] for ours, theirs in mapping.items() if theirs in fields}
    if not base.multiple_outputs:
        # Its predictor makes one image a run (no num_outputs input): never price more than one.
        limits["num_outputs"] = replicate_client.InputField(
            name="num_outputs", type="integer", minimum=1, maximum=1, default=1
        )
    return limits


def effective_prompt(*, prompt: str, model: LoraModel) -> str:
    """The prompt as sent: the trigger word is added when the prompt lacks it (case-insensitive, whole word)."""
    prompt = " ".join(prompt.split())
    trigger = model.trigger_word
    if not prompt or not trigger or re.search(rf"(?<!\w){re.escape(trigger)}(?!\w)", prompt, re.IGNORECASE):
        return prompt
    if model.subject_kind == LoraModel.SubjectKind.STYLE:
        return f"{prompt.rstrip('.,; ')}, in the style of {trigger}"
    return f"{trigger}, {prompt}"


def prompt_suggestions(*, model: LoraModel) -> list[str]:
    return [
        s.format(t=model.trigger_word) for s in SUGGESTIONS.get(model.subject_kind, SUGGESTIONS["subject"])
    ]


def _input_url(name: str) -> str:
    """A private input file as Replicate fetches it: an expiring signed URL from our storage."""
    return storage.signed_url(alias=storage.PRIVATE, name=name)


def prediction_request(
    *, generation: Generation, model: LoraModel | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(target kwargs for replicate_client.prediction_create, the input) for a generation."""
    params = generation.params
    if generation.mode == M.UPSCALE:
        return {"model": settings.REPLICATE_UPSCALE_MODEL}, {
            "image": _input_url(generation.input_image_name),
            "scale": params["scale"],
            "face_enhance": bool(params.get("face_enhance")),
        }
    if model is None:
        raise GenerationError("The model was deleted before the images could be made. Credits refunded.")
    data: dict[str, Any] = {
        "prompt": generation.effective_prompt,
        "aspect_ratio": params["aspect_ratio"],
        "num_outputs": int(params["num_outputs"]),
        "lora_scale": params["lora_scale"],
        "num_inference_steps": int(params["num_inference_steps"]),
        "output_format": params["output_format"],
    }
    if params.get("seed") is not None:
        data["seed"] = int(params["seed"])
    if generation.input_image_name:
        data["image"] = _input_url(generation.input_image_name)
        data["prompt_strength"] = params["prompt_strength"]
    if generation.mask_name:
        data["mask"] = _input_url(generation.mask_name)
    if params.get("extra_lora"):
        data["extra_lora"] = params["extra_lora"]
        data["extra_lora_scale"] = params["extra_lora_scale"]
    if generation_target(model=model) == "version":
        data["guidance_scale"] = params["guidance_scale"]
        # The model's base decides the predictor's input names (models_app.bases; FLUX: unchanged).
        hub = (
            f"https://huggingface.co/{model.hf_repo_id}/resolve/main/lora.safetensors"
            if model.hf_repo_id
            else ""
        )
        data = version_input_adapt(base_model=model.base_model, data=data, weights_url=hub)
        return {"version": model.replicate_version.rpartition(":")[2]}, data
    data["guidance"] = params["guidance_scale"]
    data["lora_weights"] = f"huggingface.co/{model.hf_repo_id}"
    return {"model": settings.REPLICATE_GENERATION_MODEL}, data


def field_errors(*, generation: Generation) -> dict[str, list[str]]:
    """Replicate's invalid_fields of a refused generation, keyed by our form's field names."""
    errors: dict[str, list[str]] = {}
    for item in generation.invalid_fields or []:
        name = str(item.get("field", "")).removeprefix("input.")
        description = str(item.get("description", "invalid"))
        field = INPUT_TO_FIELD.get(name)
        if field is None and "prompt" in description:
            field = "prompt"
        errors.setdefault(field or "__all__", []).append(f"Replicate: {description}")
    return errors


# --- Starting --------------------------------------------------------------------------------------
def extra_lora_weights(*, model: LoraModel) -> str:
    """How a second LoRA is named in `extra_lora`: its published Hugging Face weights when it has
    them (Replicate downloads them anonymously), else its trained version on Replicate in the
    `<owner>/<model>/<version>` form both predictors' schemas accept."""
    if model.hf_repo_id and model.status == LoraModel.Status.READY:
        return f"huggingface.co/{model.hf_repo_id}"
    if model.replicate_version:
        ref, _, version_id = model.replicate_version.rpartition(":")
        return f"{ref}/{version_id}"
    raise GenerationError(
        f"“{model.name}” cannot be the second LoRA yet: it has no trained version and no published weights."
    )


def _target_inputs(model: LoraModel) -> set[str] | None:
    """Our fields whose input this model's target takes (from its schema, as generation_limits
    keys them); None when Replicate cannot be asked (its own 422 is then the last word)."""
    try:
        return set(generation_limits(model=model))
    except IntegrationError as exc:
        logger.warning("generation: could not read the input schema of model %s: %s", model.pk, exc)
        return None


def _target_label(model: LoraModel) -> str:
    if generation_target(model=model) == "version":
        return "its trained version"
    return settings.REPLICATE_GENERATION_MODEL


@dataclass(frozen=True)
class _Inputs:
    mode: str
    image: CheckedImage | None = None
    mask: CheckedImage | None = None
    image_name: str = ""  # reused from an earlier generation
    mask_name: str = ""
    source_image: GeneratedImage | None = None


def _stored_bytes(alias: str, name: str) -> bytes:
    return b"".join(storage.file_iter(alias=alias, name=name))


def _inputs_check(
    *,
    user: User,
    input_image: bytes | None,
    source_image: GeneratedImage | None,
    mask: bytes | None,
    reuse: Generation | None,
    staged: InputImage | None = None,
) -> _Inputs:
    """The starting image and mask, checked (decodable, within the limits, the same size) before
    anything is stored or spent. Raises GenerationError with a message to show."""
    if source_image is not None and source_image.owner_id != user.pk:
        raise GenerationError("This image is not yours.")
    if reuse is not None and reuse.owner_id != user.pk:
        raise GenerationError("This generation is not yours.")
    if staged is not None and staged.owner_id != user.pk:
        raise GenerationError("This image is not yours.")
    try:
        image: CheckedImage | None = None
        if input_image is not None:
            image = image_check(input_image)
            source_image = None
        elif staged is not None:  # stored by input_image_add; this generation keeps its own copy
            image = image_check(_stored_bytes(storage.PRIVATE, staged.file_name))
            source_image = None
        elif source_image is not None:
            image = image_check(_stored_bytes(storage.PUBLIC, source_image.file_name))
        elif reuse is not None and reuse.input_image_name and reuse.mode in (M.IMAGE, M.INPAINT):
            if mask is not None:  # a new mask over the same image: check it against that image
                image = image_check(_stored_bytes(storage.PRIVATE, reuse.input_image_name))
                return _Inputs(
                    mode=M.INPAINT,
                    mask=mask_check(mask, size=(image.width, image.height)),
                    image_name=reuse.input_image_name,
                    source_image=reuse.source_image,
                )
            return _Inputs(
                mode=reuse.mode,
                image_name=reuse.input_image_name,
                mask_name=reuse.mask_name,
                source_image=reuse.source_image,
            )
        if mask is not None and image is None:
            raise GenerationError("A mask needs an image to paint over: choose or upload one.")
        checked_mask = (
            mask_check(mask, size=(image.width, image.height)) if mask is not None and image else None
        )
    except IntegrationError:
        raise GenerationError("The chosen image could not be read from storage; try another.") from None
    except InputImageError as exc:
        raise GenerationError(str(exc)) from None
    if image is None:
        return _Inputs(mode=M.TEXT)
    return _Inputs(
        mode=M.INPAINT if checked_mask else M.IMAGE, image=image, mask=checked_mask, source_image=source_image
    )


def _inputs_store(user: User, inputs: _Inputs) -> tuple[str, str]:
    """Store a new input image and mask privately (an unguessable folder per generation)."""
    folder = f"generation-inputs/{user.pk}/{secrets.token_hex(12)}"
    image_name, mask_name = inputs.image_name, inputs.mask_name
    if inputs.image is not None:
        image_name = storage.file_save(
            alias=storage.PRIVATE,
            name=f"{folder}/input.{inputs.image.extension}",
            content=io.BytesIO(inputs.image.data),
        )
    if inputs.mask is not None:
        mask_name = storage.file_save(
            alias=storage.PRIVATE,
            name=f"{folder}/mask.{inputs.mask.extension}",
            content=io.BytesIO(inputs.mask.data),
        )
    return image_name, mask_name


def input_image_add(*, user: User, data: bytes, label: str) -> InputImage:
    """Keep an image the person wants to start a generation from (a photo of their dataset, which the
    training app hands over as bytes), checked as an upload is. Raises GenerationError if refused."""
    try:
        image = image_check(data)
    except InputImageError as exc:
        raise GenerationError(str(exc)) from None
    name = storage.file_save(
        alias=storage.PRIVATE,
        name=f"generation-inputs/{user.pk}/{secrets.token_hex(12)}/start.{image.extension}",
        content=io.BytesIO(image.data),
    )
    return InputImage.objects.create(
        owner=user, file_name=name, width=image.width, height=image.height, label=label[:200]
    )


def input_images_prune(*, older_than: datetime, dry_run: bool = False) -> list[str]:
    """Delete the images staged to start a generation from (InputImage, input_image_add) created
    before `older_than`; returns their file names (with `dry_run`, what would be deleted).

    They are temporary: a generation made from one stores its own copy. The row goes first, so a
    generate page still showing it gets a 404, never a row without its file.
    """
    pruned = []
    for pk, name in InputImage.objects.filter(created_at__lt=older_than).values_list("pk", "file_name"):
        if not dry_run:
            deleted, _ = InputImage.objects.filter(pk=pk).delete()
            if not deleted:
                continue
            try:
                storage.file_delete(alias=storage.PRIVATE, name=name)
            except IntegrationError:  # a leftover file is harmless; the next run cannot see it, so say so
                logger.warning("could not delete staged input image %s", name, exc_info=True)
        pruned.append(name)
    return pruned


def _private_delete(names: list[str]) -> None:
    for name in names:
        try:
            storage.file_delete(alias=storage.PRIVATE, name=name)
        except IntegrationError:
            logger.warning("could not delete %s", name, exc_info=True)


def _create_and_spend(*, user: User, fields: dict[str, Any], cost: int, note: str) -> Generation:
    """Create the generation and spend its credits in one transaction; the prediction is created by a task."""
    with transaction.atomic():
        # Counted under the wallet lock, in the spend's transaction: parallel requests cannot all pass.
        wallet_lock(user=user)
        waiting = Generation.objects.filter(owner=user, status__in=ACTIVE).count()
        if waiting >= settings.MAX_QUEUED_GENERATIONS_PER_USER:
            raise GenerationError(
                f"You already have {waiting} generations waiting, the most at once: try again "
                "when they have finished."
            )
        generation = Generation.objects.create(owner=user, cost_credits=cost, **fields)
        reference = f"generation:{generation.pk}"
        credits_spend(
            user=user, amount=cost, reference=reference, kind=CreditKind.SPEND_GENERATION, note=note
        )
        Generation.objects.filter(pk=generation.pk).update(credit_reference=reference)
        generation.credit_reference = reference
        _enqueue_submit(generation.pk)
    return generation


def generation_start(
    *,
    user: User,
    model: LoraModel,
    prompt: str,
    params: dict[str, Any],
    input_image: bytes | None = None,
    source_image: GeneratedImage | None = None,
    mask: bytes | None = None,
    extra_model: LoraModel | None = None,
    reuse: Generation | None = None,
    staged: InputImage | None = None,
) -> Generation:
    """Create the generation and spend its credits in one transaction; the prediction is created by a task.

    `params` are the cleaned form values (aspect_ratio, num_outputs, lora_scale, num_inference_steps,
    guidance_scale, seed or None, output_format; prompt_strength with an image, extra_lora_scale
    with a second LoRA). The mode follows from the inputs: an image (uploaded `input_image`, a
    gallery `source_image`, a `staged` InputImage such as a dataset photo, or `reuse`'s stored one)
    makes it image to image, with a `mask`
    inpainting. `extra_model` is a second LoRA of the same owner. Raises GenerationError (model not
    usable, an input refused, a mode the target lacks) or billing's InsufficientCredits; either
    way nothing is stored and nothing is sent to Replicate.
    """
    if model.owner_id != user.pk or (extra_model is not None and extra_model.owner_id != user.pk):
        raise GenerationError("This model is not yours.")
    generation_target(model=model)
    prompt = prompt.strip()
    if not prompt:
        raise GenerationError("Write a prompt.")
    if len(prompt) > PROMPT_MAX_CHARS:
        raise GenerationError(f"A prompt has at most {PROMPT_MAX_CHARS} characters.")
    inputs = _inputs_check(
        user=user, input_image=input_image, source_image=source_image, mask=mask, reuse=reuse, staged=staged
    )
    if extra_model is not None and extra_model.pk == model.pk:
        raise GenerationError("Choose a different model as the second LoRA (or none).")
    if extra_model is not None and extra_model.base_model != model.base_model:
        # A LoRA is trained for one base's layers: loaded into another it changes nothing, or breaks it.
        raise GenerationError(
            f"{extra_model.name} was trained on {extra_model.base_model}, {model.name} on "
            f"{model.base_model}: two LoRAs at once must share their base model."
        )
    params = dict(params)
    params.pop("extra_lora", None)
    if inputs.mode == M.TEXT:
        params.pop("prompt_strength", None)
    elif params.get("prompt_strength") is None:
        raise GenerationError("Choose how much to change the image.")
    if extra_model is not None:
        params["extra_lora"] = extra_lora_weights(model=extra_model)
        params["extra_lora_scale"] = params.get("extra_lora_scale", 1.0)
        if params["extra_lora_scale"] is None:
            params["extra_lora_scale"] = 1.0
    else:
        params.pop("extra_lora_scale", None)
    needed = {  # our field names, as generation_limits keys them
        "input_image": inputs.mode != M.TEXT,
        "mask": inputs.mode == M.INPAINT,
        "extra_model": extra_model is not None,
    }
    if any(needed.values()):
        takes = _target_inputs(model)
        refusals = {
            "input_image": "cannot start from an image",
            "mask": "cannot inpaint: its inputs have no mask (use a model with its own trained version)",
            "extra_model": "cannot take a second LoRA",
        }
        for name, wanted in needed.items():
            if wanted and takes is not None and name not in takes:
                raise GenerationError(
                    f"“{model.name}” runs on {_target_label(model)}, which {refusals[name]}."
                )
    for key in ("input_width", "input_height"):  # the starting image's size, for the mask tool
        if inputs.image is not None:
            params[key] = inputs.image.width if key == "input_width" else inputs.image.height
        elif inputs.image_name and reuse is not None:
            params[key] = reuse.params.get(key)
        else:
            params.pop(key, None)
    num = int(params["num_outputs"])
    cost = generation_cost_credits(num_images=num)
    if params.get("seed") in (None, ""):
        # Pick the "random" seed ourselves and send it, so "again with this seed" always works.
        params["seed"] = secrets.randbelow(2**31)
    sent = effective_prompt(prompt=prompt, model=model)
    if extra_model is not None:
        sent = effective_prompt(prompt=sent, model=extra_model)
    image_name, mask_name = _inputs_store(user, inputs)
    new_files = [n for n in (image_name, mask_name) if n and n not in (inputs.image_name, inputs.mask_name)]
    fields = {
        "lora_model": model,
        "model_name": model.name,
        "prompt": prompt,
        "effective_prompt": sent,
        "params": params,
        "num_outputs": num,
        "seed": params.get("seed"),
        "mode": inputs.mode,
        "input_image_name": image_name,
        "mask_name": mask_name,
        "source_image": inputs.source_image,
        "extra_lora_model": extra_model,
        "replicate_target": (
            f"version:{model.replicate_version.rpartition(':')[2]}"
            if generation_target(model=model) == "version"
            else f"model:{settings.REPLICATE_GENERATION_MODEL}"
        ),
    }
    note = f"{num} image{'s' if num != 1 else ''} with “{model.name}”"
    if extra_model is not None:
        note += f" and “{extra_model.name}”"
    try:
        return _create_and_spend(user=user, fields=fields, cost=cost, note=note)
    except BaseException:
        _private_delete(new_files)  # refused (credits, queue): the stored inputs go too
        raise


def generated_image_upscale(
    *, user: User, image: GeneratedImage, scale: int, face_enhance: bool = False
) -> Generation:
    """Upscale one generated image with the public upscaler (settings.REPLICATE_UPSCALE_MODEL).

    Priced per image (billing.pricing.upscale_cost_credits) and spent before Replicate is called;
    a failure refunds it once, like any generation. The result is a generation of mode `upscale`
    whose source_image is the original, so both are shown side by side.
    """
    if image.owner_id != user.pk:
        raise GenerationError("This image is not yours.")
    if scale not in UPSCALE_SCALES:
        raise GenerationError(f"Upscale by {' or '.join(str(s) for s in UPSCALE_SCALES)}.")
    source = image.generation
    try:
        checked = image_check(_stored_bytes(storage.PUBLIC, image.file_name))
    except IntegrationError:
        raise GenerationError("This image could not be read from storage.") from None
    except InputImageError as exc:
        raise GenerationError(str(exc)) from None
    image_name, _ = _inputs_store(user, _Inputs(mode=M.UPSCALE, image=checked))
    cost = upscale_cost_credits(num_images=1)
    fields = {
        "lora_model": source.lora_model,
        "model_name": source.model_name,
        "prompt": source.prompt,
        "effective_prompt": source.effective_prompt,
        "params": {
            "scale": scale,
            "face_enhance": bool(face_enhance),
            "output_format": "png",
            "num_outputs": 1,
        },
        "num_outputs": 1,
        "seed": source.seed,
        "mode": M.UPSCALE,
        "input_image_name": image_name,
        "source_image": image,
        "replicate_target": f"model:{settings.REPLICATE_UPSCALE_MODEL}",
    }
    try:
        return _create_and_spend(user=user, fields=fields, cost=cost, note=f"Upscale ×{scale} of an image")
    except BaseException:
        _private_delete([image_name])
        raise


def _enqueue_submit(generation_id: int) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task(
            "generations.tasks.generation_submit_task",
            generation_id,
            task_name=f"generation-{generation_id}-submit",
        )
    )


def _transition(generation: Generation, old: str | tuple[str, ...], new: str, **fields: Any) -> bool:
    """Compare-and-swap (fluxsite.statemachine), stamping finished_at on an ending."""
    extra = {"finished_at": timezone.now()} if new in (G.SUCCEEDED, G.FAILED, G.CANCELED) else {}
    moved = transition(generation, old, new, **extra, **fields)
    if moved and new in (G.SUCCEEDED, G.FAILED):
        # The owner's webhooks (fluxsite.accounts.services.webhooks): recorded with the move, sent on commit.
        webhook_event_emit(
            user_id=generation.owner_id,
            event_type=f"generation.{new}",
            data={
                "generation": {
                    "id": generation.pk,
                    "status": new,
                    "model_id": generation.lora_model_id,
                    "error_message": generation.error_message if new == G.FAILED else "",
                }
            },
        )
    return moved


def _backoff_seconds(attempt: int) -> float:
    return backoff_seconds(attempt, base=float(settings.GENERATION_RETRY_BASE_SECONDS))


def _failure_message(exc: IntegrationError, attempts: int) -> str:
    if exc.category == Category.RATE_LIMIT:
        return (
            f"Replicate is busy and kept asking us to slow down ({attempts} attempts). "
            "Your credits were refunded; try again in a minute."
        )
    if exc.category == Category.VALIDATION and exc.invalid_fields:
        fields = "; ".join(
            f"{str(f.get('field', '')).removeprefix('input.')}: {f.get('description', '')}"
            for f in exc.invalid_fields
        )
        return f"Replicate refused these settings ({fields}). Your credits were refunded."
    return f"{exc.message} {exc.hint} Your credits were refunded."


def generation_submit(*, generation_id: int) -> Generation | None:
    """Create the Replicate prediction once. Safe to call twice (redelivered task, poller).

    Retryable refusals (429, 5xx, network) are retried with backoff: short waits here, longer
    ones by the poller through `next_attempt_at`; after GENERATION_MAX_ATTEMPTS the generation
    fails and is refunded. A refusal that cannot improve (422, 401, 402) fails it at once; a 422's
    invalid_fields are kept so the form can show them against the right field.
    """
    generation = Generation.objects.select_related("lora_model").filter(pk=generation_id).first()
    if generation is None or generation.status != G.QUEUED or generation.replicate_prediction_id:
        return generation
    if generation.next_attempt_at and generation.next_attempt_at > timezone.now():
        return generation
    # Short waits (under GENERATION_INLINE_RETRY_SECONDS) are stamina's, between attempts of this
    # task; longer ones are the poller's, through next_attempt_at. Each attempt claims the row anew.
    for attempt in stamina.retry_context(on=_inline_wait, attempts=None, timeout=None):
        with attempt:
            return _submit_attempt(generation)
    return generation  # pragma: no cover  (the context returns or raises)


class _RetryInline(Exception):
    """A retryable refusal whose wait is short enough to wait for here."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"retry in {delay:.2f} s")
        self.delay = delay


def _inline_wait(exc: Exception) -> float | bool:
    return exc.delay if isinstance(exc, _RetryInline) else False


def _submit_attempt(generation: Generation) -> Generation:
    """One claimed attempt at creating the prediction; raises _RetryInline to be tried again soon."""
    max_attempts = int(settings.GENERATION_MAX_ATTEMPTS)
    inline_cap = float(settings.GENERATION_INLINE_RETRY_SECONDS)
    claimed = Generation.objects.filter(
        pk=generation.pk,
        status=G.QUEUED,
        replicate_prediction_id="",
        submit_started_at__isnull=True,
    ).update(submit_started_at=timezone.now(), attempts=F("attempts") + 1, next_attempt_at=None)
    if not claimed:
        return generation  # another worker holds the claim: never create a second paid prediction
    generation.refresh_from_db()
    model = generation.lora_model
    if model is None and generation.mode != M.UPSCALE:  # an upscale needs only its image
        generation_fail(
            generation=generation,
            category=Category.VALIDATION,
            message="The model was deleted before the images could be made. Credits refunded.",
        )
        return generation
    if generation.attempts > max_attempts:
        generation_fail(
            generation=generation,
            category=Category.SERVICE_ERROR,
            message=f"Replicate did not accept the request after {max_attempts} attempts. "
            "Your credits were refunded.",
        )
        return generation
    try:
        target, data = prediction_request(generation=generation, model=model)
        webhook = f"{settings.SITE_URL}{reverse('replicate_prediction_webhook')}?gen={generation.pk}"
        info = replicate_client.prediction_create(input=data, webhook_url=webhook, **target)
    except GenerationError as exc:
        generation_fail(generation=generation, category=Category.VALIDATION, message=str(exc))
        return generation
    except IntegrationError as exc:
        logger.info("generation %s: create failed (attempt %s): %s", generation.pk, generation.attempts, exc)
        if exc.category == Category.TIMEOUT:
            # No answer: a prediction may exist. Keep the claim (no second paid run); its webhook
            # adopts it, or the poller fails and refunds it when Replicate never reports one.
            Generation.objects.filter(pk=generation.pk).update(
                error_message="Waiting for Replicate to confirm."
            )
            return generation
        Generation.objects.filter(pk=generation.pk).update(submit_started_at=None)
        if exc.retryable and generation.attempts < max_attempts:
            delay = max(_backoff_seconds(generation.attempts), exc.retry_after or 0)
            if delay <= inline_cap:
                raise _RetryInline(delay)
            Generation.objects.filter(pk=generation.pk, status=G.QUEUED).update(
                next_attempt_at=timezone.now() + timedelta(seconds=delay)
            )
            generation.refresh_from_db()
            return generation
        generation_fail(
            generation=generation,
            category=exc.category,
            message=_failure_message(exc, generation.attempts),
            invalid_fields=exc.invalid_fields,
        )
        return generation
    Generation.objects.filter(pk=generation.pk, replicate_prediction_id="").update(
        replicate_prediction_id=info.id,
        replicate_status=info.status,
        last_news_at=timezone.now(),
        error_message="",
    )
    generation.refresh_from_db()
    if not _transition(generation, G.QUEUED, G.RUNNING) and generation.status == G.CANCELED:
        _cancel_at_replicate(generation)  # canceled by its owner while we were creating it
    if info.is_finished:
        generation_apply_replicate(info=info)
    generation.refresh_from_db()
    return generation


# --- What Replicate reports (webhook, poller and submit share this) -----------------------------------
def _adopt(info: replicate_client.PredictionInfo, generation_hint: int | None) -> Generation | None:
    """A prediction we asked for but never heard back about (timeout, or its webhook came first)."""
    if not generation_hint:
        return None
    Generation.objects.filter(
        pk=generation_hint, status__in=ACTIVE, replicate_prediction_id="", submit_started_at__isnull=False
    ).update(replicate_prediction_id=info.id)
    return Generation.objects.filter(replicate_prediction_id=info.id).first()


def generation_apply_replicate(
    *, info: replicate_client.PredictionInfo, generation_hint: int | None = None
) -> Generation | None:
    """Apply a prediction object as Replicate reports it. Idempotent and safe in any order."""
    generation = Generation.objects.filter(replicate_prediction_id=info.id).first() or _adopt(
        info, generation_hint
    )
    if generation is None:
        return None
    fields: dict[str, Any] = {"last_news_at": timezone.now()}
    if info.predict_time is not None:
        fields["predict_time"] = info.predict_time
    if generation.status in ACTIVE:
        fields["replicate_status"] = info.status
    Generation.objects.filter(pk=generation.pk).update(**fields)
    generation.refresh_from_db()
    if generation.status == G.QUEUED and info.status in (
        "starting",
        "processing",
        *replicate_client.FINISHED,
    ):
        _transition(generation, G.QUEUED, G.RUNNING)
    if info.status == "succeeded":
        _outputs_store(generation, info)
    elif info.status == "failed":
        error = info.error or "The model failed without saying why."
        if "nsfw" in error.lower():
            generation_fail(generation=generation, category=Category.VALIDATION, message=NSFW_MESSAGE)
        else:
            generation_fail(
                generation=generation,
                category=Category.SERVICE_ERROR,
                message=f"The model failed: {error[:500]} Your credits were refunded.",
            )
    elif info.status == "canceled":
        _finish_canceled(generation, "Canceled at Replicate. Your credits were refunded.")
    elif info.status == "aborted":
        generation_fail(
            generation=generation,
            category=Category.TIMEOUT,
            message="Replicate stopped this run before it started. Your credits were refunded.",
        )
    generation.refresh_from_db()
    return generation


def generation_sync(*, generation: Generation) -> Generation | None:
    """Ask Replicate for the prediction's state (the poller's path)."""
    info = replicate_client.prediction_get(prediction_id=generation.replicate_prediction_id)
    return generation_apply_replicate(info=info)


# --- Copying the outputs --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Stored:
    file_name: str
    thumbnail_name: str
    width: int
    height: int
    byte_size: int


def output_image_decode(data: bytes) -> Image.Image:
    """A model's output image (a generation's, a sample grid's), decoded fully, from an allowlist of formats, refusing decompression bombs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS.values()))
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise file_refusal("The image is larger than we accept.", retryable=False)
            image.load()
            return image
    except (
        UnidentifiedImageError,
        OSError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
    ) as exc:
        raise file_refusal(
            "Replicate sent a file that is not a readable image.", retryable=False, detail=repr(exc)
        ) from None


def _image_store(generation: Generation, index: int, data: bytes, extension: str) -> _Stored:
    image = output_image_decode(data)
    # An unguessable folder: the public storage serves these without a login.
    folder = f"generations/{secrets.token_hex(12)}"
    name = storage.file_save(
        alias=storage.PUBLIC, name=f"{folder}/{index + 1}.{extension}", content=io.BytesIO(data)
    )
    thumb = image.convert("RGB") if image.mode not in ("RGB", "RGBA") else image.copy()
    thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    out = io.BytesIO()
    thumb.save(out, format="WEBP", quality=80)
    out.seek(0)
    thumb_name = storage.file_save(alias=storage.PUBLIC, name=f"{folder}/{index + 1}-thumb.webp", content=out)
    return _Stored(name, thumb_name, image.width, image.height, len(data))


def _download_retryable(exc: Exception) -> bool:
    return isinstance(exc, IntegrationError) and bool(exc.retryable)


def _image_fetch_with_retries(url: str) -> bytes:
    """The image, retried by stamina on retryable failures (a 5xx, a dropped connection)."""
    pause = float(settings.GENERATION_DOWNLOAD_RETRY_SECONDS)
    for attempt in stamina.retry_context(
        on=_download_retryable,
        attempts=int(settings.GENERATION_DOWNLOAD_ATTEMPTS),
        timeout=None,
        wait_initial=pause,
        wait_max=pause * 4,
        wait_jitter=pause,
    ):
        with attempt:
            return image_download(url)
    raise AssertionError("unreachable")  # pragma: no cover


def _outputs_store(generation: Generation, info: replicate_client.PredictionInfo) -> None:
    """Copy every output into the public storage at once (Replicate's URLs expire), then succeed."""
    if generation.status != G.RUNNING:
        return
    claimed = Generation.objects.filter(
        pk=generation.pk, status=G.RUNNING, output_claimed_at__isnull=True
    ).update(output_claimed_at=timezone.now())
    if not claimed:
        return  # another worker is copying them
    if not info.output_urls:
        generation_fail(
            generation=generation,
            category=Category.FILE_ERROR,
            message="Replicate reported success without images. Your credits were refunded.",
        )
        return
    extension = generation.params.get("output_format", "webp")
    done = set(generation.images.values_list("index", flat=True))
    failure: IntegrationError | None = None
    for index, url in enumerate(info.output_urls):
        if index in done:
            continue
        try:
            stored = _image_store(generation, index, _image_fetch_with_retries(url), extension)
        except IntegrationError as exc:
            logger.warning(
                "generation %s: copying output %s failed: %s (%s)", generation.pk, index, exc, exc.detail
            )
            failure = exc
            continue
        try:
            image = GeneratedImage.objects.create(
                generation=generation,
                owner_id=generation.owner_id,
                index=index,
                file_name=stored.file_name,
                thumbnail_name=stored.thumbnail_name,
                width=stored.width,
                height=stored.height,
                byte_size=stored.byte_size,
            )
        except IntegrityError:
            _files_delete([stored.file_name, stored.thumbnail_name])
            continue
        if generation.lora_model_id and generation.mode != M.UPSCALE:
            lora_showcase_add(
                model_id=generation.lora_model_id,
                image_id=image.pk,
                file_name=image.file_name,
                thumbnail_name=image.thumbnail_name,
                prompt=generation.effective_prompt,
            )
    kept = set(generation.images.values_list("index", flat=True))
    if not kept:
        message = failure.message if failure else "Replicate sent no image we could read."
        generation_fail(
            generation=generation,
            category=Category.FILE_ERROR,
            message=f"{message} The images could not be saved; your credits were refunded.",
        )
        return
    _succeed_refunding_missing(generation, kept)


def _succeed_refunding_missing(generation: Generation, kept: set[int]) -> None:
    """Running → succeeded; each image of the batch that did not arrive (not sent, or not
    copyable) is refunded, once per image (billing's part refunds are unique per part), in the
    transition's transaction: after it nothing can refund the whole spend again."""
    missing = sorted(set(range(generation.num_outputs)) - kept)
    per_image = generation.cost_credits // max(generation.num_outputs, 1)
    note = ""
    if missing:
        count = len(missing)
        note = (
            f"{count} of {generation.num_outputs} images could not be made or saved; "
            f"their {count * per_image} credits were refunded."
        )
    with transaction.atomic():
        if not _transition(
            generation, G.RUNNING, G.SUCCEEDED, replicate_status="succeeded", error_message=note
        ):
            return
        if generation.credit_reference and per_image:
            for index in missing:
                credits_refund_part(
                    spend_reference=generation.credit_reference,
                    part=f"image-{index + 1}",
                    amount=per_image,
                    note=f"Generation #{generation.pk}: image {index + 1} failed",
                )


# --- Endings ------------------------------------------------------------------------------------------------
def generation_fail(
    *, generation: Generation, category: str, message: str, invalid_fields: list[dict] | None = None
) -> bool:
    """Queued/running → failed, once, with the credits refunded in the same transaction."""
    with transaction.atomic():
        if not _transition(
            generation,
            ACTIVE,
            G.FAILED,
            error_category=str(category),
            error_message=message[:2000],
            invalid_fields=invalid_fields or [],
        ):
            return False
        if generation.credit_reference:
            credits_refund(
                spend_reference=generation.credit_reference, note=f"Generation #{generation.pk} failed"
            )
    _cancel_at_replicate(generation)
    return True


def _finish_canceled(generation: Generation, message: str) -> bool:
    with transaction.atomic():
        if not _transition(generation, ACTIVE, G.CANCELED, error_message=message):
            return False
        if generation.credit_reference:
            credits_refund(
                spend_reference=generation.credit_reference, note=f"Generation #{generation.pk} canceled"
            )
    return True


def _cancel_at_replicate(generation: Generation) -> None:
    if generation.replicate_prediction_id and generation.replicate_status not in replicate_client.FINISHED:
        try:
            replicate_client.prediction_cancel(prediction_id=generation.replicate_prediction_id)
        except IntegrationError as exc:
            logger.warning("generation %s: cancel at Replicate failed: %s", generation.pk, exc)


def generation_cancel(*, generation: Generation) -> Generation:
    """Cancel a queued or running generation from the UI; the credits come back."""
    if generation.status not in ACTIVE:
        raise GenerationError("Only a queued or running generation can be canceled.")
    if generation.replicate_prediction_id:
        replicate_client.prediction_cancel(
            prediction_id=generation.replicate_prediction_id
        )  # errors reach the user
        Generation.objects.filter(pk=generation.pk).update(replicate_status="canceled")
        generation.refresh_from_db()
    if not _finish_canceled(generation, "Canceled by you. Your credits were refunded."):
        raise GenerationError("This generation finished meanwhile; reload the page.")
    return generation


# --- The poller ---------------------------------------------------------------------------------------------
def generations_reconcile() -> dict[str, int]:
    """Catch up on what a lost webhook or a dead worker left behind. Run every minute."""
    now = timezone.now()
    stale = now - timedelta(minutes=settings.PIPELINE_STALE_MINUTES)
    counts = {"polled": 0, "submitted": 0, "failed": 0}
    # A worker that died while copying the images: let the next sync claim the copy again.
    Generation.objects.filter(status=G.RUNNING, output_claimed_at__lt=stale).update(output_claimed_at=None)
    quiet = (
        Generation.objects.filter(status__in=ACTIVE)
        .exclude(replicate_prediction_id="")
        .filter(Q(last_news_at__lt=stale) | Q(last_news_at__isnull=True))
    )
    for generation in quiet:
        try:
            generation_sync(generation=generation)
            counts["polled"] += 1
        except IntegrationError as exc:
            logger.warning("generation %s: poll failed: %s", generation.pk, exc)
    unconfirmed = Generation.objects.filter(
        status=G.QUEUED, replicate_prediction_id="", submit_started_at__lt=stale
    )
    for generation in unconfirmed:
        if generation_fail(
            generation=generation,
            category=Category.TIMEOUT,
            message="Replicate never confirmed that the run started. Your credits were refunded.",
        ):
            counts["failed"] += 1
    due = Generation.objects.filter(
        status=G.QUEUED, replicate_prediction_id="", submit_started_at__isnull=True
    ).filter(Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True, updated_at__lt=stale))
    for generation in due:
        Generation.objects.filter(pk=generation.pk).update(next_attempt_at=None)
        generation_submit(generation_id=generation.pk)
        counts["submitted"] += 1
    return counts


# --- The gallery ---------------------------------------------------------------------------------------------
def _files_delete(names: list[str]) -> None:
    for name in names:
        try:
            storage.file_delete(alias=storage.PUBLIC, name=name)
        except IntegrationError:
            logger.warning("could not delete %s", name, exc_info=True)


def generated_image_delete(*, image: GeneratedImage) -> None:
    """Delete one image and its thumbnail; a model using it as its cover goes back to no cover."""
    names = [image.file_name, image.thumbnail_name]
    with transaction.atomic():
        if image.generation.lora_model_id:
            lora_showcase_remove(model_id=image.generation.lora_model_id, file_name=image.file_name)
        GeneratedImage.objects.filter(pk=image.pk).delete()
        transaction.on_commit(lambda: _files_delete(names))


def lora_set_cover(*, model: LoraModel, image: GeneratedImage) -> LoraModel:
    """Use one of the model's own generated images as its cover (list card, model page, samples)."""
    if image.generation.owner_id != model.owner_id or image.generation.lora_model_id != model.pk:
        raise GenerationError("Only an image made with this model can be its cover.")
    lora_cover_set(model_id=model.pk, file_name=image.file_name)
    model.refresh_from_db()
    return model
