"""Every generation mode of the generate page over the API (httpx against the live server, the
sandbox standing in for Replicate): image to image from an upload or a gallery image, inpainting,
a second LoRA and upscaling; the form's limits and messages, quotes, ownership, safe retries."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from billing.selectors import balance_for_user
from generations.models import Generation
from sandbox.replicate.models import SandboxPrediction
from tests.api.conftest import token_for
from tests.generations.generation_kit import finished_generation, lora_model, sandbox_version
from tests.generations.modes_kit import mask_png, png
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
M = Generation.Mode
FIELDS = {"prompt": "a portrait in soft light", "num_outputs": "1", "seed": "7"}


@pytest.fixture
def ready_model(sandbox, alice):
    return lora_model(alice, replicate_version=sandbox_version("alice"))


@pytest.fixture
def http(sandbox, alice):
    _, secret = token_for(alice)
    with httpx.Client(base_url=sandbox, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as client:
        yield client


def _fetched(http: httpx.Client, url: str) -> bytes:
    """What Replicate downloads from a signed URL we sent (served by our own /files/ view)."""
    answer = http.get(urlsplit(url).path + ("?" + urlsplit(url).query if urlsplit(url).query else ""))
    assert answer.status_code == 200, url
    return answer.content


def _succeeded(http: httpx.Client, generation_id: int) -> bool:
    return http.get(f"/api/v1/generations/{generation_id}").json()["status"] == "succeeded"


def test_image_to_image_from_an_uploaded_file_sends_it_with_the_strength(alice, http, ready_model):
    image = png((64, 48))
    before = balance_for_user(alice)
    answer = http.post(
        "/api/v1/generations",
        data={**FIELDS, "model_id": str(ready_model.pk), "prompt_strength": "0.65"},
        files={"input_image": ("start.png", image, "image/png")},
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["mode"] == "image" and body["params"]["prompt_strength"] == 0.65
    assert balance_for_user(alice) == before - 4
    sent = SandboxPrediction.objects.get().input
    assert sent["prompt_strength"] == 0.65 and _fetched(http, sent["image"]) == image
    assert wait_for(lambda: _succeeded(http, body["id"]))


def test_inpainting_sends_the_image_and_the_mask(http, ready_model):
    image, mask = png((64, 48)), mask_png((64, 48))
    answer = http.post(
        "/api/v1/generations",
        data={**FIELDS, "model_id": str(ready_model.pk)},
        files={"input_image": ("start.png", image, "image/png"), "mask": ("mask.png", mask, "image/png")},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["mode"] == "inpaint"
    assert answer.json()["params"]["prompt_strength"] == 0.8  # the page's default with an image
    sent = SandboxPrediction.objects.get().input
    assert _fetched(http, sent["mask"]) == mask and _fetched(http, sent["image"]) == image
    assert wait_for(lambda: _succeeded(http, answer.json()["id"]))


def test_image_to_image_from_a_gallery_image_by_json(alice, bob, http, ready_model):
    source = finished_generation(alice, ready_model).images.get()
    answer = http.post(
        "/api/v1/generations",
        json={"model_id": ready_model.pk, "prompt": "a cat", "source_image_id": source.pk},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["mode"] == "image" and answer.json()["source_image_id"] == source.pk
    bobs = finished_generation(bob, lora_model(bob, name="Bobs")).images.get()
    refused = http.post(
        "/api/v1/generations",
        json={"model_id": ready_model.pk, "prompt": "a cat", "source_image_id": bobs.pk},
    )
    assert refused.status_code == 404 and Generation.objects.filter(owner=alice).count() == 2


def test_a_second_lora_sends_both_trigger_words_and_its_strength(alice, bob, http, ready_model):
    style = lora_model(
        alice, name="Ink", trigger_word="INKSTYLE", subject_kind="style", hf_repo_id="alice/ink"
    )
    answer = http.post(
        "/api/v1/generations",
        json={
            "model_id": ready_model.pk,
            "prompt": "a cat",
            "extra_model_id": style.pk,
            "extra_lora_scale": 0.6,
        },
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (
        body["extra_model_id"] == style.pk
        and body["effective_prompt"] == "ALICEX, a cat, in the style of INKSTYLE"
    )
    sent = SandboxPrediction.objects.get().input
    assert sent["extra_lora"] == "huggingface.co/alice/ink" and sent["extra_lora_scale"] == 0.6
    bobs = lora_model(bob, name="Bobs", hf_repo_id="bob/x")
    refused = http.post(
        "/api/v1/generations", json={"model_id": ready_model.pk, "prompt": "a cat", "extra_model_id": bobs.pk}
    )
    assert refused.status_code == 404


@pytest.mark.parametrize(
    ("files", "field", "message"),
    [
        ({"mask": ("mask.png", mask_png(), "image/png")}, "", "A mask needs an image to paint over"),
        (
            {
                "input_image": ("a.png", png((64, 48)), "image/png"),
                "mask": ("m.png", mask_png((32, 32)), "image/png"),
            },
            "",
            "mask",
        ),
        ({"input_image": ("a.txt", b"not an image", "text/plain")}, "", "image"),
    ],
)
def test_refused_inputs_are_quoted_invalid_and_refused_with_the_pages_message_and_nothing_spent(
    alice, http, ready_model, files, field, message
):
    before = balance_for_user(alice)
    data = {**FIELDS, "model_id": str(ready_model.pk)}
    quote = http.post("/api/v1/generations?dry_run=true", data=data, files=files)
    assert quote.status_code == 200, quote.text
    assert quote.json()["valid"] is False and message in quote.json()["errors"][0]["message"]
    answer = http.post("/api/v1/generations", data=data, files=files)
    assert answer.status_code == 422 and answer.headers["Content-Type"] == "application/problem+json"
    error = answer.json()["errors"][0]
    assert error["field"] == field and message in error["message"]
    assert error["message"] == quote.json()["errors"][0]["message"]  # the quote says what the request gets
    assert not Generation.objects.exists() and balance_for_user(alice) == before


def test_an_image_over_the_limit_gets_the_forms_message(settings, http, ready_model):
    settings.GENERATION_INPUT_MAX_BYTES = 100
    answer = http.post(
        "/api/v1/generations",
        data={**FIELDS, "model_id": str(ready_model.pk)},
        files={"input_image": ("big.png", png((64, 48)), "image/png")},
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "input_image"
    assert "the most we take is 100" in answer.json()["errors"][0]["message"]
    assert not Generation.objects.exists()


def test_a_mask_for_a_model_that_cannot_inpaint_is_refused_on_the_mask_field(alice, http, sandbox):
    hub = lora_model(alice, name="Hub only", hf_repo_id="fluxsite/hub-only")
    answer = http.post(
        "/api/v1/generations",
        data={**FIELDS, "model_id": str(hub.pk)},
        files={"input_image": ("a.png", png(), "image/png"), "mask": ("m.png", mask_png(), "image/png")},
    )
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "mask"
    assert "cannot inpaint" in answer.json()["errors"][0]["message"]
    assert not Generation.objects.exists()


def test_a_multipart_retry_with_the_same_key_and_files_makes_one_generation(alice, http, ready_model):
    key = {"Idempotency-Key": str(uuid.uuid4())}
    data = {**FIELDS, "model_id": str(ready_model.pk)}
    image = png((64, 48))
    first = http.post(
        "/api/v1/generations", data=data, files={"input_image": ("a.png", image, "image/png")}, headers=key
    )
    before = balance_for_user(alice)
    again = http.post(
        "/api/v1/generations", data=data, files={"input_image": ("a.png", image, "image/png")}, headers=key
    )
    assert first.status_code == again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] and Generation.objects.count() == 1
    assert balance_for_user(alice) == before
    other = http.post(
        "/api/v1/generations",
        data=data,
        files={"input_image": ("a.png", png((60, 40)), "image/png")},
        headers=key,
    )
    assert other.status_code == 422 and other.json()["type"].endswith("#problem-idempotency-key-reused")


def test_an_upscale_is_quoted_then_runs_beside_the_original(settings, alice, bob, http, ready_model):
    settings.UPSCALE_CREDITS_PER_IMAGE = 3
    source = finished_generation(alice, ready_model).images.get()
    before = balance_for_user(alice)
    quote = http.post(f"/api/v1/images/{source.pk}/upscale?dry_run=true", json={"scale": 4})
    assert quote.json() == {
        "dry_run": True,
        "valid": True,
        "credits": 3,
        "dollars": "0.03",
        "balance": before,
        "enough_credits": True,
        "errors": [],
    }
    bad = http.post(f"/api/v1/images/{source.pk}/upscale", json={"scale": 3})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "scale"
    answer = http.post(f"/api/v1/images/{source.pk}/upscale", json={"scale": 2, "face_enhance": True})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["mode"] == "upscale" and body["source_image_id"] == source.pk and body["cost_credits"] == 3
    assert balance_for_user(alice) == before - 3
    sent = SandboxPrediction.objects.get().input
    assert sent["scale"] == 2 and sent["face_enhance"] is True
    assert wait_for(lambda: _succeeded(http, body["id"]))
    [image] = http.get(f"/api/v1/generations/{body['id']}").json()["images"]
    assert (image["width"], image["height"]) == (128, 128)
    bobs = finished_generation(bob, lora_model(bob, name="Bobs")).images.get()
    assert http.post(f"/api/v1/images/{bobs.pk}/upscale", json={"scale": 2}).status_code == 404
