"""In Debian's Chromium: caption the photos, watch each caption land in its box, see the cost first."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.training.conftest import add_photos

pytestmark = [pytest.mark.browser]


@pytest.mark.django_db(transaction=True)
def test_captions_land_in_their_boxes_as_they_arrive(sandbox, browser_page, alice, alice_client, training):
    page = browser_page
    add_photos(alice_client, training, 3)
    page.goto(f"{sandbox}{reverse('accounts:login')}")
    page.fill("input[name=username]", alice.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{sandbox}{reverse('training:list')}")
    page.goto(f"{sandbox}{reverse('training:dataset', args=[training.pk])}")
    expect(page.locator("#caption-cost")).to_contain_text("3 photos, 3 credits")
    page.select_option("#id_style", "tags")  # a change asks for the cost again
    expect(page.locator("#caption-cost")).to_contain_text("3 photos, 3 credits")
    page.click(".caption-batch-form button[type=submit]")
    expect(page.locator("#caption-panel")).to_contain_text("Captioning with lucataco/florence-2-large")
    boxes = page.locator("#dataset-grid textarea")
    for i in range(3):
        expect(boxes.nth(i)).to_have_value(__import__("re").compile(r"^\[trigger\], .*photo"), timeout=20_000)
    expect(page.locator(".caption-task.done")).to_have_count(6, timeout=10_000)  # grid + panel list
    expect(page.locator("#caption-panel form.caption-batch-form")).to_have_count(1)  # polling stopped
    assert not [e for e in page.errors if "Content Security Policy" in e], page.errors
