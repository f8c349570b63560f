"""Issue 18, "done when": a training with each registered trainer goes from photos to a published
model and a generated image in a real browser, against the sandbox (no CSP errors on the way)."""

from __future__ import annotations

import pytest
from django.test import Client
from playwright.sync_api import expect

from generations.models import Generation
from tests.helpers import wait_until
from tests.training.test_trainers import KEYS, _job
from training.models import TrainingJob
from training.trainers.registry import trainer_get

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("key", KEYS)
def test_each_trainer_from_the_start_page_to_a_generated_image(
    key, sandbox, alice, alice_client, browser_page, settings
):
    from billing.services import credits_grant

    settings.REPLICATE_TIMEOUT_SECONDS = 5
    credits_grant(user=alice, amount=5000, reference="test:topup")
    job = _job(alice, alice_client, "flux-dev")  # made with the default; the page switches it
    client = Client()
    client.force_login(alice)
    page = browser_page
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": sandbox}]
    )

    page.goto(f"{sandbox}/trainings/{job.pk}/start/")
    trainer = trainer_get(key)
    page.locator(".trainers a", has_text=trainer.label).click()
    expect(page.locator(".trainers a[aria-current='true']")).to_have_text(trainer.label)
    page.fill("textarea[name=sample_prompts]", "")  # no sample grid: this test is about the trainer
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url(f"**/trainings/{job.pk}/")
    job = wait_until(
        lambda: TrainingJob.objects.get(pk=job.pk), lambda j: j.status in ("succeeded", "failed"), timeout=60
    )
    assert job.status == "succeeded" and job.trainer == key, job.error_message
    model = job.lora_model
    assert model.status == "ready" and model.base_model == trainer.base_model

    # The training page (polling) shows the way to the model; the model page to the generate page.
    page.get_by_role("link", name="Open the model").click()
    expect(page.locator("h1")).to_have_text(model.name)
    page.goto(f"{sandbox}/models/generate/?model={model.pk}")
    page.fill("#id_prompt", f"a portrait photo of {model.trigger_word}")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_selector("#generation-status .gallery img", timeout=20000)
    generation = Generation.objects.get(lora_model=model)
    assert generation.status == Generation.Status.SUCCEEDED
    assert not [e for e in page.errors if "favicon" not in e], page.errors
