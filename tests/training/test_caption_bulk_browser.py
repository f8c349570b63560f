"""The bulk caption card in Debian's Chromium: htmx swaps the card, the grid reloads after a change,
and the import goes up as multipart (hx-encoding), all under the page's CSP."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.training.test_caption_bulk import _photos

pytestmark = [pytest.mark.browser]


@pytest.mark.django_db(transaction=True)
def test_find_replace_and_import_in_the_browser_refresh_the_grid(live_server, browser_page, alice, tmp_path):
    from training.services import training_create

    page = browser_page
    job = training_create(owner=alice, name="Anna", trigger_word="ohwx_anna", subject_kind="subject")
    images = _photos(
        job, [("cat1.jpg", "a cat on a sofa"), ("cat2.jpg", "a cat, a cat"), ("dog.jpg", "a dog")]
    )
    page.goto(f"{live_server.url}{reverse('accounts:login')}")
    page.fill("input[name=username]", alice.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_server.url}{reverse('training:list')}")
    page.goto(f"{live_server.url}{reverse('training:dataset', args=[job.pk])}")

    page.fill("#id_find", "cat")
    page.fill("#id_replace", "lion")
    page.click(".caption-replace button:has-text('Preview')")
    expect(page.locator(".replace-result")).to_have_text("Replaces 3 occurrences in 2 captions.")
    page.click(".caption-replace button[name=apply]")
    expect(page.locator(".replace-result")).to_contain_text("Done: replaced 3 occurrences in 2 captions.")
    # The grid heard "dataset-changed" and reloaded itself with the new captions.
    expect(page.locator(f"#caption-{images[1].pk}")).to_have_value("a lion, a lion")

    csv_path = tmp_path / "captions.csv"
    csv_path.write_text("file,caption\ndog,a dog in the snow\n", encoding="utf-8")
    page.set_input_files(".caption-import input[type=file]", str(csv_path))
    page.click(".caption-import button[type=submit]")
    expect(page.locator(".import-report")).to_contain_text("1 caption updated, 0 unchanged.")
    expect(page.locator(f"#caption-{images[2].pk}")).to_have_value("a dog in the snow")
    assert not [e for e in page.errors if "Content Security Policy" in e], page.errors
