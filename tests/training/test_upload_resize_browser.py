"""Issue 15, item 4: photos are resized in the browser before upload, in Debian's Chromium driving
the real dataset page, and the server's verdict and stored picture do not change.

What the server received is recorded by wrapping `services.dataset_upload_files`, the one service
the upload view calls (the live server runs in this process): the bytes as they arrived, and the
verdicts the real function gave them. The reference for each file is the same bytes uploaded at
full size through the Django test client into another training.
"""

from __future__ import annotations

import hashlib
import io

import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image, ImageChops, ImageCms, ImageStat
from playwright.sync_api import expect

from fluxsite.integrations import storage
from tests.conftest import PASSWORD
from tests.training import images
from tests.training.conftest import post_files
from tests.training.test_upload_colour import ICC, SRGB, delta_e, patch_means, swatches
from training import services
from training.models import DatasetImage

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def received(monkeypatch) -> list[dict]:
    """Each file as the upload view got it: name, size, sha256, and the verdict it was given."""
    calls: list[dict] = []
    real = services.dataset_upload_files

    def recording(*, dataset, files):
        arrived = []
        for upload in files:
            upload.seek(0)
            data = upload.read()
            upload.seek(0)
            arrived.append(
                {"name": upload.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            )
        verdicts = real(dataset=dataset, files=files)
        for entry, verdict in zip(arrived, verdicts, strict=True):
            entry["verdict"] = verdict
        calls.extend(arrived)
        return verdicts

    monkeypatch.setattr(services, "dataset_upload_files", recording)
    return calls


def new_training(owner, name: str):
    return services.training_create(owner=owner, name=name, trigger_word="ohwx_anna", subject_kind="subject")


def open_dataset_page(page, live_server, user, job) -> None:
    page.goto(f"{live_server.url}{reverse('accounts:login')}")
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_server.url}{reverse('training:list')}")
    page.goto(f"{live_server.url}{reverse('training:dataset', args=[job.pk])}")


def full_size_verdicts(user, files: list[tuple[str, bytes]]) -> list[dict]:
    """The same files uploaded as they are, through the test client, into a training of their own."""
    client = Client()
    client.force_login(user)
    response = post_files(client, new_training(user, "Reference"), files)
    assert response.status_code == 200, response.content[:300]
    return response.json()["files"]


def stored_image(image_id: int) -> Image.Image:
    image = DatasetImage.objects.get(pk=image_id)
    data = b"".join(storage.file_iter(alias=storage.PRIVATE, name=image.file_name))
    return Image.open(io.BytesIO(data)).convert("RGB")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def without_first_luma_detail_scan(progressive: bytes) -> bytes:
    """A progressive JPEG missing the scan of its luma's first AC coefficients (1-5): Chromium
    still shows it (the other scans hold most of the bytes), the server refuses it as damaged."""
    starts = []
    at = progressive.find(b"\xff\xda")
    while at >= 0:
        starts.append(at)
        at = progressive.find(b"\xff\xda", at + 2)
    for start, end in zip(starts, [*starts[1:], len(progressive) - 2], strict=True):
        count = progressive[start + 4]
        ids = [progressive[start + 5 + 2 * i] for i in range(count)]
        ss, approx = progressive[start + 5 + 2 * count], progressive[start + 7 + 2 * count]
        if ids == [1] and ss == 1 and approx >> 4 == 0:
            return progressive[:start] + progressive[end:]
    raise AssertionError("no luma AC scan starting at coefficient 1")


def test_a_12_megapixel_photo_is_sent_resized_and_stored_as_a_full_size_upload_is(
    live_server, browser_page, alice, tmp_path, received
):
    page = browser_page
    job = new_training(alice, "Anna")
    photo = images.phone_photo((4032, 3024), seed=1501, orientation=6)  # held sideways: stored 768×1024
    (tmp_path / "IMG_1501.jpg").write_bytes(photo)

    open_dataset_page(page, live_server, alice, job)
    page.set_input_files("#upload-input", [str(tmp_path / "IMG_1501.jpg")])
    expect(page.locator('.upload-item[data-state="done"]')).to_have_count(1, timeout=30_000)

    (sent,) = received
    assert sent["name"] == "IMG_1501.jpg"
    assert sent["size"] < len(photo) / 3, (sent["size"], len(photo))
    assert page.locator(".upload-item").get_attribute("data-resized") == "yes"
    expect(page.locator("#upload-bytes")).to_be_visible()
    expect(page.locator("#upload-bytes")).to_contain_text("Sent ")
    expect(page.locator("#upload-bytes")).to_contain_text(" instead of ")

    (reference,) = full_size_verdicts(alice, [("IMG_1501.jpg", photo)])
    assert reference["ok"] and sent["verdict"].ok
    assert sent["verdict"].message == reference["message"]  # "Added (768×1024)."
    assert sent["verdict"].warnings == reference["warnings"]
    resized, full = stored_image(sent["verdict"].image_id), stored_image(reference["image_id"])
    assert resized.size == full.size == (768, 1024)
    difference = sum(ImageStat.Stat(ImageChops.difference(resized, full)).mean) / 3
    print(f"sent {sent['size']:,} of {len(photo):,} bytes; mean difference {difference:.2f}")
    assert difference < 3, difference  # turned the wrong way, it is 40 or more
    assert not page.errors, page.errors


