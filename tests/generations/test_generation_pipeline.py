"""Generating over real HTTP against the Replicate stand-in: webhooks, poller, faults, credits."""

from __future__ import annotations

import io
import json
import time

import pytest
from django.core.management import call_command
from PIL import Image

from billing.selectors import balance_for_user
from fluxsite.integrations import storage
from generations.models import Generation
from generations.services import generation_start
from sandbox.faults import fault_inject
from sandbox.models import FaultKind
from sandbox.replicate.models import SandboxPrediction
from tests.generations.generation_kit import FORM, PARAMS, lora_model, sandbox_version
from tests.helpers import sandbox_runs_finished, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
G = Generation.Status


@pytest.fixture
def ready_model(sandbox, alice):
    return lora_model(alice, replicate_version=sandbox_version("alice"))


def _finished(generation: Generation) -> bool:
    generation.refresh_from_db()
    return generation.is_finished


def test_a_generation_runs_on_the_trained_version_and_copies_the_images(
    sandbox, alice, alice_client, ready_model
):
    before = balance_for_user(alice)
    response = alice_client.post("/models/generate/", {**FORM, "model": ready_model.pk, "seed": "7"})
    generation = Generation.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/models/generations/{generation.pk}/"
    assert balance_for_user(alice) == before - 8  # 2 images × 4 credits, spent before Replicate was called
    prediction = SandboxPrediction.objects.get()
    assert prediction.version == ready_model.replicate_version.rpartition(":")[2]
    assert prediction.input["prompt"] == "ALICEX, a portrait in soft light"
    assert prediction.input["seed"] == 7 and prediction.input["guidance_scale"] == 3
    assert f"?gen={generation.pk}" in prediction.webhook

    assert wait_for(lambda: _finished(generation))  # the completed webhook moves it on
    assert generation.status == G.SUCCEEDED, generation.error_message
    images = list(generation.images.order_by("index"))
    assert [i.index for i in images] == [0, 1]
    thumb = Image.open(storage.get_storage(storage.PUBLIC).open(images[0].thumbnail_name))
    assert thumb.format == "WEBP" and max(thumb.size) <= 384
    assert storage.get_storage(storage.PUBLIC).exists(images[0].file_name)
    assert balance_for_user(alice) == before - 8
    status = alice_client.get(f"/models/generations/{generation.pk}/status/")
    assert status.status_code == 286 and images[0].thumbnail_name.encode() in status.content


def test_the_poller_finishes_a_generation_whose_webhooks_were_lost(sandbox, settings, alice, ready_model):
    fault_inject(service="replicate", operation="*", kind=FaultKind.DROP_WEBHOOK, times=None)
    generation = generation_start(user=alice, model=ready_model, prompt="a cat", params=dict(PARAMS))
    generation.refresh_from_db()
    assert generation.status == G.RUNNING and generation.replicate_prediction_id
    assert sandbox_runs_finished(generation.replicate_prediction_id)  # finished at Replicate
    generation.refresh_from_db()
    assert generation.status == G.RUNNING  # no webhook came
    settings.PIPELINE_STALE_MINUTES = 0
    out = io.StringIO()
    call_command("generations_reconcile", stdout=out)
    assert "polled: 1" in out.getvalue()
    generation.refresh_from_db()
    assert generation.status == G.SUCCEEDED and generation.images.count() == 1


def test_a_prompt_flagged_as_sensitive_fails_with_a_clear_message_and_a_refund(sandbox, alice, ready_model):
    before = balance_for_user(alice)
    generation = generation_start(user=alice, model=ready_model, prompt="something nsfw", params=dict(PARAMS))
    assert wait_for(lambda: _finished(generation))
    assert generation.status == G.FAILED
    assert generation.error_message.startswith("The safety filter flagged")
    assert balance_for_user(alice) == before


