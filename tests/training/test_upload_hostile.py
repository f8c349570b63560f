"""Issue 12 by class, with files we build ourselves (the public corpus is tests/training/test_corpus.py).

Each class: metadata and decoder errors never escape, one file never costs another, decoding has a
budget the operating system enforces, cheap refusals come first, ZIPs are capped, captions are
decoded by their BOM, stored files carry no metadata, colours are converted, useless shapes are
refused, and every message says the limit.
"""

from __future__ import annotations

import io
import struct
import time
import zipfile

import pytest
from PIL import Image

from fluxsite.integrations import storage
from tests.training import images
from tests.training.conftest import post_files
from training.models import DatasetImage

pytestmark = pytest.mark.django_db

# JPEG markers a metadata-free baseline file may hold: SOI, APP0 (JFIF), DQT, SOF0, DHT, SOS, EOI, DRI.
CLEAN_MARKERS = {0xD8, 0xE0, 0xDB, 0xC0, 0xC4, 0xDA, 0xD9, 0xDD}


def jpeg_markers(data: bytes) -> list[int]:
    """Every marker up to the first scan, then the scan's end (entropy data is skipped)."""
    assert data[:2] == b"\xff\xd8"
    found, pos = [0xD8], 2
    while pos < len(data):
        assert data[pos] == 0xFF, f"no marker at {pos}"
        marker = data[pos + 1]
        found.append(marker)
        if marker == 0xD9:
            break
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        pos += 2 + length
        if marker == 0xDA:  # skip entropy-coded data to the next real marker
            while not (data[pos] == 0xFF and data[pos + 1] not in (0x00, *range(0xD0, 0xD8))):
                pos += 1
    return found


def stored(image: DatasetImage) -> tuple[bytes, bytes]:
    read = lambda name: b"".join(storage.file_iter(alias=storage.PRIVATE, name=name))  # noqa: E731
    return read(image.file_name), read(image.thumbnail_name)


def upload(client, training, name: str, data: bytes, good: bytes | None = None):
    files = [(name, data)] + ([("good.jpg", good)] if good is not None else [])
    response = post_files(client, training, files)
    assert response.status_code == 200, response.content[:500]
    return response.json()["files"]


