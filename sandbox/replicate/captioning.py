"""The captioning models of the Replicate stand-in: real schemas, plausible captions from the image.

The two models and their schemas come from the vendor material (`sandbox/vendor/replicate/cog/
florence-2-large.predict.json`, `llava-13b.predict.json`; sources in that folder's README), under
their real version ids. Their answers keep each model's real output shape:

- Florence-2: `{"img": null, "text": "{'<MORE_DETAILED_CAPTION>': '...'}"}`, the text being Python's
  repr of a dict (what `str(parsed_answer)` gives in the model's predict.py);
- LLaVA: a list of text pieces (Cog's ConcatenateIterator[str]), each but the first led by a space.

The caption itself is built from what can be measured of the photo (orientation, brightness,
colour, saturation, contrast): the stand-in sees pixels, not people, and says only that.
Faults (sandbox.faults, kinds caption_*) replace it with an empty, absurdly long, malformed or
markup-laden answer; no vendor material shows such answers, they are what the schemas allow.
"""

from __future__ import annotations

import base64
import colorsys
import io
import json
from typing import Any

import httpx
from PIL import Image, ImageStat, UnidentifiedImageError

from sandbox.models import FaultKind
from sandbox.replicate import schemas

FLORENCE = "lucataco/florence-2-large"
LLAVA = "yorickvp/llava-13b"
DOCS: dict[str, dict[str, Any]] = {
    FLORENCE: schemas.vendor_json("cog/florence-2-large.predict.json"),
    LLAVA: schemas.vendor_json("cog/llava-13b.predict.json"),
}
CAPTION_FAULTS = (
    FaultKind.CAPTION_EMPTY,
    FaultKind.CAPTION_LONG,
    FaultKind.CAPTION_GARBLED,
    FaultKind.CAPTION_MARKUP,
)
IMAGE_MAX_BYTES = 30 * 1024 * 1024
# Not in the vendor material: the error text of a run whose image cannot be read (Cog's own wording
# is not recorded anywhere we have); the status ("failed" with an `error`) is the documented one.
UNREADABLE = "cannot identify image file"


def version_id(ref: str) -> str:
    return str(DOCS[ref]["_source"]["version"])


def openapi_schema(ref: str) -> dict[str, Any]:
    doc = DOCS[ref]
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {},
        "components": {"schemas": {"Input": doc["input"], "Output": doc["output"], **doc["enums"]}},
    }


def _image_bytes(url: str) -> bytes:
    if url.startswith("data:"):
        _, _, data = url.partition(",")
        return base64.b64decode(data)
    with httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False) as client:
        response = client.get(url)
        response.raise_for_status()
        return response.content[:IMAGE_MAX_BYTES]


def _describe(data: bytes) -> dict[str, str]:
    image = Image.open(io.BytesIO(data), formats=["JPEG", "PNG", "WEBP"])
    image.draft("RGB", (256, 256))
    small = image.convert("RGB")
    small.thumbnail((128, 128))
    stat = ImageStat.Stat(small)
    r, g, b = (c / 255 for c in stat.mean)
    hue, lightness, saturation = colorsys.rgb_to_hls(r, g, b)
    contrast = sum(stat.stddev) / 3
    width, height = image.size
    orientation = "portrait" if height > width * 1.1 else "landscape" if width > height * 1.1 else "square"
    names = ["red", "orange", "yellow", "green", "teal", "blue", "purple", "pink"]
    colour = names[int(hue * 8) % 8] if saturation > 0.15 else "neutral grey"
    return {
        "orientation": orientation,
        "light": "bright" if lightness > 0.6 else "dark" if lightness < 0.3 else "evenly lit",
        "colour": colour,
        "saturation": "vivid" if saturation > 0.45 else "muted" if saturation > 0.15 else "desaturated",
        "contrast": "high-contrast"
        if contrast > 60
        else "soft, low-contrast"
        if contrast < 30
        else "balanced",
    }


def _sentence(facts: dict[str, str], *, long: bool) -> str:
    short = (
        f"a {facts['light']} {facts['orientation']} photo in {facts['saturation']} {facts['colour']} tones"
    )
    if not long:
        return short[0].upper() + short[1:] + "."
    return (
        f"The image shows a {facts['light']} {facts['orientation']} photograph. The colours are "
        f"{facts['saturation']}, dominated by {facts['colour']} tones, and the lighting is "
        f"{facts['contrast']}."
    )


def _answer(ref: str, input_data: dict[str, Any], caption: str) -> Any:
    if ref == FLORENCE:
        task = str(input_data.get("task_input") or "Caption")
        key = DOCS[FLORENCE]["task_keys"].get(task)
        answer: dict[str, Any] = {key: caption} if key else {"<OD>": {"bboxes": [], "labels": []}}
        return {"img": None, "text": str(answer)}
    words = caption.split(" ")
    return [words[0], *(f" {w}" for w in words[1:])] if caption else []


def caption_output(ref: str, input_data: dict[str, Any], fault_kind: str | None) -> tuple[Any, str]:
    """(the model's output, or None; the run's error, or "") for a prediction of a captioner."""
    if fault_kind == FaultKind.CAPTION_GARBLED:
        if ref == FLORENCE:
            return {"img": None, "text": "<MORE_DETAILED_CAPTION>The image shows"}, ""
        return {"text": "The image shows"}, ""
    if fault_kind == FaultKind.CAPTION_EMPTY:
        return _answer(ref, input_data, ""), ""
    if fault_kind == FaultKind.CAPTION_MARKUP:
        return _answer(ref, input_data, '<script>alert("x")</script><b>A photo</b> of a &amp; b'), ""
    try:
        facts = _describe(_image_bytes(str(input_data.get("image", ""))))
    except (httpx.HTTPError, UnidentifiedImageError, OSError, ValueError):
        return None, UNREADABLE
    if fault_kind == FaultKind.CAPTION_LONG:
        return _answer(ref, input_data, " ".join([_sentence(facts, long=True)] * 400)), ""
    if ref == LLAVA and "JSON" in str(input_data.get("prompt", "")):
        # A checklist. The stand-in sees pixels, not people: the people and face answers are a
        # constant plausible "one visible face"; the filter answer comes from the measured colour.
        checklist = {
            "people": 1,
            "face_visible": True,
            "face_covered": False,
            "text_or_watermark": False,
            "heavy_filter": facts["saturation"] == "vivid" and facts["contrast"] != "balanced",
        }
        return _answer(ref, input_data, json.dumps(checklist)), ""
    detailed = ref == LLAVA or input_data.get("task_input") in ("Detailed Caption", "More Detailed Caption")
    caption = _sentence(facts, long=detailed)
    if ref == LLAVA and "tags" in str(input_data.get("prompt", "")):
        caption = ", ".join(
            [f"{facts['orientation']} photo", facts["light"], f"{facts['colour']} tones", facts["saturation"]]
        )
    return _answer(ref, input_data, caption), ""