def test_replicate_refusing_an_input_fails_and_refunds_and_shows_it_against_the_field(
    sandbox, alice, alice_client, ready_model
):
    # Our form never lets lora_scale 5 through: the service is called directly to reach Replicate's own 422.
    before = balance_for_user(alice)
    generation = generation_start(
        user=alice, model=ready_model, prompt="a cat", params={**PARAMS, "lora_scale": 5}
    )
    generation.refresh_from_db()
    assert generation.status == G.FAILED and generation.error_category == "validation"
    assert generation.invalid_fields[0]["field"] == "input.lora_scale"
    assert balance_for_user(alice) == before
    assert not SandboxPrediction.objects.exists()
    page = alice_client.get(f"/models/generate/?again={generation.pk}").content.decode()
    field = page[page.index('for="id_lora_scale"') :]
    # A trained version's predictor bounds lora_scale at 2 (flux-fine-tuner predict.py, vendor data).
    assert "Replicate: Must be less than or equal to 2" in field[:1500]


def test_a_rate_limited_create_is_retried_and_then_succeeds(sandbox, settings, alice, ready_model):
    settings.GENERATION_RETRY_BASE_SECONDS = 0.01
    fault_inject(service="replicate", operation="predictions.create", status=429, retry_after=1, times=1)
    generation = generation_start(user=alice, model=ready_model, prompt="a cat", params=dict(PARAMS))
    generation.refresh_from_db()
    assert generation.attempts == 2 and generation.status == G.RUNNING
    assert SandboxPrediction.objects.count() == 1


def test_a_create_that_stays_rate_limited_fails_with_a_refund(sandbox, settings, alice, ready_model):
    settings.GENERATION_MAX_ATTEMPTS = 2
    settings.GENERATION_RETRY_BASE_SECONDS = 0.01
    fault_inject(service="replicate", operation="predictions.create", status=429, retry_after=1, times=None)
    before = balance_for_user(alice)
    generation = generation_start(user=alice, model=ready_model, prompt="a cat", params=dict(PARAMS))
    generation.refresh_from_db()
    assert generation.status == G.FAILED and generation.error_category == "rate_limit"
    assert "slow down" in generation.error_message and generation.attempts == 2
    assert balance_for_user(alice) == before
    assert not SandboxPrediction.objects.exists()


def test_an_output_that_cannot_be_downloaded_fails_with_a_file_error_and_a_refund(
    sandbox, settings, alice, ready_model
):
    settings.GENERATION_DOWNLOAD_RETRY_SECONDS = 0
    fault_inject(service="replicate", operation="files.get", status=503, retry_after=1, times=None)
    before = balance_for_user(alice)
    generation = generation_start(user=alice, model=ready_model, prompt="a cat", params=dict(PARAMS))
    assert wait_for(lambda: _finished(generation))
    assert generation.status == G.FAILED and generation.error_category == "file_error"
    assert "could not be saved" in generation.error_message
    assert balance_for_user(alice) == before and generation.images.count() == 0


def test_a_model_with_only_hugging_face_weights_runs_on_the_base_model_with_lora_weights(sandbox, alice):
    model = lora_model(alice, name="Hub only", hf_repo_id="fluxsite/hub-only")
    generation = generation_start(
        user=alice, model=model, prompt="a cat", params={**PARAMS, "guidance_scale": 4.5}
    )
    generation.refresh_from_db()
    assert generation.status == G.RUNNING, generation.error_message
    prediction = SandboxPrediction.objects.get()
    assert prediction.model == "black-forest-labs/flux-dev-lora"
    assert prediction.input["lora_weights"] == "huggingface.co/fluxsite/hub-only"
    assert prediction.input["guidance"] == 4.5 and "guidance_scale" not in prediction.input


def test_insufficient_credits_show_a_message_and_nothing_reaches_replicate(
    sandbox, alice, alice_client, ready_model
):
    from billing.services import credits_spend

    credits_spend(
        user=alice,
        amount=balance_for_user(alice) - 3,
        reference="test:drain",
        kind="billing.credits.spent.training",
    )
    page = alice_client.post("/models/generate/", {**FORM, "model": ready_model.pk})
    assert page.status_code == 200 and "Not enough credits" in page.content.decode()
    assert not Generation.objects.exists() and not SandboxPrediction.objects.exists()
    assert balance_for_user(alice) == 3