def with_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """Insert one APPn/COM segment right after SOI."""
    return jpeg[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


# --- 1. Broken metadata on good pixels: the photo is kept, without the metadata -----------------------
BROKEN_METADATA = [
    (
        "exif header then garbage",
        lambda: with_segment(images.photo(seed=50), 0xE1, b"Exif\x00\x00" + b"\xde\xad" * 40),
    ),
    (
        "exif with an IFD offset past the end",
        lambda: with_segment(
            images.photo(seed=51), 0xE1, b"Exif\x00\x00II*\x00" + struct.pack("<I", 0x7FFFFFF0)
        ),
    ),
    (
        "exif with a huge entry count",
        lambda: with_segment(
            images.photo(seed=52), 0xE1, b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x00" * 30
        ),
    ),
    (
        "icc profile that is not one",
        lambda: with_segment(images.photo(seed=53), 0xE2, b"ICC_PROFILE\x00\x01\x01" + b"not a profile" * 10),
    ),
]


@pytest.mark.parametrize(("label", "make"), BROKEN_METADATA, ids=[c[0] for c in BROKEN_METADATA])
def test_broken_metadata_drops_the_metadata_and_keeps_the_photo(alice_client, training, label, make):
    verdict, good = upload(alice_client, training, "meta.jpg", make(), images.photo(seed=1))
    assert verdict["ok"], verdict
    assert good["ok"]


def test_a_png_with_a_broken_exif_chunk_is_kept(alice_client, training):
    png = images.photo(seed=54, fmt="PNG")
    chunk = b"eXIf" + b"MM\x00*\x00\x00\x00\x08\xff\xff\x00"
    import zlib

    body = struct.pack(">I", len(chunk) - 4) + chunk + struct.pack(">I", zlib.crc32(chunk))
    broken = png[:33] + body + png[33:]  # after IHDR
    (verdict,) = upload(alice_client, training, "meta.png", broken)
    assert verdict["ok"], verdict


# --- 2. One file's failure never costs the others, and leaves nothing behind ----------------------
def test_a_storage_failure_on_one_file_keeps_the_others_and_answers_200(alice_client, training, monkeypatch):
    """Our storage failing is not something the sandbox produces, so it is patched for this test."""
    real = storage.file_save
    calls = {"n": 0}

    def flaky(*, alias, name, content):
        calls["n"] += 1
        if calls["n"] == 3:  # the second photo's image file
            raise OSError("disk full")
        return real(alias=alias, name=name, content=content)

    monkeypatch.setattr(storage, "file_save", flaky)
    verdicts = upload(alice_client, training, "a.jpg", images.photo(seed=60), images.photo(seed=61))
    verdicts += upload(alice_client, training, "c.jpg", images.photo(seed=62))
    assert [v["ok"] for v in verdicts] == [True, False, True]
    assert "something went wrong on our side" in verdicts[1]["message"]
    assert training.dataset.images.count() == 2


def test_files_written_before_a_failed_insert_are_deleted(alice_client, training, monkeypatch, settings):
    from pathlib import Path

    def refuse(**kwargs):
        raise RuntimeError("insert failed")

    monkeypatch.setattr(DatasetImage.objects, "create", refuse)
    (verdict,) = upload(alice_client, training, "a.jpg", images.photo(seed=63))
    assert not verdict["ok"]
    root = Path(settings.STORAGES["private"]["OPTIONS"]["location"])
    assert not [p for p in root.rglob("*") if p.is_file()], "orphaned files"


def test_a_zip_member_that_fails_keeps_the_other_members(alice_client, training, monkeypatch):
    from training.services import datasets as services

    real = services._add_image

    def flaky(dataset, data, name, **kwargs):
        if "boom" in name:
            raise ValueError("a bug")
        return real(dataset, data, name, **kwargs)

    monkeypatch.setattr(services, "_add_image", flaky)
    archive = images.make_zip(
        {"a.jpg": images.photo(seed=64), "boom.jpg": images.photo(seed=65), "c.jpg": images.photo(seed=66)}
    )
    verdicts = upload(alice_client, training, "set.zip", archive)
    assert [v["ok"] for v in verdicts] == [True, False, True]


# --- 3. Decoding has a budget, and cheap refusals come first ---------------------------------------
def progressive_with_repeated_scans(repeat: int) -> bytes:
    """A progressive JPEG whose last scan is repeated: each copy costs the decoder a full pass."""
    buffer = io.BytesIO()
    Image.effect_noise((640, 480), 40).convert("RGB").save(buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    last = data.rindex(b"\xff\xda")
    scan = data[last:-2]
    return data[:last] + scan * repeat + data[-2:]


def test_a_progressive_jpeg_with_hundreds_of_scans_is_refused_unread(alice_client, training):
    started = time.monotonic()
    (verdict,) = upload(alice_client, training, "scans.jpg", progressive_with_repeated_scans(400))
    assert time.monotonic() - started < 3
    assert not verdict["ok"] and "progressive passes" in verdict["message"] and "64" in verdict["message"]


def test_a_normal_progressive_jpeg_is_kept(alice_client, training):
    buffer = io.BytesIO()
    Image.effect_noise((800, 600), 40).convert("RGB").save(buffer, "JPEG", progressive=True, quality=90)
    (verdict,) = upload(alice_client, training, "prog.jpg", buffer.getvalue())
    assert verdict["ok"], verdict


def png_of(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, (200, 100, 50, 255)[: len(mode)]).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("size", "words"),
    [
        ((1, 1), "short side is under 256 px"),
        ((100_000, 1), "short side is under 256 px"),
        ((1, 40_000_000), "short side is under 256 px"),
        ((4000, 900), "the most we accept is 4:1"),
        ((255, 800), "short side is under 256 px"),
    ],
)
def test_useless_shapes_are_refused_with_the_limit(alice_client, training, size, words):
    data = png_of(size, "L")  # made before the clock starts: a 1 x 40,000,000 PNG takes seconds to write
    started = time.monotonic()
    (verdict,) = upload(alice_client, training, "shape.png", data)
    assert time.monotonic() - started < 5
    assert not verdict["ok"] and words in verdict["message"], verdict


@pytest.mark.parametrize("size", [(256, 1024), (1024, 256), (256, 256)])
def test_shapes_at_the_limits_are_kept(alice_client, training, size):
    image = Image.effect_noise(size, 60).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    (verdict,) = upload(alice_client, training, "edge.jpg", buffer.getvalue())
    assert verdict["ok"], verdict


def test_a_decode_over_the_memory_budget_is_refused_and_the_worker_lives(alice_client, training, settings):
    """A 36 MP RGBA PNG needs about 600 MB decoded; the child gets 300 MB here and is refused by the OS."""
    settings.DATASET_DECODE_MAX_MEMORY_MB = 300
    started = time.monotonic()
    verdict, good = upload(
        alice_client, training, "huge.png", png_of((6000, 6000), "RGBA"), images.photo(seed=70)
    )
    assert time.monotonic() - started < 20
    assert not verdict["ok"] and "more than 300 MB of memory" in verdict["message"], verdict
    assert good["ok"]


def test_the_same_file_is_never_decoded_twice(alice_client, training, monkeypatch):
    from training.services import datasets as services

    data = images.photo(seed=71)
    upload(alice_client, training, "a.jpg", data)
    decoded = []
    real = services.image_prepare_budgeted

    def counting(data, **kwargs):
        decoded.append(1)
        return real(data, **kwargs)

    monkeypatch.setattr(services, "image_prepare_budgeted", counting)
    (verdict,) = upload(alice_client, training, "again.jpg", data)
    assert not verdict["ok"] and "Same file as “a.jpg”" in verdict["message"] and not decoded


def test_a_decode_over_the_wall_time_is_refused(alice_client, training, settings):
    settings.DATASET_DECODE_MAX_WALL_SECONDS = 0.001
    (verdict,) = upload(alice_client, training, "slow.jpg", images.photo((4000, 3000), seed=72))
    assert not verdict["ok"] and "takes too long to decode" in verdict["message"], verdict


# --- ZIPs: capped before any member is read -----------------------------------------------------------
def test_a_zip_with_thousands_of_members_is_refused_before_reading(alice_client, training, settings):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i in range(10_000):
            archive.writestr(f"{i}.txt", b"")
    started = time.monotonic()
    (verdict,) = upload(alice_client, training, "many.zip", buffer.getvalue())
    assert time.monotonic() - started < 3
    assert not verdict["ok"] and "10,000 files" in verdict["message"]
    assert f"{settings.DATASET_ZIP_MAX_MEMBERS:,}" in verdict["message"]


def test_a_zip_of_copies_of_one_large_photo_decodes_it_once(alice_client, training, monkeypatch):
    from training.services import datasets as services

    big = images.photo((4000, 3000), seed=73)
    decoded = []
    real = services.image_prepare_budgeted

    def counting(data, **kwargs):
        decoded.append(1)
        return real(data, **kwargs)

    monkeypatch.setattr(services, "image_prepare_budgeted", counting)
    archive = images.make_zip(
        {f"copy{i}.jpg": big for i in range(5)}, compression=zipfile.ZIP_STORED
    )  # 23 MB: under the per-file cap
    verdicts = upload(alice_client, training, "copies.zip", archive)
    assert [v["ok"] for v in verdicts].count(True) == 1 and len(decoded) == 1
    assert all("Same file as" in v["message"] for v in verdicts[1:])


def test_caption_files_over_their_budget_are_skipped_with_a_message(alice_client, training, settings):
    settings.DATASET_ZIP_MAX_CAPTION_BYTES = 3000
    members = {
        "a.jpg": images.photo(seed=74),
        "a.txt": b"x" * 2500,
        "b.jpg": images.photo(seed=75),
        "b.txt": b"y" * 2500,
    }
    verdicts = upload(alice_client, training, "caps.zip", images.make_zip(members))
    skipped = [v for v in verdicts if "Caption file skipped" in v["message"]]
    assert len(skipped) == 1 and "KB" in skipped[0]["message"]
    assert sum(v["ok"] for v in verdicts) == 2


def test_reading_a_zip_stops_when_the_dataset_is_full(alice_client, training, settings):
    settings.DATASET_MAX_IMAGES = 2
    archive = images.make_zip({f"{i}.jpg": images.photo(seed=80 + i) for i in range(4)})
    verdicts = upload(alice_client, training, "full.zip", archive)
    assert [v["ok"] for v in verdicts] == [True, True, False, False]
    assert all("already has 2 photos" in v["message"] for v in verdicts[2:])


# --- 4. Captions by BOM, no control characters, names that fit their column ------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a photo of [trigger]".encode("utf-16"), "a photo of [trigger]"),  # Notepad: UTF-16 LE with BOM
        ("\ufeffa photo, café".encode(), "a photo, café"),  # UTF-8 with BOM
        ("a photo".encode("utf-16-le"), "a photo"),  # UTF-16 without BOM: NULs everywhere
        (b"a\x00photo\x1b[31m\x07 red", "aphoto[31m red"),
        (b"line one\r\nline two\tend", "line one line two end"),
    ],
)
@pytest.mark.postgres
def test_caption_files_are_decoded_by_their_bom_and_stored_on_postgresql(
    alice_client, training, raw, expected
):
    archive = images.make_zip({"p.jpg": images.photo(seed=90), "p.txt": raw})
    (verdict,) = upload(alice_client, training, "caps.zip", archive)
    assert verdict["ok"], verdict
    assert DatasetImage.objects.get().caption == expected


