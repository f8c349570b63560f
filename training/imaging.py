"""The per-file image pipeline: decode safely, normalise, measure.

Every upload goes through `image_prepare`: a format allowlist, a pixel cap checked before any
decoding, a full decode (so truncated files fail here, not in the trainer), EXIF orientation
applied, all metadata dropped, RGB on white, the long side resized to DATASET_LONG_SIDE, and a
JPEG at quality 95. Only that JPEG is ever stored.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from typing import BinaryIO

import pillow_heif
from PIL import Image, ImageFilter, ImageStat

pillow_heif.register_heif_opener()

ALLOWED_FORMATS = ["JPEG", "PNG", "WEBP", "HEIF"]
SMALL_SIDE = 512
THUMB_SIDE = 320
DARK_MEAN = 35  # mean luminance (0-255) under which a photo is flagged as very dark
BLUR_EDGE_STDDEV = 6.0  # edge-filter spread under which a photo is flagged as probably blurry

# EXIF Orientation -> the transpose that shows the picture upright (as ImageOps.exif_transpose).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Signatures of things people rename to .jpg, so the refusal can say what the file really is.
_SNIFF: list[tuple[bytes, str]] = [
    (b"GIF8", "a GIF"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
]


class ImageRejected(Exception):
    """The file is not an image we accept; the message is safe to show."""


@dataclass
class PreparedImage:
    jpeg: bytes
    thumbnail: bytes
    width: int
    height: int
    original_width: int
    original_height: int
    pixel_sha256: str
    dhash: str
    warnings: list[str] = field(default_factory=list)


def _describe_unknown(head: bytes) -> str:
    for magic, what in _SNIFF:
        if head.startswith(magic):
            return f"This file is {what}, not a photo. Use JPEG, PNG, WebP or HEIC."
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<svg", b"<?xml")) or b"<svg" in text[:512]:
        return "This file is an SVG drawing, not a photo. Use JPEG, PNG, WebP or HEIC."
    if text.startswith((b"<!doctype", b"<html", b"<")):
        return "This file is a web page (HTML), not a photo. Use JPEG, PNG, WebP or HEIC."
    return "This file is not a JPEG, PNG, WebP or HEIC image."


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB, with transparent areas on white and 16-bit or float images scaled down to 8 bits."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # Pillow's plain convert clips 16-bit values at 255; scale the range instead.
        scale = 1 / 256 if im.mode.startswith("I;16") or im.getextrema()[1] > 255 else 1
        return im.convert("I").point(lambda v: v * scale).convert("L").convert("RGB")
    if im.mode == "F":
        return im.point(lambda v: v * 255 if im.getextrema()[1] <= 1.0 else v).convert("L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


def dhash_hex(im: Image.Image) -> str:
    """A 64-bit difference hash: near-identical pictures differ in only a few bits."""
    small = im.convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    px = small.tobytes()
    bits = 0
    for row in range(8):
        for col in range(8):
            bits = (bits << 1) | (px[row * 9 + col] > px[row * 9 + col + 1])
    return f"{bits:016x}"


def dhash_distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _quality_warnings(im: Image.Image, original_size: tuple[int, int]) -> list[str]:
    found: list[str] = []
    if min(original_size) < SMALL_SIDE:
        found.append(f"Small: the short side is {min(original_size)} px (under {SMALL_SIDE}).")
    # Measured on a 256-pixel grey copy: a few milliseconds whatever the upload size.
    grey = im.convert("L")
    grey.thumbnail((256, 256))
    if ImageStat.Stat(grey).mean[0] < DARK_MEAN:
        found.append("Very dark.")
    elif ImageStat.Stat(grey.filter(ImageFilter.FIND_EDGES)).stddev[0] < BLUR_EDGE_STDDEV:
        found.append("Probably blurry.")
    return found


def image_prepare(source: BinaryIO, *, long_side: int, max_pixels: int) -> PreparedImage:
    """Decode, check and normalise one uploaded file.

    Raises ImageRejected with a message for the person uploading. Nothing is written anywhere.
    """
    head = source.read(1024)
    if not head:
        raise ImageRejected("This file is empty (0 bytes).")
    source.seek(0)
    with warnings.catch_warnings():
        # A decompression bomb must fail, not just warn.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(source, formats=ALLOWED_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageRejected("This image has far too many pixels to be a photo.")
        except (Image.UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise ImageRejected(_describe_unknown(head))
        try:
            return _prepare_opened(im, long_side=long_side, max_pixels=max_pixels)
        finally:
            im.close()


def _prepare_opened(im: Image.Image, *, long_side: int, max_pixels: int) -> PreparedImage:
    width, height = im.size
    if width * height > max_pixels:
        raise ImageRejected(
            f"This image is {width}×{height} pixels; the most we accept is "
            f"{max_pixels / 1_000_000:.0f} megapixels."
        )
    if width < 1 or height < 1:
        raise ImageRejected("This image has no pixels.")
    if getattr(im, "is_animated", False) or getattr(im, "n_frames", 1) > 1:
        raise ImageRejected("Animated images are not accepted: use a still photo.")
    orientation = im.getexif().get(0x0112)
    if im.format == "JPEG":
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale. Asking for the aspect-correct target (not
        # a square) lets a 6000×4000 photo decode at 1/4 instead of 1/2: the long side still
        # stays at or above long_side, so nothing is ever upscaled.
        scale = long_side / max(width, height)
        if scale < 1:
            im.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
    try:
        im.load()
    except Image.DecompressionBombWarning:
        raise ImageRejected("This image has far too many pixels to be a photo.")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        message = "This image is damaged or incomplete"
        if "truncated" in str(exc):
            message = "This image is incomplete (the file is cut short)"
        raise ImageRejected(f"{message}: upload the original again.")

    out = _to_rgb(im)
    if max(out.size) > long_side:
        # Bicubic with a box pre-shrink (Pillow's thumbnail defaults): a third of Lanczos' cost
        # and no visible difference for a downscale the trainer resizes again anyway.
        out.thumbnail((long_side, long_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
    if orientation in _ORIENTATION:
        out = out.transpose(_ORIENTATION[orientation])
        if orientation in (5, 6, 7, 8):
            width, height = height, width

    buffer = io.BytesIO()
    # No exif= and no icc_profile=: everything the camera wrote (GPS included) stays behind.
    out.save(buffer, "JPEG", quality=95, optimize=False)
    thumb = out.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR)
    thumb_buffer = io.BytesIO()
    thumb.save(thumb_buffer, "JPEG", quality=80)
    return PreparedImage(
        jpeg=buffer.getvalue(),
        thumbnail=thumb_buffer.getvalue(),
        width=out.width,
        height=out.height,
        original_width=width,
        original_height=height,
        pixel_sha256=hashlib.sha256(out.tobytes()).hexdigest(),
        dhash=dhash_hex(thumb),
        warnings=_quality_warnings(thumb, (width, height)),
    )
