"""A person trains a LoRA and uses it, in the browser at desktop and phone width, with the sandbox and
a real django-q2 worker in its own process (the pipeline runs as in production, not inline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.training import images

pytestmark = [pytest.mark.browser, pytest.mark.qcluster, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
# A decoder project's truncated JPEG (tests/corpus/manifest.json: libvips/truncated.jpg): refused.
BROKEN = ROOT / "tests" / "corpus" / "libvips" / "truncated.jpg"


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


def test_train_from_photos_to_a_model_and_generate_with_it(journey, qcluster_worker, alice, tmp_path):
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
    canvas.scroll_into_view_if_needed()  # the mouse draws in the window: below the fold on a phone
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


def _balance(journey) -> int:
    """The balance pill in the navigation, as a number."""
    text = journey.page.locator("nav.mainnav").text_content()  # folded into the menu on a phone
    found = re.search(r"([\d,]+)\s*credits", text)
    assert found, text
    return int(found.group(1).replace(",", ""))


def test_cancel_midway_refunds_and_a_failed_training_says_why_and_retries(
    journey, qcluster_worker, alice, alice_client, settings
):
    from billing.selectors import balance_for_user
    from billing.services import credits_grant
    from sandbox.faults import fault_inject
    from sandbox.models import FaultKind
    from tests.training.conftest import add_photos
    from training.models import TrainingJob
    from training.services import training_create

    settings.SANDBOX_TRAINING_SECONDS = 40  # long enough to cancel midway by hand
    credits_grant(user=alice, amount=5000, reference="test:journey")
    keep = training_create(owner=alice, name="Keep", trigger_word="ohwx_keep", subject_kind="subject")
    add_photos(alice_client, keep, 10)
    flaky = training_create(owner=alice, name="Flaky", trigger_word="ohwx_flak", subject_kind="subject")
    add_photos(alice_client, flaky, 10, start_seed=2000)
    page = journey.page
    _log_in(journey, alice)
    before = _balance(journey)
    assert before == balance_for_user(alice)

    # Cancel midway: the progress has moved, the confirmation page asks, the credits come back.
    journey.goto(f"/trainings/{keep.pk}/start/", "start, to cancel")
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url(re.compile(rf"/trainings/{keep.pk}/$"))
    expect(page.locator("#training-progress")).to_have_attribute(
        "value", re.compile(r"^[1-9]\d*$"), timeout=60_000
    )
    journey.visit("training midway")
    assert _balance(journey) < before
    page.get_by_role("link", name="Cancel…").click()
    page.wait_for_url(re.compile(rf"/trainings/{keep.pk}/cancel/$"))
    journey.visit("cancel the training?")
    page.get_by_role("button", name="Cancel the training").click()
    page.wait_for_url(re.compile(rf"/trainings/{keep.pk}/$"))
    expect(page.locator("#training-status .badge")).to_have_text("Canceled", timeout=30_000)
    expect(page.locator("#training-status")).to_contain_text("credits were refunded")
    journey.visit("training canceled, refunded")
    page.reload()
    assert _balance(journey) == before == balance_for_user(alice)
    assert TrainingJob.objects.get(pk=keep.pk).status == "canceled"

    # A training that fails on Replicate says where, what kind of failure and what to do; a retry works.
    settings.SANDBOX_TRAINING_SECONDS = 3
    fault_inject(service="replicate", operation="trainings.create", kind=FaultKind.FAIL_TRAINING)
    journey.goto(f"/trainings/{flaky.pk}/start/", "start, to fail")
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url(re.compile(rf"/trainings/{flaky.pk}/$"))
    expect(page.locator("#training-status .badge")).to_have_text("Failed", timeout=90_000)
    failure = page.locator("#training-status .error-box")
    expect(failure).to_contain_text("The training failed")
    expect(failure).to_contain_text("Category:")
    expect(failure.locator(".hint")).to_have_text(re.compile(r"\w{3,}"))
    expect(failure).to_contain_text("credits were refunded")
    journey.visit("training failed, with its hint")
    page.reload()
    assert _balance(journey) == before
    page.get_by_role("button", name="Retry the failed stage").click()
    expect(page.locator("#training-status .badge")).to_have_text("Succeeded", timeout=120_000)
    journey.visit("retried, succeeded")
    flaky.refresh_from_db()
    assert flaky.status == "succeeded" and flaky.lora_model is not None
    assert balance_for_user(alice) < before  # the retry was paid for once, and kept
