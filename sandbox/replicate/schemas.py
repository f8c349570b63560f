"""Input schemas of the stand-in's built-in models, and validation against them, from vendor data.

Nothing here is written by hand: the schemas are the trainer's and predictors' own signatures
turned into Cog's OpenAPI shape (`sandbox/vendor/replicate/cog/*.json`, with source and revision
in each file), and the 422 messages are those of `sandbox/vendor/replicate/errors.json`. The
published schema and the validator read the same dicts, so they can never disagree.

Cog's shape (seen in the recorded `GET /v1/models/stability-ai/sdxl`, recorded/models-get.json):
an input with `choices` is `{"allOf": [{"$ref": "#/components/schemas/<name>"}]}` pointing at an
enum schema; Cog ignores inputs it does not declare (pydantic's default, `extra` not forbidden).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

VENDOR = Path(__file__).resolve().parent.parent / "vendor" / "replicate"


@cache
def vendor_json(name: str) -> dict[str, Any]:
    return json.loads((VENDOR / name).read_text())


def _cog(name: str) -> dict[str, Any]:
    return vendor_json(f"cog/{name}.json")


TRAINER = _cog("flux-dev-lora-trainer.train")  # ostris/flux-dev-lora-trainer's train()
TRAINED_VERSION = _cog("flux-fine-tuner.trained-version.predict")  # what a training's version runs
GENERATOR = _cog("flux-dev-lora.predict")  # black-forest-labs/flux-dev-lora
UPSCALER = _cog("real-esrgan.predict")  # nightmareai/real-esrgan: one PNG out, not a list
MESSAGES: dict[str, str] = vendor_json("errors.json")["messages"]
# The other trainers (issue 18; sandbox/replicate/trainers.py says how each runs here).
FAST_FLUX_TRAINER = _cog("fast-flux-trainer.train")  # replicate/fast-flux-trainer (its pages only)
QWEN_TRAINER = _cog("qwen-image-lora-trainer.train")  # qwen/qwen-image-lora-trainer's train()
QWEN_TRAINED_VERSION = _cog("qwen-image-lora-trainer.trained-version.predict")  # its versions' predict.py

TRAINING_INPUT: dict[str, Any] = TRAINER["input"]
LORA_INPUT: dict[str, Any] = TRAINED_VERSION["input"]
GENERATOR_INPUT: dict[str, Any] = GENERATOR["input"]


def _components(doc: dict[str, Any]) -> dict[str, Any]:
    return {"Input": doc["input"], **doc["enums"]}


def openapi_schema(
    doc: dict[str, Any], *, training: bool, predicts: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The `openapi_schema` of a version, as Cog publishes it (the parts our client and the SDK read).
    A trainer's version also declares how the versions it makes predict (`predicts`, by default
    flux-fine-tuner's)."""
    schemas: dict[str, Any] = {
        "Output": {"type": "array", "title": "Output", "items": {"type": "string", "format": "uri"}}
    }
    if training:
        # A trainer's version predicts like the versions it makes and also declares its train().
        schemas.update(_components(predicts or TRAINED_VERSION))
        schemas.update({k: v for k, v in doc["enums"].items()})
        schemas["TrainingInput"] = doc["input"]
        schemas["TrainingOutput"] = doc["output"]
    else:
        schemas.update(_components(doc))
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {},
        "components": {"schemas": schemas},
    }


def upscaler_openapi_schema() -> dict[str, Any]:
    """The upscaler's schema: its Output is a single uri (a Cog `-> Path`), not the generators' list."""
    schema = openapi_schema(UPSCALER, training=False)
    schema["components"]["schemas"]["Output"] = UPSCALER["output"]
    return schema


def resolved(spec: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """A property with its allOf/$ref enum folded in (Cog keeps choices in a separate schema)."""
    out = {k: v for k, v in spec.items() if k != "allOf"}
    for part in spec.get("allOf", []):
        ref = part.get("$ref", "")
        target = (
            components.get(ref.rsplit("/", 1)[-1], {}) if ref.startswith("#/components/schemas/") else part
        )
        out.setdefault("type", target.get("type"))
        if "enum" in target:
            out["enum"] = target["enum"]
    return out


def _given(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def input_validate(
    data: Any, schema: dict[str, Any], components: dict[str, Any] | None = None
) -> list[dict[str, str]]:
    """Check an `input` object against a schema; returns Replicate-style invalid_fields (empty: valid)."""
    if not isinstance(data, dict):
        return [
            {
                "type": "invalid_type",
                "field": "input",
                "description": MESSAGES["invalid_type"].format(expected="object", given=_given(data)),
            }
        ]
    components = components if components is not None else {}
    problems: list[dict[str, str]] = []
    for name in schema.get("required", []):
        if name not in data:
            problems.append(
                {
                    "type": "required",
                    "field": "input",
                    "description": MESSAGES["required"].format(property=name),
                }
            )
    properties = schema["properties"]
    for name, value in data.items():
        if name not in properties:
            continue  # Cog ignores unknown inputs
        spec = resolved(properties[name], components)
        field = f"input.{name}"
        expected = spec.get("type", "string")
        ok = {
            "string": isinstance(value, str),
            "boolean": isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
        }[expected]
        if not ok:
            problems.append(
                {
                    "type": "invalid_type",
                    "field": field,
                    "description": MESSAGES["invalid_type"].format(expected=expected, given=_given(value)),
                }
            )
            continue
        if "enum" in spec and value not in spec["enum"]:
            allowed = ", ".join(f'"{v}"' for v in spec["enum"])
            problems.append(
                {
                    "type": "enum",
                    "field": field,
                    "description": MESSAGES["enum"].format(field=name, allowed=allowed),
                }
            )
        if "minimum" in spec and value < spec["minimum"]:
            problems.append(
                {
                    "type": "number_gte",
                    "field": field,
                    "description": MESSAGES["number_gte"].format(min=spec["minimum"]),
                }
            )
        if "maximum" in spec and value > spec["maximum"]:
            problems.append(
                {
                    "type": "number_lte",
                    "field": field,
                    "description": MESSAGES["number_lte"].format(max=spec["maximum"]),
                }
            )
    return problems


def validation_detail(problems: list[dict[str, str]]) -> str:
    """The `detail` text of a 422: one "- field: description" line per problem (recorded shape)."""
    return "".join(f"- {p['field']}: {p['description']}\n" for p in problems)


def with_defaults(data: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    merged = {name: spec["default"] for name, spec in schema["properties"].items() if "default" in spec}
    merged.update({k: v for k, v in data.items() if v is not None})
    return merged
