"""The base models a LoRA can be trained on, and what follows from a model's base.

`LoraModel.base_model` holds the Hugging Face id of the base (set from the trainer when the
training's model is created). Everything that depends on it (the Hugging Face card's base model,
tags and licence; the generator and how its inputs are named) is read from here, so the model
page, the card and the generations follow the base without knowing the trainer.

Sources (sandbox/vendor/replicate/cog/, docs/trainers-research.md):
- FLUX.1-dev: black-forest-labs/flux-dev-lora (`flux-dev-lora.predict.json`) with `lora_weights`,
  or a trained version (replicate/flux-fine-tuner's predictor).
- Qwen-Image: a trained version of qwen/qwen-image-lora-trainer runs that repository's predict.py
  (`qwen-image-lora-trainer.trained-version.predict.json`): `guidance` (not `guidance_scale`), one
  image a run (no `num_outputs`), and a LoRA applied only when `replicate_weights` is given.
  `qwen/qwen-image` (`qwen-image.predict.json`) takes `lora_weights`, but its other ranges were not
  in the material (a gap), so it is not used as a generator yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FLUX_DEV = "black-forest-labs/FLUX.1-dev"
QWEN_IMAGE = "Qwen/Qwen-Image"


@dataclass(frozen=True)
class Base:
    hf_id: str
    label: str
    tags: tuple[str, ...]
    license_name: str
    license_link: str
    # The base-model generator that takes a LoRA by URL (`lora_weights`), or "" when there is
    # none whose schema we know: such a model generates only through its trained version.
    generator_model: str
    guidance_input: str  # what the trained version's predictor calls guidance
    multiple_outputs: bool  # whether the predictor takes `num_outputs`
    # Whether a trained version applies its LoRA only when given `replicate_weights`.
    needs_replicate_weights: bool
    aspect_ratios: tuple[str, ...] = ()


BASES: dict[str, Base] = {
    FLUX_DEV: Base(
        hf_id=FLUX_DEV,
        label="FLUX.1 [dev]",
        tags=("text-to-image", "flux", "lora", "diffusers", "template:sd-lora"),
        license_name="flux-1-dev-non-commercial-license",
        license_link="https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/LICENSE.md",
        generator_model="black-forest-labs/flux-dev-lora",
        guidance_input="guidance_scale",
        multiple_outputs=True,
        needs_replicate_weights=False,
    ),
    QWEN_IMAGE: Base(
        hf_id=QWEN_IMAGE,
        label="Qwen-Image",
        tags=("text-to-image", "qwen-image", "lora", "diffusers", "template:sd-lora"),
        # Qwen-Image is released under Apache 2.0 (its Hugging Face repository).
        license_name="apache-2.0",
        license_link="https://huggingface.co/Qwen/Qwen-Image/blob/main/LICENSE",
        generator_model="",
        guidance_input="guidance",
        multiple_outputs=False,
        needs_replicate_weights=True,
        # predict.py's aspect_ratio choices (qwen-image-lora-trainer.trained-version.predict.json).
        aspect_ratios=("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"),
    ),
}


def base_get(hf_id: str) -> Base:
    """The base of a model; an unknown id is treated as FLUX.1-dev (every model before the
    registry was one)."""
    return BASES.get(hf_id) or BASES[FLUX_DEV]


def version_input_adapt(*, base_model: str, data: dict[str, Any], weights_url: str) -> dict[str, Any]:
    """A trained version's input for a model of `base_model`, from the FLUX-shaped input the
    generate page builds: Qwen's predictor names guidance `guidance`, makes one image a run and
    needs the LoRA's URL as `replicate_weights`. FLUX inputs are returned unchanged."""
    base = base_get(base_model)
    if base.hf_id == FLUX_DEV:
        return data
    out = dict(data)
    if "guidance_scale" in out and base.guidance_input != "guidance_scale":
        out[base.guidance_input] = out.pop("guidance_scale")
    if not base.multiple_outputs:
        out.pop("num_outputs", None)
    if base.needs_replicate_weights and weights_url:
        out["replicate_weights"] = weights_url
    return out
