"""Helpers for the generation tests: ready models (with a sandbox version) and stored images."""

from __future__ import annotations

import hashlib
import io

from PIL import Image

from fluxsite.integrations import storage
from generations.models import GeneratedImage, Generation
from models_app.models import LoraModel
from models_app.services import lora_showcase_add

PARAMS = {
    "aspect_ratio": "1:1",
    "num_outputs": 1,
    "lora_scale": 1.0,
    "num_inference_steps": 28,
    "guidance_scale": 3.0,
    "seed": None,
    "output_format": "webp",
}
FORM = {
    "prompt": "a portrait in soft light",
    "aspect_ratio": "1:1",
    "num_outputs": "2",
    "lora_scale": "1",
    "num_inference_steps": "28",
    "guidance_scale": "3",
    "seed": "",
    "output_format": "webp",
}


def lora_model(owner, *, name: str = "Portrait", replicate_version: str = "", **extra) -> LoraModel:
    fields = {
        "name": name,
        "slug": name.lower().replace(" ", "-"),
        "trigger_word": "ALICEX",
        "weights_file_name": "weights/x/lora.safetensors",
        "weights_size": 10,
        "weights_sha256": "0" * 64,
        "status": LoraModel.Status.READY,
        "replicate_version": replicate_version,
        **extra,
    }
    return LoraModel.objects.create(owner=owner, **fields)


def sandbox_version(label: str) -> str:
    """Register a trained version on the Replicate stand-in, as a finished training would; returns output.version."""
    from sandbox.replicate import schemas
    from sandbox.replicate.models import SandboxModel, SandboxVersion, VersionKind

    model, _ = SandboxModel.objects.get_or_create(owner="fluxsite", name=f"lora-{label}")
    version_id = hashlib.sha256(f"test-version:{label}".encode()).hexdigest()
    SandboxVersion.objects.create(
        model=model,
        version_id=version_id,
        kind=VersionKind.LORA,
        openapi_schema=schemas.openapi_schema(schemas.TRAINED_VERSION, training=False),
    )
    return f"fluxsite/lora-{label}:{version_id}"


def stored_image(generation: Generation, index: int = 0, color=(90, 60, 200)) -> GeneratedImage:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(out, format="WEBP")
    name = storage.file_save(
        alias=storage.PUBLIC,
        name=f"generations/t{generation.pk}/{index + 1}.webp",
        content=io.BytesIO(out.getvalue()),
    )
    thumb = storage.file_save(
        alias=storage.PUBLIC,
        name=f"generations/t{generation.pk}/{index + 1}-thumb.webp",
        content=io.BytesIO(out.getvalue()),
    )
    image = GeneratedImage.objects.create(
        generation=generation,
        owner_id=generation.owner_id,
        index=index,
        file_name=name,
        thumbnail_name=thumb,
        width=64,
        height=64,
        byte_size=len(out.getvalue()),
    )
    if generation.lora_model_id:  # as the output copy does (generations.services.generation)
        lora_showcase_add(
            model_id=generation.lora_model_id,
            image_id=image.pk,
            file_name=name,
            thumbnail_name=thumb,
            prompt=generation.effective_prompt,
        )
    return image


def finished_generation(owner, model: LoraModel | None, *, images: int = 1, **extra) -> Generation:
    fields = {
        "owner": owner,
        "lora_model": model,
        "model_name": model.name if model else "Gone",
        "prompt": "a cat",
        "effective_prompt": "ALICEX, a cat",
        "params": {**PARAMS, "seed": 42},
        "seed": 42,
        "num_outputs": images,
        "status": Generation.Status.SUCCEEDED,
        **extra,
    }
    generation = Generation.objects.create(**fields)
    for index in range(images):
        stored_image(generation, index)
    return generation
