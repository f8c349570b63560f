"""Live fields react to `input`, not `keyup`: a paste, an autocorrection or a script changes a field
without any key event, and such an edit must still be saved or previewed.

Each test sets a value by script and dispatches only an `input` event, as a paste does.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from playwright.sync_api import expect

from tests.helpers import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Runs in the page through the DevTools protocol, which the page's CSP does not govern.
SET_BY_SCRIPT = (
    "(field, value) => { field.value = value; field.dispatchEvent(new Event('input', {bubbles: true})); }"
)


@pytest.fixture
def alice_page(browser_page, alice, live_server):
    """The browser, signed in as alice (a session made by the test client, not by the login form)."""
    client = Client()
    client.force_login(alice)
    browser_page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    return browser_page


def test_a_caption_changed_without_a_key_press_is_saved(live_server, alice_page, alice, alice_client):
    from tests.training.conftest import add_photos
    from training.models import DatasetImage
    from training.services import training_create

    job = training_create(owner=alice, name="Anna", trigger_word="ohwx_anna", subject_kind="subject")
    add_photos(alice_client, job, 1)
    image = job.dataset.images.get()
    alice_page.goto(f"{live_server.url}{reverse('training:dataset', args=[job.pk])}")

    alice_page.locator(f"#caption-{image.pk}").evaluate(SET_BY_SCRIPT, "ohwx_anna on a beach at noon")

    assert wait_for(lambda: DatasetImage.objects.get(pk=image.pk).caption == "ohwx_anna on a beach at noon")
    assert not alice_page.errors, alice_page.errors


def test_the_cost_estimate_follows_steps_changed_without_a_key_press(live_server, alice_page, alice):
    from training.services import training_create

    job = training_create(owner=alice, name="Anna", trigger_word="ohwx_anna", subject_kind="subject")
    alice_page.goto(f"{live_server.url}{reverse('training:start', args=[job.pk])}")

    alice_page.locator("#id_steps").evaluate(SET_BY_SCRIPT, "1234")

    expect(alice_page.locator("#estimate")).to_contain_text("1234 steps", timeout=15_000)
    assert not alice_page.errors, alice_page.errors


def test_the_generate_preview_follows_changes_made_without_a_key_press(sandbox, alice_page, alice):
    from tests.generations.generation_kit import lora_model, sandbox_version

    model = lora_model(alice, replicate_version=sandbox_version("autosave"))
    alice_page.goto(f"{sandbox}{reverse('generations:generate')}?model={model.pk}")
    preview = alice_page.locator("#preview")

    def preview_answer(change) -> str:
        """The preview fragment htmx fetched after `change`: the request itself must be sent (a lost
        request fails here, not as a stale page), and under load it gets 15 s."""
        with alice_page.expect_response(lambda r: "/generate/preview/" in r.url, timeout=15_000) as answer:
            change()
        return answer.value.text()

    # A prompt idea: static/js/generate.js fills the box and tells htmx with an `input` event.
    idea = alice_page.locator("[data-suggestion]").first
    expect(idea).to_be_visible()
    suggestion = idea.get_attribute("data-suggestion")
    assert suggestion in preview_answer(idea.click)
    expect(preview.locator(".effective-prompt")).to_contain_text(suggestion)

    prompt = alice_page.locator("#id_prompt")
    assert "ALICEX, a cat on a windowsill" in preview_answer(
        lambda: prompt.evaluate(SET_BY_SCRIPT, "a cat on a windowsill")
    )
    expect(preview.locator(".effective-prompt")).to_contain_text("ALICEX, a cat on a windowsill")

    outputs = alice_page.locator("#id_num_outputs")
    assert "12 credits" in preview_answer(lambda: outputs.evaluate(SET_BY_SCRIPT, "3"))
    expect(preview.locator("#cost")).to_have_text("12 credits")
    assert not [e for e in alice_page.errors if "favicon" not in e], alice_page.errors
