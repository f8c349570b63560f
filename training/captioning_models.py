"""The vision models that caption a dataset's photos on Replicate: what we send, and how we read back.

Each model's inputs and output shape are its real ones (the vendor material in
sandbox/vendor/replicate/cog/, with sources and revisions in that folder's README):

- lucataco/florence-2-large: `{"image": uri, "task_input": "More Detailed Caption"}`; the output is
  an object `{"img": uri | null, "text": "<str(dict)>"}`, and `text` is Python's repr of Florence-2's
  post-processed answer, e.g. `{'<MORE_DETAILED_CAPTION>': 'The image shows ...'}`: single quotes,
  so not JSON. Read with ast.literal_eval (literals only, never code). It takes no prompt, so the
  subject/style hint cannot steer it; "tags" asks for its short caption and splits it into phrases.
- yorickvp/llava-13b: `{"image": uri, "prompt": str, "max_tokens": int, "temperature": float}`; the
  output is Cog's ConcatenateIterator[str]: a list of text pieces that join into the answer (plain
  strings also accepted). Its prompt carries the style and the subject/style hint.

Pinned versions are in settings.CAPTION_MODEL_VERSIONS (environment overrides). Before a batch
starts, the pinned version's own schema is read from Replicate and every input we send must be in
it (`missing_inputs`): a model that changed its inputs is refused before anything is paid.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from django.conf import settings

# Replicate's published per-second prices (https://replicate.com/pricing; a copy with its date is in
# sandbox/vendor/replicate/hardware-prices.json). Which hardware each public model runs on, and
# how long a caption takes, are not in our vendor material: Replicate's model pages state them.
HARDWARE_PRICE_PER_SECOND = {
    "gpu-t4": Decimal("0.000225"),
    "gpu-l40s": Decimal("0.000975"),
    "gpu-a100-large": Decimal("0.001400"),
}
FLORENCE_TASKS = {"natural": "More Detailed Caption", "tags": "Caption"}
FLORENCE_KEYS = ("<MORE_DETAILED_CAPTION>", "<DETAILED_CAPTION>", "<CAPTION>")
OUTPUT_TEXT_MAX = 200_000  # characters of raw output read at all; the caption is then cut at CAPTION_MAX


class CaptionOutputError(Exception):
    """The model's output is not in the shape its schema promises; the message is safe to show."""


@dataclass(frozen=True)
class CaptioningModel:
    ref: str  # owner/name
    label: str
    output_format: str  # "python-dict-string" or "text-pieces"
    hardware: str
    seconds_per_photo: Decimal
    build_input: Callable[..., dict[str, Any]]
    parse_output: Callable[[Any], str]

    @property
    def version(self) -> str:
        return settings.CAPTION_MODEL_VERSIONS.get(self.ref, "")

    @property
    def price_per_photo(self) -> int:
        """Credits per photo: run seconds x hardware price x CAPTION_PRICE_MARGIN, rounded up."""
        dollars = self.seconds_per_photo * HARDWARE_PRICE_PER_SECOND[self.hardware]
        cents = dollars * Decimal(settings.CAPTION_PRICE_MARGIN) * 100
        credits = (cents / Decimal(settings.CREDIT_VALUE_CENTS)).to_integral_value(rounding=ROUND_CEILING)
        return max(int(credits), 1)


def _florence_input(*, image_url: str, style: str, subject_kind: str) -> dict[str, Any]:
    return {"image": image_url, "task_input": FLORENCE_TASKS.get(style, FLORENCE_TASKS["natural"])}


def _florence_parse(output: Any) -> str:
    text = output.get("text") if isinstance(output, dict) else output
    if not isinstance(text, str):
        raise CaptionOutputError("Florence-2 sent no text.")
    if len(text) > OUTPUT_TEXT_MAX:
        raise CaptionOutputError("Florence-2's answer was too long to read.")
    try:
        answer = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise CaptionOutputError("Florence-2's answer was not in its usual format.") from None
    if not isinstance(answer, dict):
        raise CaptionOutputError("Florence-2's answer was not in its usual format.")
    for key in FLORENCE_KEYS:
        if isinstance(answer.get(key), str):
            return answer[key]
    raise CaptionOutputError("Florence-2's answer held no caption.")


LLAVA_PROMPTS = {
    ("natural", "subject"): (
        "Describe this photo in one or two sentences for a training caption: the person or object, "
        "their clothing, pose, expression, the setting and the light. Do not guess names."
    ),
    ("natural", "style"): (
        "Describe what this image shows in one or two sentences: the objects, people, scene and "
        "composition. Do not describe its artistic style, medium, technique or colour palette."
    ),
    ("tags", "subject"): (
        "List 5 to 15 short comma-separated tags for this photo: clothing, pose, expression, "
        "setting, light. Only the tags, no sentence."
    ),
    ("tags", "style"): (
        "List 5 to 15 short comma-separated tags for the content of this image (objects, scene, "
        "composition), not its style or medium. Only the tags, no sentence."
    ),
}