def test_a_caption_over_the_limit_is_cut_with_a_notice(alice_client, training):
    archive = images.make_zip({"p.jpg": images.photo(seed=91), "p.txt": b"word " * 400})
    (verdict,) = upload(alice_client, training, "caps.zip", archive)
    assert verdict["ok"] and any("cut to 1000 characters" in w for w in verdict["warnings"])
    assert len(DatasetImage.objects.get().caption) == 1000


@pytest.mark.postgres
def test_long_zip_and_member_names_fit_their_column_on_postgresql(alice_client, training):
    member = "m" * 150 + ".jpg"
    (verdict,) = upload(
        alice_client, training, "z" * 150 + ".zip", images.make_zip({member: images.photo(seed=92)})
    )
    assert verdict["ok"], verdict
    name = DatasetImage.objects.get().original_name
    assert len(name) <= 120 and " › " in name and name.endswith(".jpg")


# --- 5. Camera MPF files are photos, true animations are not ------------------------------------------
def test_a_jpeg_with_an_embedded_mpf_preview_is_kept_as_its_primary_image(alice_client, training):
    primary = Image.effect_noise((1200, 900), 50).convert("RGB")
    preview = primary.resize((600, 450))
    buffer = io.BytesIO()
    primary.save(buffer, "MPO", save_all=True, append_images=[preview], quality=90)
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "MPO"
    (verdict,) = upload(alice_client, training, "camera.jpg", buffer.getvalue())
    assert verdict["ok"], verdict
    image = DatasetImage.objects.get()
    assert (image.original_width, image.original_height) == (1200, 900)


