"""Forms rendered one way: every input's limits come from its Django form field, never the template."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django import forms
from django.conf import settings
from django.urls import reverse

from tests.training.conftest import add_photos
from training.forms import CaptionForm, TrainingParamsForm

pytestmark = pytest.mark.django_db
TEMPLATES = Path(settings.BASE_DIR) / "templates" / "training"


def _tag(body: str, name: str) -> str:
    match = re.search(rf'<(?:input|textarea|select)\b[^>]*\bname="{name}"[^>]*>', body)
    assert match, f"no {name} field in the page"
    return match.group(0)


def test_no_training_template_writes_a_limit_by_hand():
    for template in TEMPLATES.glob("*.html"):
        inputs = re.findall(r"<(?:input|textarea)\b[^>]*>", template.read_text())
        written = [tag for tag in inputs if re.search(r'\b(?:min|max|maxlength|minlength)="\d', tag)]
        assert written == [], f"{template.name} repeats a form field's limit: render the field instead"


def test_the_steps_bounds_on_the_page_and_in_the_estimate_are_the_form_fields(
    alice_client, training, monkeypatch
):
    monkeypatch.setitem(
        TrainingParamsForm.base_fields, "steps", forms.IntegerField(min_value=5, max_value=50, initial=10)
    )
    page = alice_client.get(reverse("training:start", args=[training.pk])).content.decode()
    steps = _tag(page, "steps")
    assert 'min="5"' in steps and 'max="50"' in steps and 'value="10"' in steps
    assert f'hx-get="{reverse("training:estimate", args=[training.pk])}"' in steps
    assert 'hx-trigger="change, input changed delay:400ms"' in steps  # not keyup: paste fires only input

    estimate = reverse("training:estimate", args=[training.pk])
    assert "Enter 5-50 steps to see the cost" in alice_client.get(estimate, {"steps": "60"}).content.decode()
    assert "40 steps" in alice_client.get(estimate, {"steps": "40"}).content.decode()


def test_the_photo_captions_are_the_caption_form_with_its_limit(alice_client, training, monkeypatch):
    add_photos(alice_client, training, 1)
    image = training.dataset.images.get()
    monkeypatch.setitem(CaptionForm.base_fields, "caption", forms.CharField(required=False, max_length=5))

    page = alice_client.get(reverse("training:dataset", args=[training.pk])).content.decode()
    caption = _tag(page, "caption")
    assert 'maxlength="5"' in caption and f'id="caption-{image.pk}"' in caption
    assert f'hx-post="{reverse("training:image_caption", args=[training.pk, image.pk])}"' in caption
    assert f'<label class="visually-hidden" for="caption-{image.pk}">' in page

    url = reverse("training:image_caption", args=[training.pk, image.pk])
    refused = alice_client.post(url, {"caption": "too long"}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 400 and "at most 5 characters" in refused.content.decode()


def test_the_caption_template_and_the_list_filters_are_rendered_from_their_forms(alice_client, training):
    page = alice_client.get(reverse("training:dataset", args=[training.pk])).content.decode()
    assert 'maxlength="500"' in _tag(page, "template")

    listing = alice_client.get(reverse("training:list"), {"q": "anna", "sort": "oldest"}).content.decode()
    search = _tag(listing, "q")
    assert 'type="search"' in search and 'maxlength="80"' in search and 'value="anna"' in search
    assert '<option value="oldest" selected>Oldest first</option>' in listing


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_typed_steps_and_pasted_captions_reach_the_server_without_a_keyup(
    live_server, browser_page, alice_client, alice, training
):
    """Playwright's fill() fires `input` only, as paste and autocorrect do."""
    from tests.conftest import PASSWORD

    add_photos(alice_client, training, 1)
    image = training.dataset.images.get()
    page = browser_page
    page.goto(f"{live_server.url}{reverse('accounts:login')}")
    page.fill("input[name=username]", alice.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_server.url}{reverse('training:list')}")

    page.goto(f"{live_server.url}{reverse('training:dataset', args=[training.pk])}")
    page.fill(f"#caption-{image.pk}", "[trigger] on a bicycle")
    page.locator(".caption-status").filter(has_text="Saved").wait_for(timeout=10_000)
    image.refresh_from_db()
    assert image.caption == "[trigger] on a bicycle"

    page.goto(f"{live_server.url}{reverse('training:start', args=[training.pk])}")
    page.fill("#id_steps", "2500")
    page.locator("#estimate").filter(has_text="2500 steps").wait_for(timeout=10_000)
    assert not [e for e in page.errors if "Content Security Policy" in e], page.errors
