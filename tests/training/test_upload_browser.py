"""One end-to-end run in Debian's Chromium: choose three photos, watch them upload, see the grid."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.training import images

pytestmark = [pytest.mark.browser]


@pytest.mark.django_db(transaction=True)
def test_photos_chosen_in_the_browser_upload_and_fill_the_grid(live_server, browser_page, alice, tmp_path):
    page = browser_page
    from training.services import training_create

    job = training_create(owner=alice, name="Anna", trigger_word="ohwx_anna", subject_kind="subject")
    paths = []
    for i in range(3):
        path = tmp_path / f"photo{i}.jpg"
        path.write_bytes(images.photo((900, 700), seed=300 + i))
        paths.append(str(path))
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    page.goto(f"{live_server.url}{reverse('accounts:login')}")
    page.fill("input[name=username]", alice.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_server.url}{reverse('training:list')}")
    page.goto(f"{live_server.url}{reverse('training:dataset', args=[job.pk])}")
    page.set_input_files("#upload-input", paths)

    # (Locators, not wait_for_function: the page's CSP rightly forbids eval.)
    expect(page.locator(".upload-item .upload-preview img")).to_have_count(3)  # thumbnails before upload
    expect(page.locator('.upload-item[data-state="done"]')).to_have_count(3, timeout=20_000)
    expect(page.locator("#upload-percent")).to_have_text("100%")
    expect(page.locator("#dataset-grid figure.thumb")).to_have_count(3, timeout=10_000)
    expect(page.locator("#readiness")).to_contain_text("3 photos")
    assert job.dataset.images.count() == 3
    assert not [e for e in errors if "Content Security Policy" in e], errors