def _signed(sandbox_settings, payload: dict, msg_id: str = "msg_test_1") -> dict:
    from sandbox.replicate.simulation import webhook_signature

    body = json.dumps(payload).encode()
    ts = int(time.time())
    sig = webhook_signature(
        secret=sandbox_settings.REPLICATE_WEBHOOK_SECRET, msg_id=msg_id, timestamp=ts, body=body
    )
    return {
        "data": body,
        "content_type": "application/json",
        "HTTP_WEBHOOK_ID": msg_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(ts),
        "HTTP_WEBHOOK_SIGNATURE": sig,
    }


def test_the_prediction_webhook_refuses_a_bad_signature_and_ignores_a_duplicate(
    sandbox, settings, client, alice, ready_model
):
    from training.models import ReplicateWebhook

    fault_inject(service="replicate", operation="*", kind=FaultKind.DROP_WEBHOOK, times=None)
    generation = generation_start(user=alice, model=ready_model, prompt="a cat", params=dict(PARAMS))
    generation.refresh_from_db()
    payload = {"id": generation.replicate_prediction_id, "status": "failed", "error": "boom", "output": None}
    request = _signed(settings, payload)
    bad = dict(request, HTTP_WEBHOOK_SIGNATURE="v1,AAAA")
    assert client.post("/models/webhooks/replicate/", **bad).status_code == 400
    assert client.get("/models/webhooks/replicate/").status_code == 405
    assert client.post(f"/models/webhooks/replicate/?gen={generation.pk}", **request).status_code == 200
    generation.refresh_from_db()
    assert generation.status == G.FAILED and "boom" in generation.error_message
    assert client.post("/models/webhooks/replicate/", **request).content == b"duplicate"
    delivery = ReplicateWebhook.objects.get()
    assert delivery.kind == "prediction" and delivery.job_hint == generation.pk and delivery.processed_at


def test_a_generation_without_a_seed_picks_one_and_sends_it_so_it_can_be_repeated(
    sandbox, alice, ready_model
):
    generation = generation_start(
        user=alice, model=ready_model, prompt="a cat", params={**PARAMS, "seed": None}
    )
    generation.refresh_from_db()
    assert generation.seed is not None
    assert SandboxPrediction.objects.get().input["seed"] == generation.seed


# --- Issue 11, defect 3: each target's own ranges, read from its schema ---------------------------------
def _lora_scale_input(page: str) -> str:
    start = page.index('name="lora_scale"')
    return page[page.rindex("<input", 0, start) : page.index(">", start)]


def test_a_trained_version_refuses_a_strength_over_its_own_maximum_of_2(
    sandbox, alice, alice_client, ready_model
):
    """The predictor behind trained versions (replicate/flux-fine-tuner) bounds lora_scale at 2."""
    page = alice_client.get(f"/models/generate/?model={ready_model.pk}").content.decode()
    assert 'max="2.0"' in _lora_scale_input(page) and "-1 to 2: how strongly" in page
    before = balance_for_user(alice)
    response = alice_client.post("/models/generate/", {**FORM, "model": ready_model.pk, "lora_scale": "2.5"})
    assert response.status_code == 200 and "less than or equal to 2" in response.content.decode()
    assert not Generation.objects.exists() and balance_for_user(alice) == before


def test_a_model_on_the_base_generator_takes_a_strength_up_to_3(sandbox, alice, alice_client):
    """black-forest-labs/flux-dev-lora (cog-flux DevLoraPredictor) bounds lora_scale at 3."""
    model = lora_model(alice, name="Hub only", replicate_version="", hf_repo_id="fluxsite/hub-only")
    page = alice_client.get(f"/models/generate/?model={model.pk}").content.decode()
    assert 'max="3.0"' in _lora_scale_input(page)
    response = alice_client.post("/models/generate/", {**FORM, "model": model.pk, "lora_scale": "2.5"})
    assert response.status_code == 302
    generation = Generation.objects.get()
    assert wait_for(lambda: _finished(generation))
    assert generation.status == G.SUCCEEDED and SandboxPrediction.objects.get().input["lora_scale"] == 2.5
    refused = alice_client.post("/models/generate/", {**FORM, "model": model.pk, "lora_scale": "3.5"})
    assert "less than or equal to 3" in refused.content.decode() and Generation.objects.count() == 1
