"""The guard for images a person hands us to generate from: an input image or an inpainting mask.

training/imaging.py holds the dataset's photo checks, but generations may not import training (the
layers), so this is the small guard the generate form needs: a byte cap, an allowlist of formats,
a pixel cap checked on the header before anything is decoded (a decompression bomb never expands),
then a full decode. Every refusal is an InputImageError whose message is safe to show.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from PIL import Image, UnidentifiedImageError

INPUT_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}  # Pillow's name → our extension
ACCEPTED = "Use a JPEG, PNG or WebP image."


class InputImageError(Exception):
    """An input image or mask we refuse; the message says why, in the person's words."""


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    extension: str
    width: int
    height: int


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB"


def image_check(data: bytes, *, what: str = "The image") -> CheckedImage:
    """`data` decoded fully from JPEG, PNG or WebP within GENERATION_INPUT_MAX_BYTES/_PIXELS."""
    limit = int(settings.GENERATION_INPUT_MAX_BYTES)
    if not data:
        raise InputImageError(f"{what} is empty. {ACCEPTED}")
    if len(data) > limit:
        raise InputImageError(f"{what} is {_megabytes(len(data))}; the most we take is {_megabytes(limit)}.")
    max_pixels = int(settings.GENERATION_INPUT_MAX_PIXELS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(INPUT_FORMATS))
            if image.width * image.height > max_pixels:
                raise InputImageError(
                    f"{what} is {image.width} × {image.height} pixels; the most we take is "
                    f"{max_pixels / 1_000_000:g} megapixels."
                )
            image.load()
    except InputImageError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
    ):
        raise InputImageError(f"{what} could not be read as an image. {ACCEPTED}") from None
    return CheckedImage(
        data=data,
        extension=INPUT_FORMATS.get(str(image.format), "png"),
        width=image.width,
        height=image.height,
    )


def mask_check(data: bytes, *, size: tuple[int, int]) -> CheckedImage:
    """A mask: a readable image exactly the input image's size (white is repainted, black kept)."""
    mask = image_check(data, what="The mask")
    if (mask.width, mask.height) != size:
        raise InputImageError(
            f"The mask is {mask.width} × {mask.height} pixels but the image is {size[0]} × {size[1]}: "
            "draw the mask over this image again."
        )
    return mask
