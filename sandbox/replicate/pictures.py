"""The Replicate stand-in's output images: pictures that visibly come from the model that made them.

No vendor material says what a FLUX image looks like, so the pictures are the sandbox's own; what
they are made of follows the predictors' inputs (replicate/flux-fine-tuner predict.py @ 3dd14e3 and
replicate/cog-flux's DevLoraPredictor, whose signatures are in vendor/replicate/cog/):

- The base model draws a "neutral" picture from the prompt and the seed only: a gradient whose hue
  comes from the whole prompt, one disc per prompt word (the word's own hue), placed by the seed.
- A LoRA blends in a crop of one of its training's own photos (the trainer kept small thumbnails of
  the dataset, `SandboxTraining.photos`); the seed picks the photo and the crop, the scale how much
  of it shows (0: none at all, so the output is the base model's; more: more, monotonically). A
  second LoRA (`extra_lora`) is blended in the same way by its own scale.
- image-to-image starts from the input image: prompt_strength 0 gives the input, 1 the pure
  generation. Inpainting keeps the input where the mask is black and repaints where it is white
  (the predictor's own description of `mask`), the mask binarised at half grey like diffusers'
  mask processor.
- A band across the top says SANDBOX (and the seed, the LoRA scales and the prompt).

Deterministic: the picture is a function of the prompt, seed, output index, size, LoRAs and input
images, never of the prediction id, so the same inputs give byte-identical files. Fast: a few
small resizes and blends at <= 512 px, no filters.
"""

from __future__ import annotations

import base64
import colorsys
import hashlib
import io
import json
import math
import random
import re
import struct
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import PurePosixPath

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

LONG_SIDE = 512  # the sandbox draws at half the real 1 megapixel
BAND_HEIGHT = 18
THUMBNAIL_SIDE = 192
MAX_PHOTOS = 8
FORMATS = {"jpg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png"), "webp": ("WEBP", "image/webp")}


class InputImageError(Exception):
    """An input image the predictor cannot open; str() is the prediction's error, as Cog reports it."""


@dataclass(frozen=True)
class Lora:
    """A LoRA as the sandbox can draw it: its training's photos (base64 JPEG) and the scale asked."""

    key: str  # the training id: it picks the photo and the crop together with the seed
    photos: tuple[str, ...]
    scale: float


def lora_weight(scale: float) -> float:
    """How much of the LoRA's photos shows: 0 at scale 0 (and below: the sandbox cannot subtract a
    dataset), rising strictly with the scale towards 0.9, so the base always shows a little."""
    return 0.0 if scale <= 0 else 0.9 * (1 - math.exp(-1.2 * scale))


# --- Dataset photos, kept by the trainer ---------------------------------------------------------
def dataset_photos(archive: zipfile.ZipFile, names: list[str]) -> list[str]:
    """Small JPEG thumbnails (base64) of up to MAX_PHOTOS dataset images, in name order; images
    that do not decode are left out (the trainer itself would fail on them later, not here)."""
    photos: list[str] = []
    for name in names:
        if len(photos) >= MAX_PHOTOS:
            break
        try:
            with Image.open(io.BytesIO(archive.read(name))) as picture:
                picture.draft("RGB", (THUMBNAIL_SIDE * 2, THUMBNAIL_SIDE * 2))
                small = picture.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError, zipfile.BadZipFile):
            continue
        small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        out = io.BytesIO()
        small.save(out, format="JPEG", quality=85)
        photos.append(base64.b64encode(out.getvalue()).decode())
    return photos


def safetensors_training(header_start: bytes) -> str:
    """The sandbox training named in a sandbox safetensors file's metadata, or "" (reads the header
    only: 8 bytes of length, then the JSON header)."""
    if len(header_start) < 8:
        return ""
    (length,) = struct.unpack("<Q", header_start[:8])
    try:
        header = json.loads(header_start[8 : 8 + length])
    except (ValueError, UnicodeDecodeError):
        return ""
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return str(metadata.get("sandbox_training", "")) if isinstance(metadata, dict) else ""