# --- 6. Stored files carry no metadata at all -----------------------------------------------------------
def test_stored_photos_and_thumbnails_carry_no_metadata(alice_client, training):
    base = images.jpeg_with_exif(seed=3)
    loud = with_segment(base, 0xFE, b"<script>alert(1)</script> " + b"my name " * 7000)  # a 57 KB comment
    loud = with_segment(loud, 0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>secret</x:xmpmeta>")
    loud = with_segment(loud, 0xED, b"Photoshop 3.0\x008BIM" + b"\x00" * 20)
    png = io.BytesIO()
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "<b>Anna Smith, 12 Main St</b>")
    info.add_text("Raw profile type exif", "\nexif\n 20\n45786966000049492a00080000000000\n")
    Image.effect_noise((700, 500), 40).convert("RGB").save(png, "PNG", pnginfo=info)
    verdicts = upload(alice_client, training, "loud.jpg", loud, png.getvalue())
    assert all(v["ok"] for v in verdicts), verdicts
    for image in DatasetImage.objects.all():
        for data in stored(image):
            assert set(jpeg_markers(data)) <= CLEAN_MARKERS, (image.original_name, jpeg_markers(data))
            opened = Image.open(io.BytesIO(data))
            assert (
                not opened.info.get("comment") and not opened.info.get("icc_profile") and not opened.getexif()
            )
            assert b"Anna" not in data and b"script" not in data and b"secret" not in data


