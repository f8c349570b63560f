"""Input schemas of the stand-in's built-in models, and validation against them.

The trainer's schema is what `GET /v1/models/ostris/flux-dev-lora-trainer` returns in
`latest_version.openapi_schema` (components.schemas.TrainingInput), and the validator reads the
same dict, so the published schema and the 422s can never disagree.
"""

from __future__ import annotations

from typing import Any

OPTIMIZERS = ["adamw8bit", "prodigy", "adam8bit", "lion8bit", "adam", "adamw", "lion", "adagrad", "adafactor"]
ASPECT_RATIOS = ["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"]

TRAINING_INPUT: dict[str, Any] = {
    "type": "object",
    "title": "TrainingInput",
    "required": ["input_images"],
    "properties": {
        "input_images": {"type": "string", "format": "uri", "description": "A zip file containing the images."},
        "trigger_word": {"type": "string", "default": "TOK"},
        "autocaption": {"type": "boolean", "default": True},
        "autocaption_prefix": {"type": "string"},
        "autocaption_suffix": {"type": "string"},
        "steps": {"type": "integer", "default": 1000, "minimum": 3, "maximum": 6000},
        "learning_rate": {"type": "number", "default": 0.0004},
        "batch_size": {"type": "integer", "default": 1, "minimum": 1},
        "resolution": {"type": "string", "default": "512,768,1024"},
        "lora_rank": {"type": "integer", "default": 16, "minimum": 1, "maximum": 128},
        "caption_dropout_rate": {"type": "number", "default": 0.05, "minimum": 0, "maximum": 1},
        "optimizer": {"type": "string", "default": "adamw8bit", "enum": OPTIMIZERS},
        "cache_latents_to_disk": {"type": "boolean", "default": False},
        "layers_to_optimize_regex": {"type": "string"},
        "gradient_checkpointing": {"type": "boolean", "default": False},
        "hf_repo_id": {"type": "string"},
        "hf_token": {"type": "string", "format": "password"},
        "wandb_api_key": {"type": "string", "format": "password"},
        "wandb_project": {"type": "string", "default": "flux_train_replicate"},
        "wandb_run": {"type": "string"},
        "wandb_entity": {"type": "string"},
        "wandb_sample_interval": {"type": "integer", "default": 100, "minimum": 1},
        "wandb_sample_prompts": {"type": "string"},
        "wandb_save_interval": {"type": "integer", "default": 100, "minimum": 1},
        "skip_training_and_use_pretrained_hf_lora_url": {"type": "string"},
    },
}

_GENERATION_COMMON: dict[str, Any] = {
    "prompt": {"type": "string"},
    "aspect_ratio": {"type": "string", "default": "1:1", "enum": ASPECT_RATIOS},
    "num_outputs": {"type": "integer", "default": 1, "minimum": 1, "maximum": 4},
    "lora_scale": {"type": "number", "default": 1, "minimum": -1, "maximum": 3},
    "num_inference_steps": {"type": "integer", "default": 28, "minimum": 1, "maximum": 50},
    "seed": {"type": "integer"},
    "output_format": {"type": "string", "default": "webp", "enum": ["webp", "jpg", "png"]},
    "output_quality": {"type": "integer", "default": 80, "minimum": 0, "maximum": 100},
    "disable_safety_checker": {"type": "boolean", "default": False},
    "megapixels": {"type": "string", "default": "1", "enum": ["1", "0.25"]},
}

# The destination versions a training creates (inputs of a trained FLUX LoRA).
LORA_INPUT: dict[str, Any] = {
    "type": "object",
    "title": "Input",
    "required": ["prompt"],
    "properties": {**_GENERATION_COMMON,
                   "guidance_scale": {"type": "number", "default": 3, "minimum": 0, "maximum": 10},
                   "go_fast": {"type": "boolean", "default": False}},
}

# black-forest-labs/flux-dev-lora calls it `guidance` and defaults go_fast to true.
GENERATOR_INPUT: dict[str, Any] = {
    "type": "object",
    "title": "Input",
    "required": ["prompt"],
    "properties": {**_GENERATION_COMMON,
                   "lora_weights": {"type": "string"},
                   "guidance": {"type": "number", "default": 3, "minimum": 0, "maximum": 10},
                   "go_fast": {"type": "boolean", "default": True}},
}


def openapi_schema(input_schema: dict[str, Any], *, training: bool) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Output": {"type": "array", "items": {"type": "string", "format": "uri"}}}
    if training:
        schemas["TrainingInput"] = input_schema
        schemas["TrainingOutput"] = {"type": "object", "required": ["weights"],
                                     "properties": {"weights": {"type": "string", "format": "uri"}}}
        schemas["Input"] = LORA_INPUT
    else:
        schemas["Input"] = input_schema
    return {"openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"}, "paths": {},
            "components": {"schemas": schemas}}


def input_validate(data: Any, schema: dict[str, Any]) -> list[dict[str, str]]:
    """Check an `input` object against a schema; returns Replicate-style invalid_fields (empty: valid)."""
    if not isinstance(data, dict):
        return [{"type": "invalid_type", "field": "input", "description": "Invalid type. Expected: object"}]
    problems: list[dict[str, str]] = []
    for name in schema.get("required", []):
        if data.get(name) in (None, ""):
            problems.append({"type": "required", "field": "input", "description": f"{name} is required"})
    properties = schema["properties"]
    for name, value in data.items():
        spec = properties.get(name)
        if spec is None or value is None:
            continue  # Cog ignores unknown inputs
        field = f"input.{name}"
        expected = spec["type"]
        ok = {
            "string": isinstance(value, str),
            "boolean": isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
        }[expected]
        if not ok:
            problems.append({"type": "invalid_type", "field": field,
                             "description": f"Invalid type. Expected: {expected}, given: {type(value).__name__}"})
            continue
        if "enum" in spec and value not in spec["enum"]:
            allowed = ", ".join(f'"{v}"' for v in spec["enum"])
            problems.append({"type": "enum", "field": field, "description": f"{name} must be one of the following: {allowed}"})
        if "minimum" in spec and value < spec["minimum"]:
            problems.append({"type": "greater_than_equal", "field": field,
                             "description": f"Must be greater than or equal to {spec['minimum']}"})
        if "maximum" in spec and value > spec["maximum"]:
            problems.append({"type": "less_than_equal", "field": field,
                             "description": f"Must be less than or equal to {spec['maximum']}"})
    return problems


def with_defaults(data: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    merged = {name: spec["default"] for name, spec in schema["properties"].items() if "default" in spec}
    merged.update({k: v for k, v in data.items() if v is not None})
    return merged
