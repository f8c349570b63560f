"""The generate page in a real browser: suggestions, the live preview, the run and the gallery (no CSP errors)."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from generations.models import Generation
from tests.generations.generation_kit import lora_model, sandbox_version

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = os.environ.get("FLUXSITE_SCREENSHOTS", "")  # a folder to keep screenshots in, for a human to look at


def test_generating_in_the_browser(sandbox, alice, browser_page):
    from django.test import Client

    model = lora_model(alice, replicate_version=sandbox_version("browser"))
    client = Client()
    client.force_login(alice)
    cookie = client.cookies["sessionid"].value
    page = browser_page
    page.context.add_cookies([{"name": "sessionid", "value": cookie, "url": sandbox}])
    page.goto(f"{sandbox}/models/generate/?model={model.pk}")
    page.locator("[data-suggestion]").first.click()
    expect(page.locator("#preview .effective-prompt")).to_contain_text("a portrait photo of ALICEX")
    page.fill("#id_num_outputs", "2")
    page.locator("#id_num_outputs").dispatch_event("change")
    expect(page.locator("#cost")).to_have_text("8 credits")
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "generate.png"), full_page=True)
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_selector("#generation-status .gallery img", timeout=15000)
    assert Generation.objects.get().status == Generation.Status.SUCCEEDED
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "generation.png"), full_page=True)
    page.goto(f"{sandbox}/models/gallery/")
    assert page.locator(".gallery img").count() == 2
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "gallery.png"), full_page=True)
        page.locator(".gallery a.tile").first.click()
        page.screenshot(path=os.path.join(SHOTS, "image.png"), full_page=True)
    assert not [e for e in page.errors if "favicon" not in e], page.errors
