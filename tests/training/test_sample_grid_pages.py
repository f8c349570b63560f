"""The sample grid's pages in the training app: its line of the start page's price, its prompts
(a clear refusal, nothing spent), one spend for training and grid, the fragment and the rerun."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse

from billing.models import CreditEntry
from billing.pricing import training_cost_credits
from billing.selectors import balance_for_user
from fluxsite.integrations import storage
from tests.training.test_dashboards import PARAMS, make_training, set_balance
from training.models import SampleImage, TrainingJob

pytestmark = pytest.mark.django_db
S = TrainingJob.Status


def test_the_start_page_and_its_estimate_show_the_grid_as_a_line_of_the_price(alice, alice_client, settings):
    from training.services import training_create

    job = training_create(owner=alice, name="Est", trigger_word="ohwx_est", subject_kind="style")
    page = alice_client.get(f"/trainings/{job.pk}/start/")
    body = page.content.decode()
    per_image = settings.SAMPLE_GRID_CREDITS_PER_IMAGE
    assert "Sample grid: 3 prompts × 5 strengths = 15 images" in body
    assert f"{training_cost_credits(steps=1000) + 15 * per_image} credits" in body
    assert "in the style of ohwx_est" in body  # the style kind's prompts prefill the field
    estimate = alice_client.get(
        f"/trainings/{job.pk}/estimate/",
        {"steps": "1000", "sample_prompts": "one\n\ntwo"},
        HTTP_HX_REQUEST="true",
    )
    body = estimate.content.decode()
    assert "2 prompts × 5 strengths = 10 images" in body
    assert f"{training_cost_credits(steps=1000) + 10 * per_image} credits" in body
    none = alice_client.get(f"/trainings/{job.pk}/estimate/", {"steps": "1000", "sample_prompts": ""})
    assert "Sample grid: none" in none.content.decode()
    assert f"{training_cost_credits(steps=1000)} credits" in none.content.decode()


def test_too_many_sample_prompts_get_a_clear_message_and_nothing_is_spent(alice, alice_client):
    from training.services import training_create

    job = training_create(owner=alice, name="Many", trigger_word="ohwx_many", subject_kind="subject")
    before = balance_for_user(alice)
    form = {k: str(v) for k, v in PARAMS.items()} | {"sample_prompts": "a\nb\nc\nd"}
    response = alice_client.post(f"/trainings/{job.pk}/start/", form)
    assert response.status_code == 400 and "At most 3 sample prompts" in response.content.decode()
    assert balance_for_user(alice) == before
    job.refresh_from_db()
    assert job.status == S.DRAFT


def test_the_start_spends_the_training_and_its_grid_once_and_keeps_the_prompts(
    alice_client, alice, settings, django_capture_on_commit_callbacks
):
    draft = make_training(alice, photos=10)
    set_balance(alice, 5000)
    with django_capture_on_commit_callbacks(execute=False):
        response = alice_client.post(
            reverse("training:start", args=[draft.pk]), {**PARAMS, "sample_prompts": " a cat \n\n a dog "}
        )
    assert response.status_code == 302
    draft.refresh_from_db()
    cost = training_cost_credits(steps=1000) + 10 * settings.SAMPLE_GRID_CREDITS_PER_IMAGE
    assert draft.params["sample_prompts"] == ["a cat", "a dog"] and draft.cost_credits == cost
    assert CreditEntry.objects.get(reference=f"training:{draft.pk}").amount == -cost
    assert CreditEntry.objects.filter(wallet__user=alice, amount__lt=0).count() == 1
    assert balance_for_user(alice) == 5000 - cost


def test_the_grid_fragment_stops_polling_once_no_image_is_left_to_make(alice_client, alice):
    job = make_training(alice, status=S.SUCCEEDED)
    cell = SampleImage.objects.create(job=job, row=0, col=0, prompt="ALICEX, a cat", lora_scale=0.0, seed=42)
    url = reverse("training:samples", args=[job.pk])
    running = alice_client.get(url, HTTP_HX_REQUEST="true")
    assert running.status_code == 200 and b'hx-trigger="every 3s"' in running.content
    SampleImage.objects.filter(pk=cell.pk).update(status="failed", error_message="boom")
    done = alice_client.get(url, HTTP_HX_REQUEST="true")
    assert done.status_code == 286 and b"Run the failed samples again" in done.content


def test_a_rerun_of_a_training_that_did_not_succeed_is_refused_with_a_message(alice_client, alice):
    job = make_training(alice, status=S.FAILED)
    response = alice_client.post(reverse("training:samples_rerun", args=[job.pk]), follow=True)
    assert b"Sample images are made for a training that succeeded." in response.content


def test_stored_sample_files_are_listed_for_account_deletion(alice):
    from training.selectors import owned_file_names

    job = TrainingJob.objects.create(owner=alice, name="T", trigger_word="ALICEX")
    image = storage.file_save(alias=storage.PUBLIC, name="samples/x/image.webp", content=io.BytesIO(b"x"))
    SampleImage.objects.create(
        job=job, row=0, col=0, prompt="p", lora_scale=1.0, seed=42, status="succeeded",
        file_name=image, thumbnail_name="samples/x/thumb.webp",
    )  # fmt: skip
    assert (storage.PUBLIC, image) in owned_file_names(alice)
