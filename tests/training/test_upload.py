"""Uploads through the real view: each kind of bad file gets its own verdict and costs nothing else."""

from __future__ import annotations

import io
from typing import cast

import pytest
from django.core.files.storage import storages
from django.test import Client
from django.urls import reverse
from PIL import Image

from tests.training import images
from tests.training.conftest import post_files
from training.models import DatasetImage

HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF"


def _stored(image: DatasetImage) -> bytes:
    with storages["private"].open(image.file_name, "rb") as handle:
        return handle.read()


# (label, file name, bytes factory, accepted?, words expected in the verdict)
BAD_FILES = [
    (
        "png claiming 20000x20000",
        "huge.png",
        lambda: images.png_claiming(20_000, 20_000),
        False,
        "too many pixels",
    ),
    ("94 KB png of 100 MP", "bomb.png", images.png_bomb, False, "too many pixels"),
    (
        "jpeg cut in half",
        "half.jpg",
        lambda: images.photo(seed=5)[: len(images.photo(seed=5)) // 2],
        False,
        "incomplete",
    ),
    ("zero-byte file", "empty.jpg", lambda: b"", False, "empty"),
    ("html named .jpg", "page.jpg", lambda: HTML, False, "web page"),
    ("svg named .jpg", "drawing.jpg", lambda: SVG, False, "SVG"),
    ("pdf named .jpg", "doc.jpg", lambda: PDF, False, "PDF"),
    ("gif renamed .jpg", "anim.jpg", lambda: images.photo((64, 48), fmt="GIF", mode="P"), False, "GIF"),
    ("bmp renamed .jpg", "old.jpg", lambda: images.photo((64, 48), fmt="BMP"), False, "BMP"),
    ("tiff renamed .jpg", "scan.jpg", lambda: images.photo((64, 48), fmt="TIFF"), False, "TIFF"),
    ("animated webp", "moving.webp", images.animated_webp, False, "Animated"),
    ("cmyk jpeg", "print.jpg", lambda: images.photo(seed=6, mode="CMYK"), True, "Added"),
    ("16-bit png", "deep.png", images.png_16bit, True, "Added"),
    ("heic", "phone.heic", lambda: images.photo(seed=7, fmt="HEIF", quality=80), True, "Added"),
    ("webp", "web.webp", lambda: images.photo(seed=8, fmt="WEBP"), True, "Added"),
    ("transparent png", "cutout.png", lambda: images.photo(seed=9, fmt="PNG", mode="RGBA"), True, "Added"),
]


@pytest.mark.parametrize(
    ("label", "name", "make", "accepted", "expected"), BAD_FILES, ids=[c[0] for c in BAD_FILES]
)
def test_each_kind_of_file_gets_its_own_verdict_and_the_good_one_is_kept(
    alice_client, training, label, name, make, accepted, expected
):
    response = post_files(alice_client, training, [(name, make()), ("good.jpg", images.photo(seed=1))])

    assert response.status_code == 200
    verdict, good = response.json()["files"]
    assert verdict["ok"] is accepted, verdict
    assert expected.lower() in verdict["message"].lower(), verdict
    assert good == {**good, "name": "good.jpg", "ok": True}
    assert training.dataset.images.count() == (2 if accepted else 1)


def test_converted_images_are_plain_rgb_jpegs(alice_client, training):
    post_files(
        alice_client,
        training,
        [("print.jpg", images.photo(seed=6, mode="CMYK")), ("deep.png", images.png_16bit())],
    )

    for image in training.dataset.images.all():
        stored = Image.open(io.BytesIO(_stored(image)))
        assert (stored.format, stored.mode) == ("JPEG", "RGB")
    deep = training.dataset.images.get(original_name="deep.png")
    # A 16-bit gradient must come out as a gradient, not clipped to white.
    low, high = cast("tuple[int, int]", Image.open(io.BytesIO(_stored(deep))).convert("L").getextrema())
    assert low < 30 and high > 220


def test_a_jpeg_with_a_zip_appended_is_stored_without_it(alice_client, training):
    tail = images.make_zip({"secret.txt": b"hidden payload"})
    response = post_files(alice_client, training, [("polyglot.jpg", images.photo(seed=3) + tail)])

    assert response.json()["files"][0]["ok"] is True
    stored = _stored(training.dataset.images.get())
    assert b"PK\x03\x04" not in stored and b"hidden payload" not in stored
    assert stored.endswith(b"\xff\xd9")


def test_exif_orientation_is_applied_and_gps_is_stripped(alice_client, training):
    post_files(alice_client, training, [("phone.jpg", images.jpeg_with_exif())])

    image = training.dataset.images.get()
    data = _stored(image)
    stored = Image.open(io.BytesIO(data))
    assert stored.size == (300, 600)  # landscape pixels, displayed portrait
    assert (image.original_width, image.original_height) == (300, 600)
    # Orientation 6 turns the picture clockwise: the red left half ends up on top.
    top, bottom = (
        cast("tuple[int, ...]", stored.getpixel((150, 50))),
        cast("tuple[int, ...]", stored.getpixel((150, 550))),
    )
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
    assert not stored.getexif() and "exif" not in stored.info
    assert b"PhoneMaker" not in data and b"GPS" not in data


def test_a_large_photo_is_resized_to_the_long_side(alice_client, training, settings):
    settings.DATASET_LONG_SIDE = 512
    post_files(alice_client, training, [("big.jpg", images.photo((2000, 1500), seed=4))])

    image = training.dataset.images.get()
    assert (image.width, image.height) == (512, 384)
    assert (image.original_width, image.original_height) == (2000, 1500)


@pytest.mark.parametrize(
    ("raw_name", "shown"),
    [
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("evil\x00name.jpg", None),
        ("a" * 300 + ".jpg", None),
    ],
    ids=["dot-dot-slash", "nul-byte", "300-characters"],
)
def test_hostile_file_names_never_reach_storage(alice_client, training, raw_name, shown):
    response = post_files(
        alice_client, training, [(raw_name, images.photo(seed=11)), ("good.jpg", images.photo(seed=12))]
    )

    assert [v["ok"] for v in response.json()["files"]] == [True, True]
    image = training.dataset.images.order_by("pk").first()
    assert image.file_name.startswith(f"datasets/{training.pk}/") and image.file_name.endswith(".jpg")
    assert raw_name[:5] not in image.file_name
    assert "/" not in image.original_name and "\x00" not in image.original_name
    assert len(image.original_name) <= 100
    if shown:
        assert image.original_name == shown


def test_too_many_files_in_one_request_gets_a_clear_message(alice, training, settings):
    # The real browser path: CSRF enforced, token in the header, as the upload script sends it.
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get(reverse("training:dataset", args=[training.pk]))
    token = client.cookies["csrftoken"].value
    count = settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1
    files = [(f"f{i}.jpg", b"x") for i in range(count)]

    response = post_files(client, training, files, HTTP_X_CSRFTOKEN=token)

    assert response.status_code == 400
    assert "Too many files" in response.json()["error"]
    assert training.dataset.images.count() == 0


def test_the_upload_still_checks_csrf(alice, training):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = post_files(client, training, [("a.jpg", images.photo(seed=1))])

    assert response.status_code == 403
    assert training.dataset.images.count() == 0


def test_a_file_over_the_size_limit_is_refused_and_the_rest_kept(alice_client, training, settings):
    big = images.photo((1200, 900), seed=2)
    settings.DATASET_MAX_FILE_BYTES = len(big) - 1

    response = post_files(
        alice_client, training, [("big.jpg", big), ("small.jpg", images.photo((400, 300), seed=3))]
    )

    big_verdict, small_verdict = response.json()["files"]
    assert not big_verdict["ok"] and "Too large" in big_verdict["message"]
    assert small_verdict["ok"]


def test_the_dataset_stops_at_the_maximum(alice_client, training, settings):
    settings.DATASET_MAX_IMAGES = 2

    response = post_files(
        alice_client, training, [(f"{i}.jpg", images.photo((400, 300), seed=20 + i)) for i in range(3)]
    )

    assert [v["ok"] for v in response.json()["files"]] == [True, True, False]
    assert "already has 2 photos" in response.json()["files"][2]["message"]


def test_an_exact_duplicate_is_refused_naming_the_earlier_file(alice_client, training):
    data = images.photo(seed=30)
    post_files(alice_client, training, [("first.jpg", data)])

    # Same pixels, different bytes (re-saved as PNG): still the same picture.
    again = io.BytesIO()
    Image.open(io.BytesIO(data)).save(again, "PNG")
    response = post_files(alice_client, training, [("copy.jpg", data), ("copy.png", again.getvalue())])

    first, second = response.json()["files"]
    assert not first["ok"] and "first.jpg" in first["message"]
    assert not second["ok"] and "first.jpg" in second["message"]
    assert training.dataset.images.count() == 1


def test_a_near_duplicate_is_accepted_with_a_warning(alice_client, training):
    data = images.photo((800, 600), seed=31)
    shifted = io.BytesIO()
    Image.open(io.BytesIO(data)).point(lambda v: min(255, v + 6)).save(shifted, "JPEG", quality=80)

    response = post_files(alice_client, training, [("a.jpg", data), ("b.jpg", shifted.getvalue())])

    second = response.json()["files"][1]
    assert second["ok"] and any("Nearly the same" in w and "a.jpg" in w for w in second["warnings"])


def test_small_and_dark_photos_are_flagged(alice_client, training):
    dark = io.BytesIO()
    Image.effect_noise((700, 700), 8).point(lambda v: v // 8).convert("RGB").save(dark, "JPEG")
    response = post_files(
        alice_client,
        training,
        [("tiny.jpg", images.photo((400, 300), seed=40)), ("night.jpg", dark.getvalue())],
    )

    tiny, night = response.json()["files"]
    assert any("short side is 300" in w for w in tiny["warnings"])
    assert any("dark" in w for w in night["warnings"])


# --- ZIP uploads ----------------------------------------------------------------------------------
def test_a_zip_of_photos_with_captions_is_added(alice_client, training):
    archive = images.make_zip(
        {
            "set/one.jpg": images.photo(seed=50),
            "set/one.txt": b"[trigger] smiling at the beach",
            "set/two.png": images.photo(seed=51, fmt="PNG"),
            "__MACOSX/set/._one.jpg": b"junk",
        }
    )

    response = post_files(alice_client, training, [("photos.zip", archive)])

    verdicts = response.json()["files"]
    assert [v["ok"] for v in verdicts] == [True, True]
    captions = dict(training.dataset.images.values_list("original_name", "caption"))
    assert captions["photos.zip › one.jpg"] == "[trigger] smiling at the beach"
    assert captions["photos.zip › two.png"] == "a photo of [trigger]"  # the dataset's template


def test_zip_members_with_unsafe_paths_are_refused(alice_client, training):
    archive = images.make_zip(
        {
            "../../evil.jpg": images.photo(seed=52),
            "/abs.jpg": images.photo(seed=54),
            "ok.jpg": images.photo(seed=53),
        }
    )

    verdicts = post_files(alice_client, training, [("x.zip", archive)]).json()["files"]

    assert sorted((v["ok"], "unsafe" in v["message"]) for v in verdicts) == [
        (False, True),
        (False, True),
        (True, False),
    ]
    assert training.dataset.images.count() == 1


def test_a_zip_bomb_is_refused_from_its_declared_size(alice_client, training, settings):
    settings.DATASET_MAX_TOTAL_BYTES = 20 * 1024 * 1024
    bomb = images.make_zip({"a.jpg": b"\x00" * (25 * 1024 * 1024)})
    assert len(bomb) < 100_000

    response = post_files(alice_client, training, [("bomb.zip", bomb), ("good.jpg", images.photo(seed=55))])

    bomb_verdict, good = response.json()["files"]
    assert not bomb_verdict["ok"] and "expands to" in bomb_verdict["message"]
    assert good["ok"]


def test_a_zip_member_larger_than_declared_is_refused(alice_client, training):
    response = post_files(
        alice_client,
        training,
        [("liar.zip", images.zip_with_lying_size()), ("good.jpg", images.photo(seed=56))],
    )

    liar, good = response.json()["files"]
    assert not liar["ok"] and "damaged or larger" in liar["message"]
    assert good["ok"]


def test_a_zip_of_non_images_adds_nothing(alice_client, training):
    archive = images.make_zip(
        {"readme.md": b"# hi", "tool.exe": b"MZ\x90\x00", "inner.zip": images.make_zip({"a": b"b"})}
    )

    verdicts = post_files(alice_client, training, [("stuff.zip", archive)]).json()["files"]

    assert len(verdicts) == 3 and not any(v["ok"] for v in verdicts)
    assert any("ZIP archive" in v["message"] for v in verdicts)
    assert training.dataset.images.count() == 0


def test_a_damaged_zip_is_refused(alice_client, training):
    archive = images.make_zip({"a.jpg": images.photo(seed=57)})
    verdicts = post_files(alice_client, training, [("cut.zip", archive[:100])]).json()["files"]

    assert not verdicts[0]["ok"] and "damaged" in verdicts[0]["message"]


def test_without_javascript_the_page_shows_the_verdicts(alice_client, training):
    url = reverse("training:dataset_upload", args=[training.pk])
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = alice_client.post(
        url,
        {
            "files": [
                SimpleUploadedFile("page.jpg", HTML),
                SimpleUploadedFile("ok.jpg", images.photo(seed=58)),
            ]
        },
    )

    assert response.status_code == 200
    body = response.content.decode()
    assert "web page (HTML)" in body and "Added" in body and "1 photo" in body