def test_files_the_browser_cannot_or_must_not_resize_are_sent_unchanged_with_todays_verdict(
    live_server, browser_page, alice, tmp_path, received
):
    page = browser_page
    job = new_training(alice, "Anna")
    big = images.phone_photo((2600, 1950), seed=1502)  # over the 2048 px target: each is a candidate
    gif = io.BytesIO()
    Image.open(io.BytesIO(big)).convert("P").save(gif, "GIF")
    buffer = io.BytesIO()
    Image.open(io.BytesIO(big)).save(buffer, "JPEG", quality=90, progressive=True)
    files = {
        # Small, as encoding HEIC is slow: the browser refuses it by its bytes, before its size.
        "phone.heic": images.photo((512, 384), seed=1504, fmt="HEIF", quality=80),
        "cut.jpg": big[: len(big) * 6 // 10],  # Chromium refuses to decode it, as the server does
        "renamed.jpg": gif.getvalue(),  # a GIF by its bytes: Chromium would decode it
        "scan-missing.jpg": without_first_luma_detail_scan(buffer.getvalue()),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    open_dataset_page(page, live_server, alice, job)
    page.set_input_files("#upload-input", [str(tmp_path / name) for name in files])
    expect(page.locator('.upload-item:is([data-state="done"], [data-state="refused"])')).to_have_count(
        len(files), timeout=30_000
    )

    by_name = {entry["name"]: entry for entry in received}
    assert set(by_name) == set(files)
    reference = dict(zip(files, full_size_verdicts(alice, list(files.items())), strict=True))
    for name, data in files.items():
        assert by_name[name]["sha256"] == sha(data), name
        assert by_name[name]["verdict"].ok == reference[name]["ok"], name
        assert by_name[name]["verdict"].message == reference[name]["message"], name
    assert by_name["phone.heic"]["verdict"].ok  # kept as today
    assert not by_name["cut.jpg"]["verdict"].ok and "incomplete" in by_name["cut.jpg"]["verdict"].message
    assert "GIF" in by_name["renamed.jpg"]["verdict"].message
    assert "damaged" in by_name["scan-missing.jpg"]["verdict"].message
    rows = page.locator(".upload-item")
    reasons = {}
    for i in range(rows.count()):
        name = rows.nth(i).locator(".upload-name").text_content().split(" · ")[0]
        reasons[name] = rows.nth(i).get_attribute("data-kept-because")
    assert reasons == {
        "phone.heic": "not a JPEG, PNG or WebP",
        "cut.jpg": "the browser cannot decode it",
        "renamed.jpg": "not a JPEG, PNG or WebP",
        "scan-missing.jpg": "not a baseline JPEG",
    }
    expect(page.locator("#upload-bytes")).to_be_hidden()
    assert not page.errors, page.errors


def test_a_photo_already_within_the_target_is_sent_unchanged(
    live_server, browser_page, alice, tmp_path, received
):
    page = browser_page
    job = new_training(alice, "Anna")
    photo = images.phone_photo((2048, 1536), seed=1505, orientation=6)  # exactly the target: nothing to gain
    (tmp_path / "small.jpg").write_bytes(photo)

    open_dataset_page(page, live_server, alice, job)
    page.set_input_files("#upload-input", [str(tmp_path / "small.jpg")])
    expect(page.locator('.upload-item[data-state="done"]')).to_have_count(1, timeout=20_000)

    (sent,) = received
    assert sent["sha256"] == sha(photo)
    assert page.locator(".upload-item").get_attribute("data-kept-because") == "already small"
    expect(page.locator("#upload-bytes")).to_be_hidden()
    assert not page.errors, page.errors


def test_a_display_p3_photo_resized_in_the_browser_is_stored_in_srgb(
    live_server, browser_page, alice, tmp_path, received
):
    """The canvas converts through the photo's profile (the server sees an sRGB JPEG): the stored
    colours are as close to the sRGB truth as the server's own conversion gets them."""
    page = browser_page
    job = new_training(alice, "Anna")
    icc = (ICC / "DisplayP3-v4.icc").read_bytes()
    truth = swatches().resize((2560, 2560), Image.Resampling.NEAREST)  # over the target: resized
    p3 = ImageCms.profileToProfile(
        truth,
        SRGB,
        ImageCms.ImageCmsProfile(io.BytesIO(icc)),
        outputMode="RGB",
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
    )
    assert p3 is not None
    buffer = io.BytesIO()
    p3.save(buffer, "JPEG", quality=97, icc_profile=icc)
    (tmp_path / "wide.jpg").write_bytes(buffer.getvalue())

    open_dataset_page(page, live_server, alice, job)
    page.set_input_files("#upload-input", [str(tmp_path / "wide.jpg")])
    expect(page.locator('.upload-item[data-state="done"]')).to_have_count(1, timeout=20_000)

    (sent,) = received
    assert page.locator(".upload-item").get_attribute("data-resized") == "yes"
    errors = delta_e(patch_means(stored_image(sent["verdict"].image_id)), patch_means(swatches()))
    assert sum(errors) / len(errors) < 2, errors  # what tests/training/test_upload_colour.py asks
    assert max(errors) < 4, errors