# --- 9. Messages say the limit ---------------------------------------------------------------------------
def test_the_pixel_cap_message_says_megapixels(alice_client, training, settings):
    settings.DATASET_MAX_PIXELS = 2_000_000
    (verdict,) = upload(alice_client, training, "big.jpg", images.photo((2000, 1500), seed=93))
    assert not verdict["ok"] and "3 megapixels" in verdict["message"] and "2 megapixels" in verdict["message"]


def test_no_refusal_tells_the_person_to_simply_try_again(alice_client, training):
    half = images.photo(seed=94)
    verdicts = upload(alice_client, training, "half.jpg", half[: len(half) // 2])
    verdicts += upload(alice_client, training, "noise.jpg", b"\xff\xd8\xff" + b"\x13" * 5000)
    for verdict in verdicts:
        assert not verdict["ok"] and "try again" not in verdict["message"].lower()


# --- Issue 13, item 4: uploads cannot tie up the server --------------------------------------------------
def test_an_oversize_file_is_stopped_while_it_streams_and_the_rest_kept(
    alice_client, training, settings, monkeypatch
):
    from django.core.files.uploadhandler import TemporaryFileUploadHandler

    settings.DATASET_MAX_FILE_BYTES = 3 * 1024 * 1024
    written = {"bytes": 0}
    real = TemporaryFileUploadHandler.receive_data_chunk

    def counting(self, raw_data, start):  # observes what reaches the disk; behaviour unchanged
        written["bytes"] += len(raw_data)
        return real(self, raw_data, start)

    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", counting)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # every file goes through the temporary-file handler
    big = b"\xff\xd8" + b"\x00" * (20 * 1024 * 1024)
    started = time.monotonic()
    verdicts = upload(alice_client, training, "huge.jpg", big, images.photo(seed=95))
    assert time.monotonic() - started < 10
    big_verdict = next(v for v in verdicts if v["name"] == "huge.jpg")
    assert not big_verdict["ok"] and "Too large: over 3.0 MB" in big_verdict["message"].replace("\xa0", " ")
    assert any(v["ok"] for v in verdicts if v["name"] == "good.jpg")
    assert written["bytes"] < 4 * 1024 * 1024  # the 20 MB file never reached the disk


def test_a_request_declaring_more_than_one_upload_may_carry_is_refused_before_reading(
    alice_client, training, settings
):
    from django.urls import reverse

    settings.DATASET_MAX_TOTAL_BYTES = 10 * 1024 * 1024
    response = alice_client.generic(
        "POST",
        reverse("training:dataset_upload", args=[training.pk]),
        b"x" * 100,
        content_type="multipart/form-data; boundary=zzz",
        headers={"accept": "application/json"},
        CONTENT_LENGTH=str(50 * 1024 * 1024),
    )
    assert response.status_code == 413
    assert "at most 10.0 MB" in response.json()["error"].replace("\xa0", " ")