# --- Input images --------------------------------------------------------------------------------
def multiple_of_16(n: int) -> int:
    """predict.py's make_multiple_of_16: rounds up."""
    return ((n + 15) // 16) * 16


def fit_size(width: int, height: int) -> tuple[int, int]:
    """The predictor's output size for an input image (each side rounded up to a multiple of 16),
    shrunk to the sandbox's LONG_SIDE when larger."""
    width, height = multiple_of_16(max(1, width)), multiple_of_16(max(1, height))
    if max(width, height) <= LONG_SIDE:
        return width, height
    scale = LONG_SIDE / max(width, height)
    return max(16, round(width * scale / 16) * 16), max(16, round(height * scale / 16) * 16)


def _open(data: bytes, name: str) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded image (JPEGs decoded at a reduced scale when large) and its real size."""
    try:
        picture = Image.open(io.BytesIO(data))
        original = picture.size
        picture.draft("RGB", (LONG_SIDE, LONG_SIDE))
        picture.load()
    except UnidentifiedImageError:
        # PIL's own message for Image.open(path) on the file Cog downloaded the input to.
        raise InputImageError(f"cannot identify image file '/tmp/{name}'") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputImageError(str(exc)) from None
    return picture, original


def input_image_load(data: bytes, *, name: str, size: tuple[int, int] | None = None) -> Image.Image:
    """The input image as the predictor uses it: RGB, resized to its own size rounded to 16 (or to
    `size`, the image's, for a mask). Raises InputImageError."""
    picture, original = _open(data, name)
    rgb = picture.convert("RGB")
    target = size or fit_size(*original)
    return rgb if rgb.size == target else rgb.resize(target, Image.Resampling.BICUBIC)


def mask_load(data: bytes, *, name: str, size: tuple[int, int]) -> Image.Image:
    """The mask resized to the image (NEAREST, as predict.py does), then binarised: white (>= half
    grey) is repainted, black kept."""
    picture = _open(data, name)[0].convert("L")
    if picture.size != size:
        picture = picture.resize(size, Image.Resampling.NEAREST)
    return picture.point(lambda v: 255 if v >= 128 else 0)


def png_bytes(picture: Image.Image) -> bytes:
    out = io.BytesIO()
    picture.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def picture_load(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as picture:
        picture.load()
        return picture.copy()


# --- Drawing -------------------------------------------------------------------------------------
def _hue(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") / 2**32


def _rgb(hue: float, lightness: float, saturation: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hls_to_rgb(hue % 1.0, lightness, saturation)
    return round(r * 255), round(g * 255), round(b * 255)


def _words(prompt: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", prompt.lower())


def base_picture(*, prompt: str, seed: int, index: int, size: tuple[int, int]) -> Image.Image:
    """The base model's picture: the prompt sets the colours, the seed (and output index) where
    things go. Nothing else enters, so every model without a LoRA draws the same one."""
    width, height = size
    hue = _hue(prompt.strip().lower())
    gradient = Image.new("RGB", (1, 2))
    gradient.putpixel((0, 0), _rgb(hue, 0.75, 0.45))
    gradient.putpixel((0, 1), _rgb(hue + 0.08, 0.3, 0.5))
    picture = gradient.resize(size, Image.Resampling.BILINEAR)
    rng = random.Random(f"sandbox-composition:{seed}:{index}")
    draw = ImageDraw.Draw(picture)
    for word in (_words(prompt) or ["empty"])[:8]:
        radius = rng.uniform(0.08, 0.22) * min(width, height)
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=_rgb(_hue(word), 0.55, 0.7))
    return picture


def _photo_crop(lora: Lora, *, seed: int, index: int, size: tuple[int, int]) -> Image.Image:
    """One of the LoRA's photos, chosen and cropped by the seed, filling `size`."""
    rng = random.Random(f"sandbox-lora:{lora.key}:{seed}:{index}")
    raw = base64.b64decode(lora.photos[rng.randrange(len(lora.photos))])
    photo = picture_load(raw).convert("RGB")
    pw, ph = photo.size
    target = size[0] / size[1]
    # The largest box of the output's aspect ratio inside the photo, zoomed in by the seed.
    box_w, box_h = (pw, pw / target) if pw / ph <= target else (ph * target, ph)
    zoom = rng.uniform(1.0, 1.4)
    box_w, box_h = box_w / zoom, box_h / zoom
    left, top = rng.uniform(0, pw - box_w), rng.uniform(0, ph - box_h)
    return photo.resize(size, Image.Resampling.BILINEAR, box=(left, top, left + box_w, top + box_h))


def generation(
    *, prompt: str, seed: int, index: int, size: tuple[int, int], loras: list[Lora]
) -> tuple[Image.Image, list[Lora]]:
    """Text-to-image: the base picture with the LoRAs' photos blended in; returns the LoRAs used."""
    picture = base_picture(prompt=prompt, seed=seed, index=index, size=size)
    used = [lora for lora in loras if lora.photos and lora_weight(lora.scale) > 0]
    if not used:
        return picture, []
    weights = [lora_weight(lora.scale) for lora in used]
    mixed = _photo_crop(used[0], seed=seed, index=index, size=size)
    for n in range(1, len(used)):
        other = _photo_crop(used[n], seed=seed, index=index, size=size)
        mixed = Image.blend(mixed, other, weights[n] / sum(weights[: n + 1]))
    coverage = 1 - math.prod(1 - w for w in weights)
    return Image.blend(picture, mixed, coverage), used


@cache
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=12)


def _band(picture: Image.Image, *, prompt: str, seed: int, used: list[Lora]) -> None:
    draw = ImageDraw.Draw(picture)
    draw.rectangle([0, 0, picture.width, BAND_HEIGHT - 1], fill=(200, 30, 30))
    parts = ["SANDBOX", f"seed {seed}", *(f"LoRA {lora.scale:g}" for lora in used)]
    text = " · ".join(parts) + " · " + " ".join(prompt.split())
    font = _font()
    while text and draw.textlength(text, font=font) > picture.width - 8:
        text = text[:-2] + "…"
    draw.text((4, 2), text, fill="white", font=font)


def render(
    *,
    prompt: str,
    seed: int,
    index: int,
    size: tuple[int, int],
    loras: list[Lora],
    image: Image.Image | None = None,
    mask: Image.Image | None = None,
    prompt_strength: float = 0.8,
    output_format: str = "webp",
    output_quality: int = 80,
) -> tuple[bytes, str]:
    """The encoded output image and its content type."""
    if image is not None:
        size = image.size
    picture, used = generation(prompt=prompt, seed=seed, index=index, size=size, loras=loras)
    if image is not None:
        strength = max(0.0, min(1.0, float(prompt_strength)))
        picture = Image.blend(image, picture, strength)
        if mask is not None:
            picture = Image.composite(picture, image, mask)
    _band(picture, prompt=prompt, seed=seed, used=used)
    pil_format, content_type = FORMATS[output_format]
    out = io.BytesIO()
    if pil_format == "PNG":
        picture.save(out, format="PNG", compress_level=1)
    else:
        # method=0: the fastest of libwebp's efforts (the same format; JPEG ignores it).
        picture.save(out, format=pil_format, quality=int(output_quality), method=0)
    return out.getvalue(), content_type


def input_name(url: str) -> str:
    """The file name Cog would give the downloaded input (the URL's last segment)."""
    if url.startswith("data:"):
        return "input"
    return PurePosixPath(url.split("?", 1)[0]).name or "input"
