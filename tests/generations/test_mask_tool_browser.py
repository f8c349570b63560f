"""The inpainting mask tool in a real browser: paint with a mouse and a touch, erase, and the mask
PNG the form sends (white where painted, black elsewhere, the image's own size); no CSP errors."""

from __future__ import annotations

import pytest
from PIL import Image

from fluxsite.integrations import storage
from generations.models import Generation
from sandbox.replicate.models import SandboxPrediction
from tests.generations.generation_kit import lora_model, sandbox_version
from tests.generations.modes_kit import png

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _logged_in(page, sandbox, user) -> None:
    from django.test import Client

    client = Client()
    client.force_login(user)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": sandbox}]
    )


def _pointer(canvas, kind: str, x: float, y: float, pointer_type: str) -> None:
    box = canvas.bounding_box()
    canvas.dispatch_event(
        kind,
        {
            "clientX": box["x"] + x * box["width"],
            "clientY": box["y"] + y * box["height"],
            "pointerId": 7,
            "pointerType": pointer_type,
            "isPrimary": True,
            "bubbles": True,
        },
    )


def test_painting_a_mask_sends_white_where_painted_on_black_at_the_images_size(
    sandbox, alice, browser_page, tmp_path
):
    model = lora_model(alice, replicate_version=sandbox_version("mask"))
    photo = tmp_path / "photo.png"
    photo.write_bytes(png((200, 100)))
    page = browser_page
    _logged_in(page, sandbox, alice)
    page.goto(f"{sandbox}/models/generate/?model={model.pk}")
    page.fill("#id_prompt", "a red hat")
    page.set_input_files("#id_input_image", str(photo))
    canvas = page.locator("[data-mask-canvas]")
    canvas.wait_for(state="visible")
    page.wait_for_function("document.querySelector('[data-mask-canvas]').width === 200")
    # A mouse stroke across the left quarter, a touch stroke on the right, then erase part of the left.
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 0.1 * box["width"], box["y"] + 0.5 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.25 * box["width"], box["y"] + 0.5 * box["height"], steps=5)
    page.mouse.up()
    _pointer(canvas, "pointerdown", 0.8, 0.5, "touch")
    _pointer(canvas, "pointermove", 0.9, 0.5, "touch")
    _pointer(canvas, "pointerup", 0.9, 0.5, "touch")
    page.check("input[data-mask-mode][value=erase]")
    _pointer(canvas, "pointerdown", 0.1, 0.5, "mouse")
    _pointer(canvas, "pointerup", 0.1, 0.5, "mouse")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_url("**/models/generations/*/")
    generation = Generation.objects.get()
    assert generation.mode == Generation.Mode.INPAINT and generation.mask_name
    mask = Image.open(storage.get_storage(storage.PRIVATE).open(generation.mask_name)).convert("L")
    assert mask.size == (200, 100)
    values = mask.tobytes()  # mode L: one byte a pixel

    def pixel(xy: tuple[int, int]) -> int:
        return values[xy[1] * mask.width + xy[0]]

    assert pixel((45, 50)) > 200  # painted with the mouse
    assert pixel((170, 50)) > 200  # painted with a touch
    assert pixel((20, 50)) < 50  # erased again
    assert pixel((120, 10)) < 50 and pixel((0, 0)) < 50  # never painted: kept
    assert "mask" in SandboxPrediction.objects.get().input
    assert not [e for e in page.errors if "favicon" not in e], page.errors


def test_clear_leaves_no_mask_and_the_image_is_changed_whole(sandbox, alice, browser_page, tmp_path):
    model = lora_model(alice, replicate_version=sandbox_version("clear"))
    photo = tmp_path / "photo.png"
    photo.write_bytes(png((120, 120)))
    page = browser_page
    _logged_in(page, sandbox, alice)
    page.goto(f"{sandbox}/models/generate/?model={model.pk}")
    page.fill("#id_prompt", "a blue hat")
    page.set_input_files("#id_input_image", str(photo))
    page.wait_for_function("document.querySelector('[data-mask-canvas]').width === 120")
    canvas = page.locator("[data-mask-canvas]")
    _pointer(canvas, "pointerdown", 0.5, 0.5, "mouse")
    _pointer(canvas, "pointerup", 0.5, 0.5, "mouse")
    page.click("[data-mask-clear]")
    page.locator("#id_prompt_strength").fill("0.3")
    assert page.locator("[data-strength-output]").inner_text() == "0.3"
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_url("**/models/generations/*/")
    generation = Generation.objects.get()
    assert generation.mode == Generation.Mode.IMAGE and not generation.mask_name
    assert SandboxPrediction.objects.get().input["prompt_strength"] == 0.3
