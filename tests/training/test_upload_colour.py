"""Issue 12, item 7: colours survive. A photo tagged Display P3 (what iPhones write, JPEG and HEIC)
or Adobe RGB is converted to sRGB through its own profile before the profile is dropped.

The profiles are real ones (tests/corpus/icc/, from saucecontrol/Compact-ICC-Profiles; see the
corpus README). The test paints known sRGB colours, converts them into the wide-gamut space with
LittleCMS, embeds the profile, uploads, and measures the stored file against the originals in
CIELAB (CIE76 ΔE). Without the conversion the same upload is ΔE 5-20 off.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
from PIL import Image, ImageCms

from fluxsite.integrations import storage
from tests.training.conftest import post_files
from training.models import DatasetImage

pytestmark = pytest.mark.django_db
ICC = Path(__file__).resolve().parents[1] / "corpus" / "icc"

# Saturated colours (where wide gamuts differ most), skin tones, greys.
COLOURS = [
    (220, 30, 30),
    (30, 180, 40),
    (30, 60, 210),
    (240, 200, 20),
    (200, 40, 200),
    (20, 200, 210),
    (255, 120, 0),
    (224, 172, 140),
    (198, 134, 66),
    (141, 85, 36),
    (255, 219, 172),
    (128, 128, 128),
    (40, 40, 40),
    (235, 235, 235),
    (90, 140, 200),
    (160, 200, 90),
]
SRGB = ImageCms.createProfile("sRGB")
LAB = ImageCms.createProfile("LAB")


def swatches() -> Image.Image:
    """Flat 128 px patches (flat, so JPEG noise stays small), 4 × 4."""
    im = Image.new("RGB", (512, 512))
    for i, colour in enumerate(COLOURS):
        im.paste(colour, ((i % 4) * 128, (i // 4) * 128, (i % 4 + 1) * 128, (i // 4 + 1) * 128))
    return im


def patch_means(im: Image.Image) -> list[tuple[float, float, float]]:
    """The Lab mean of each patch's centre (away from block edges)."""
    lab = ImageCms.profileToProfile(im.convert("RGB").resize((512, 512)), SRGB, LAB, outputMode="LAB")
    means = []
    for i in range(len(COLOURS)):
        x, y = (i % 4) * 128 + 32, (i // 4) * 128 + 32
        box = lab.crop((x, y, x + 64, y + 64))
        # get_flattened_data() from Pillow 12.1 (getdata() is deprecated there); older Pillow has getdata.
        px = list(box.get_flattened_data() if hasattr(box, "get_flattened_data") else box.getdata())
        l_ = sum(p[0] for p in px) / len(px) * 100 / 255
        a = sum((p[1] if p[1] < 128 else p[1] - 256) for p in px) / len(px)
        b = sum((p[2] if p[2] < 128 else p[2] - 256) for p in px) / len(px)
        means.append((l_, a, b))
    return means


def delta_e(one, two) -> list[float]:
    return [math.dist(p, q) for p, q in zip(one, two, strict=True)]


def tagged(profile: str, fmt: str) -> bytes:
    icc = (ICC / profile).read_bytes()
    wide = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    converted = ImageCms.profileToProfile(
        swatches(), SRGB, wide, outputMode="RGB", renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC
    )
    buffer = io.BytesIO()
    converted.save(buffer, fmt, quality=97, icc_profile=icc)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("profile", "fmt"),
    [
        ("DisplayP3-v4.icc", "JPEG"),
        ("DisplayP3-v2-micro.icc", "JPEG"),
        ("AdobeCompat-v4.icc", "JPEG"),
        ("DisplayP3-v4.icc", "HEIF"),
        ("DisplayP3-v4.icc", "PNG"),
    ],
)
def test_a_wide_gamut_photo_is_stored_in_srgb_within_delta_e_2(alice_client, training, profile, fmt):
    data = tagged(profile, fmt)
    # Read as if the profile were ignored: this is what dropping it without converting stores.
    naive = delta_e(patch_means(Image.open(io.BytesIO(data))), patch_means(swatches()))
    assert max(naive) > 5, "the test colours must be ones the profile changes"

    response = post_files(alice_client, training, [(f"wide.{fmt.lower()}", data)])
    assert response.json()["files"][0]["ok"], response.json()
    image = DatasetImage.objects.get()
    stored = b"".join(storage.file_iter(alias=storage.PRIVATE, name=image.file_name))
    assert "icc_profile" not in Image.open(io.BytesIO(stored)).info
    errors = delta_e(patch_means(Image.open(io.BytesIO(stored))), patch_means(swatches()))
    assert sum(errors) / len(errors) < 2, errors
    assert max(errors) < 4, errors


def test_a_cmyk_jpeg_with_no_profile_is_still_kept(alice_client, training):
    buffer = io.BytesIO()
    swatches().convert("CMYK").save(buffer, "JPEG", quality=95)
    response = post_files(alice_client, training, [("print.jpg", buffer.getvalue())])
    assert response.json()["files"][0]["ok"]