def _llava_input(*, image_url: str, style: str, subject_kind: str) -> dict[str, Any]:
    kind = "style" if subject_kind == "style" else "subject"
    prompt = LLAVA_PROMPTS[(style if style in ("natural", "tags") else "natural", kind)]
    return {"image": image_url, "prompt": prompt, "max_tokens": 200, "temperature": 0.2}


def _llava_parse(output: Any) -> str:
    if isinstance(output, str):
        return output[:OUTPUT_TEXT_MAX]
    if isinstance(output, list) and all(isinstance(piece, str) for piece in output):
        return "".join(output)[:OUTPUT_TEXT_MAX]
    raise CaptionOutputError("LLaVA's answer was not text.")


MODELS: dict[str, CaptioningModel] = {
    model.ref: model
    for model in (
        CaptioningModel(
            ref="lucataco/florence-2-large",
            label="Florence-2 large (fast, descriptive; ignores the subject/style hint)",
            output_format="python-dict-string",
            hardware="gpu-t4",
            seconds_per_photo=Decimal("3"),
            build_input=_florence_input,
            parse_output=_florence_parse,
        ),
        CaptioningModel(
            ref="yorickvp/llava-13b",
            label="LLaVA 13B (follows the style and the subject/style hint)",
            output_format="text-pieces",
            hardware="gpu-a100-large",
            seconds_per_photo=Decimal("4"),
            build_input=_llava_input,
            parse_output=_llava_parse,
        ),
    )
}


def model_get(ref: str) -> CaptioningModel | None:
    model = MODELS.get(ref)
    return model if model is not None and model.version else None


def model_choices() -> list[tuple[str, str]]:
    return [(ref, model.label) for ref, model in MODELS.items() if model.version]


def missing_inputs(model: CaptioningModel, schema_fields: dict[str, Any]) -> list[str]:
    """The inputs we would send that the version's own schema does not declare."""
    sample = model.build_input(
        image_url="https://example.invalid/x.jpg", style="natural", subject_kind="subject"
    )
    return sorted(name for name in sample if name not in schema_fields)


_TAG_SPLIT = re.compile(r",|;|\.|\band\b|\bwith\b", re.IGNORECASE)
_LEADING = re.compile(
    r"^(the image shows|this image shows|the image is|this is|there is|there are|an?|the)\s+", re.I
)


def caption_as_tags(text: str) -> str:
    """A sentence turned into short comma-separated phrases (for a model that only writes sentences)."""
    tags: list[str] = []
    for part in _TAG_SPLIT.split(text):
        phrase = part.strip()
        while True:
            shorter = _LEADING.sub("", phrase)
            if shorter == phrase:
                break
            phrase = shorter
        phrase = phrase.strip().lower()
        if phrase and phrase not in tags:
            tags.append(phrase)
    return ", ".join(tags)


# --- Photo inspection: a small JSON checklist answered by the model that takes a prompt (LLaVA) -----
INSPECTION_MODEL = "yorickvp/llava-13b"
INSPECTION_KEYS: dict[str, type] = {
    "people": int,
    "face_visible": bool,
    "face_covered": bool,
    "text_or_watermark": bool,
    "heavy_filter": bool,
}
INSPECTION_PROMPT = (
    "Answer with one JSON object and nothing else, with these keys: "
    '"people" (the number of people in the photo, an integer), '
    '"face_visible" (true if a face is clearly visible), '
    '"face_covered" (true if sunglasses, a hat, a mask or a hand covers part of the face), '
    '"text_or_watermark" (true if there is any text, logo or watermark), '
    '"heavy_filter" (true if a strong colour filter or heavy editing is applied).'
)


def inspection_input(*, image_url: str) -> dict[str, Any]:
    return {"image": image_url, "prompt": INSPECTION_PROMPT, "max_tokens": 120, "temperature": 0.0}


def inspection_parse(output: Any) -> dict[str, Any]:
    """The checklist from the model's text: the first JSON object in it, every key of the right type.

    Raises CaptionOutputError when the answer holds no such object (models often add prose around
    JSON, so the object is looked for rather than the whole text parsed)."""
    import json

    text = _llava_parse(output)
    start = text.find("{")
    if start < 0:
        raise CaptionOutputError("The model's checklist was not JSON.")
    try:
        answer, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        raise CaptionOutputError("The model's checklist was not JSON.") from None
    if not isinstance(answer, dict):
        raise CaptionOutputError("The model's checklist was not a JSON object.")
    checked: dict[str, Any] = {}
    for key, kind in INSPECTION_KEYS.items():
        value = answer.get(key)
        if kind is bool:
            ok = isinstance(value, bool)
        else:  # a count: an int that is not a bool (True is an int in Python), within reason
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100
        if not ok:
            raise CaptionOutputError(f"The model's checklist had no valid “{key}”.")
        checked[key] = value
    return checked
