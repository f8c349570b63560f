"""A person trains a LoRA and uses it, in the browser at desktop and phone width, with the sandbox and
a real django-q2 worker in its own process (the pipeline runs as in production, not inline)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.training import images
from tests.training.test_pipeline_qcluster import worker_env

pytestmark = [pytest.mark.browser, pytest.mark.qcluster, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
# A decoder project's truncated JPEG (tests/corpus/manifest.json: libvips/truncated.jpg): refused.
BROKEN = ROOT / "tests" / "corpus" / "libvips" / "truncated.jpg"


@pytest.fixture
def worker(sandbox, settings, tmp_path):
    """`manage.py qcluster` in its own process, sharing the live server's database and files."""
    media = tmp_path / "shared-media"
    settings.MEDIA_ROOT = str(media)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media), "base_url": "/media/"},
        },
        "private": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media / "private"), "base_url": None},
        },
    }
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        start_new_session=True,
        env=worker_env(sandbox, media, settings.SANDBOX_HF_ROOT, tmp_path / "var"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process.log_path = tmp_path / "worker.log"
    yield process
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def _log_in(journey, user) -> None:
    page = journey.page
    journey.goto("/account/login/", "log in")
    page.fill("#id_username", user.email)
    page.fill("#id_password", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r"/trainings/$"))


def _photos(tmp_path: Path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        path = tmp_path / f"anna-{i:02d}.jpg"
        path.write_bytes(images.photo((900, 1100), seed=700 + i))
        paths.append(str(path))
    return paths


def test_train_from_photos_to_a_model_and_generate_with_it(journey, worker, alice, tmp_path):
    from billing.services import credits_grant
    from training.models import TrainingJob

    credits_grant(user=alice, amount=5000, reference="test:journey")
    page = journey.page
    context = page.context
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    _log_in(journey, alice)
    journey.visit("trainings")

    journey.goto("/trainings/new/", "new training")
    page.fill("#id_name", "Anna")
    page.fill("#id_trigger_word", "ohwx_anna")
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/trainings/\d+/dataset/$"))
    job = TrainingJob.objects.get(owner=alice, name="Anna")

    # Twelve photos, one of them a decoder project's truncated JPEG: refused, the eleven kept.
    page.set_input_files("#upload-input", [*_photos(tmp_path, 11), str(BROKEN)])
    expect(page.locator('.upload-item[data-state="done"]')).to_have_count(11, timeout=60_000)
    expect(page.locator('.upload-item[data-state="refused"]')).to_have_count(1)
    expect(page.locator(".upload-item", has_text="truncated.jpg")).to_contain_text(re.compile(r"\w"))
    expect(page.locator("#dataset-grid figure.thumb")).to_have_count(11, timeout=15_000)
    journey.visit("dataset uploaded, one refused")
    assert job.dataset.images.count() == 11

    # Captions written by the captioning model (through the worker), then two edited by hand.
    page.click(".caption-batch-form button[type=submit]")
    boxes = page.locator("#dataset-grid textarea")
    expect(page.locator(".caption-task.done")).to_have_count(22, timeout=60_000)  # grid + panel list
    journey.visit("captions written")
    first, second = boxes.nth(0), boxes.nth(1)
    first.fill("")
    first.press_sequentially("ohwx_anna laughing in the rain", delay=5)
    expect(page.locator(".caption-status.saved").first).to_be_visible(timeout=10_000)
    page.evaluate("navigator.clipboard.writeText('ohwx_anna in a red coat, studio light')")
    second.click()
    second.press("ControlOrMeta+a")
    second.press("ControlOrMeta+v")
    expect(second).to_have_value("ohwx_anna in a red coat, studio light")
    page.wait_for_timeout(1500)  # the autosave's pause
    journey.visit("captions edited")
    captions = set(job.dataset.images.values_list("caption", flat=True))
    assert {"ohwx_anna laughing in the rain", "ohwx_anna in a red coat, studio light"} <= captions

    # Start, and watch the stages, the progress and the loss move to the end.
    journey.goto(f"/trainings/{job.pk}/start/", "start")
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url(re.compile(rf"/trainings/{job.pk}/$"))
    journey.visit("training running")
    expect(page.locator("#training-status .badge")).to_have_text("Succeeded", timeout=120_000)
    expect(page.locator("#training-progress")).to_have_attribute("value", re.compile(r"^[1-9]\d*$"))
    expect(page.locator("#training-status .loss-chart svg")).to_be_visible()
    journey.visit("training succeeded")

    page.get_by_role("link", name="Open the model").click()
    page.wait_for_url(re.compile(r"/models/\d+/$"))
    journey.visit("model, its sample grid coming")
    expect(page.locator("#sample-grid td.sample img").first).to_be_visible(timeout=60_000)
    journey.visit("model with its sample grid")

    # Generate: text to image, image to image, an inpainting with a drawn mask.
    model = job.lora_model
    journey.goto(f"/models/generate/?model={model.pk}", "generate")
    page.fill("#id_prompt", "a portrait photo of ohwx_anna")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator("#generation-status .gallery img").first).to_be_visible(timeout=30_000)
    journey.visit("text to image")

    photo = tmp_path / "input.jpg"
    photo.write_bytes(images.photo((640, 640), seed=9))
    journey.goto(f"/models/generate/?model={model.pk}", "image to image")
    page.fill("#id_prompt", "ohwx_anna as an oil painting")
    page.set_input_files("#id_input_image", str(photo))
    page.locator("#id_prompt_strength").fill("0.6")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_url("**/models/generations/*/")
    expect(page.locator(".gallery img").first).to_be_visible(timeout=30_000)
    journey.visit("image to image done")

    journey.goto(f"/models/generate/?model={model.pk}", "inpainting")
    page.fill("#id_prompt", "ohwx_anna wearing a red hat")
    page.set_input_files("#id_input_image", str(photo))
    canvas = page.locator("[data-mask-canvas]")
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.3 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.7 * box["width"], box["y"] + 0.3 * box["height"], steps=8)
    page.mouse.up()
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_url("**/models/generations/*/")
    expect(page.locator(".gallery img").first).to_be_visible(timeout=30_000)
    journey.visit("inpainting done")
    from generations.models import Generation

    modes = set(Generation.objects.filter(owner=alice).values_list("mode", flat=True))
    assert modes == {"text", "image", "inpaint"}, modes

    # Find them in the gallery and compare two.
    journey.goto("/models/gallery/", "gallery")
    picks = page.locator("#gallery-tiles input[type=checkbox][name=images]")
    assert picks.count() >= 3
    picks.nth(0).check()
    picks.nth(1).check()
    page.get_by_role("button", name="Compare the checked images").click()
    page.wait_for_url(re.compile(r"/models/gallery/compare/"))
    expect(page.locator(".compare-grid > section > a > img")).to_have_count(2)
    journey.visit("compare two")
