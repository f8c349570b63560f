"""Image to image, inpainting, two LoRAs and upscaling over real HTTP against the Replicate stand-in:
what reaches the model, what is spent and refunded, and "again with this seed" in every mode."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from PIL import Image

from billing.models import CreditEntry
from billing.selectors import balance_for_user
from fluxsite.integrations import replicate_client, storage
from generations.models import GeneratedImage, Generation
from sandbox.faults import fault_inject
from sandbox.models import FaultKind
from sandbox.replicate.models import SandboxPrediction
from sandbox.replicate.schemas import VENDOR
from tests.generations.generation_kit import FORM, finished_generation, lora_model, sandbox_version
from tests.generations.modes_kit import mask_png, png, upload
from tests.helpers import sandbox_runs_finished, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
G = Generation.Status
M = Generation.Mode


@pytest.fixture
def ready_model(sandbox, alice):
    return lora_model(alice, replicate_version=sandbox_version("alice"))


@pytest.fixture
def style_model(sandbox, alice):
    """A second model, published on Hugging Face (a style)."""
    return lora_model(
        alice, name="Ink", trigger_word="INKSTYLE", subject_kind="style", hf_repo_id="alice/ink-style"
    )


def _finished(generation: Generation) -> bool:
    generation.refresh_from_db()
    return generation.is_finished


def _fetched(client, url: str) -> bytes:
    """What Replicate downloads from a signed URL we sent (served by our own /files/ view)."""
    response = client.get(urlsplit(url).path)
    assert response.status_code == 200, url
    return b"".join(response.streaming_content)


def _spends_and_refunds(generation: Generation) -> list[int]:
    return list(
        CreditEntry.objects.filter(reference__contains=f"generation:{generation.pk}")
        .order_by("pk")
        .values_list("amount", flat=True)
    )


def test_image_to_image_sends_the_uploaded_image_as_a_signed_url_with_the_chosen_strength(
    sandbox, alice, alice_client, ready_model
):
    before = balance_for_user(alice)
    data = png()
    response = alice_client.post(
        "/models/generate/",
        {**FORM, "model": ready_model.pk, "input_image": upload(data), "prompt_strength": "0.35"},
    )
    assert response.status_code == 302, response.context["form"].errors
    generation = Generation.objects.get()
    assert generation.mode == M.IMAGE and generation.input_image_name.startswith("generation-inputs/")
    assert storage.get_storage(storage.PRIVATE).exists(generation.input_image_name)
    assert not storage.get_storage(storage.PUBLIC).exists(generation.input_image_name)  # private
    assert balance_for_user(alice) == before - 8  # 2 images, priced per image before the run
    sent = SandboxPrediction.objects.get().input
    assert sent["prompt_strength"] == 0.35
    assert sent["image"].startswith(f"{sandbox}/files/") and _fetched(alice_client, sent["image"]) == data
    assert "mask" not in sent
    assert wait_for(lambda: _finished(generation)) and generation.status == G.SUCCEEDED
    assert generation.images.count() == 2
    page = alice_client.get(f"/models/images/{generation.images.all()[0].pk}/").content.decode()
    assert "Image to image" in page and f"/models/generations/{generation.pk}/input/" in page


def test_the_strength_slider_takes_its_range_from_the_target_schema(sandbox, alice_client, ready_model):
    page = alice_client.get(f"/models/generate/?model={ready_model.pk}").content.decode()
    slider = page[page.index('name="prompt_strength"') - 200 : page.index('name="prompt_strength"') + 200]
    assert 'type="range"' in slider and 'max="1.0"' in slider and 'min="0.0"' in slider
    assert 'value="0.8"' in slider  # the schema's own default


def test_image_to_image_from_a_gallery_image_sends_a_private_copy_of_it(
    sandbox, alice, alice_client, ready_model
):
    source = finished_generation(alice, ready_model).images.get()
    page = alice_client.get(f"/models/images/{source.pk}/").content.decode()
    assert f"source_image={source.pk}" in page  # the "Use as input" link
    form_page = alice_client.get(f"/models/generate/?model={ready_model.pk}&source_image={source.pk}")
    assert f'value="{source.pk}"' in form_page.content.decode()
    response = alice_client.post(
        "/models/generate/", {**FORM, "model": ready_model.pk, "source_image": source.pk, "num_outputs": "1"}
    )
    assert response.status_code == 302
    generation = Generation.objects.exclude(pk=source.generation_id).get()
    assert generation.mode == M.IMAGE and generation.source_image == source
    original = storage.get_storage(storage.PUBLIC).open(source.file_name).read()
    sent = SandboxPrediction.objects.get().input
    assert _fetched(alice_client, sent["image"]) == original and sent["prompt_strength"] == 0.8


def test_inpainting_sends_the_image_and_the_mask_to_the_trained_version(
    sandbox, alice, alice_client, ready_model
):
    image, mask = png((64, 48)), mask_png((64, 48))
    response = alice_client.post(
        "/models/generate/",
        {
            **FORM,
            "model": ready_model.pk,
            "num_outputs": "1",
            "input_image": upload(image),
            "mask": upload(mask, "mask.png"),
            "prompt_strength": "0.9",
        },
    )
    assert response.status_code == 302, response.context["form"].errors
    generation = Generation.objects.get()
    assert generation.mode == M.INPAINT and generation.mask_name
    prediction = SandboxPrediction.objects.get()
    assert prediction.version == ready_model.replicate_version.rpartition(":")[2]
    assert _fetched(alice_client, prediction.input["mask"]) == mask
    assert _fetched(alice_client, prediction.input["image"]) == image
    assert wait_for(lambda: _finished(generation)) and generation.status == G.SUCCEEDED


def test_the_mask_convention_is_the_predictors_white_repaints_black_keeps():
    """mask-canvas.js paints white over what changes on black: what flux-fine-tuner's predict.py says."""
    doc = json.loads((VENDOR / "cog" / "flux-fine-tuner.trained-version.predict.json").read_text())
    description = doc["input"]["properties"]["mask"]["description"]
    assert "Black areas will be preserved, white areas will be inpainted" in description
    script = (VENDOR.parent.parent.parent / "static" / "js" / "mask-canvas.js").read_text()
    assert 'octx.fillStyle = "#000"' in script and 'ctx.strokeStyle = "#fff"' in script


def test_a_mask_for_a_model_on_flux_dev_lora_is_refused_clearly_and_nothing_is_spent(
    sandbox, alice, alice_client
):
    """black-forest-labs/flux-dev-lora has `image` but no `mask` (cog-flux DevLoraPredictor)."""
    hub = lora_model(alice, name="Hub only", hf_repo_id="fluxsite/hub-only")
    page = alice_client.get(f"/models/generate/?model={hub.pk}").content.decode()
    assert "Inpainting is not available for this model" in page and "data-mask-canvas" not in page
    before = balance_for_user(alice)
    response = alice_client.post(
        "/models/generate/",
        {**FORM, "model": hub.pk, "input_image": upload(png()), "mask": upload(mask_png(), "mask.png")},
    )
    assert response.status_code == 200
    assert "cannot inpaint" in str(response.context["form"].errors["mask"])
    assert not Generation.objects.exists() and not SandboxPrediction.objects.exists()
    assert balance_for_user(alice) == before
    # Image to image alone works there.
    ok = alice_client.post(
        "/models/generate/", {**FORM, "model": hub.pk, "num_outputs": "1", "input_image": upload(png())}
    )
    assert ok.status_code == 302
    sent = SandboxPrediction.objects.get().input
    assert (
        "image" in sent and "mask" not in sent and sent["lora_weights"] == "huggingface.co/fluxsite/hub-only"
    )


def test_two_loras_send_the_second_with_its_strength_and_both_trigger_words(
    sandbox, alice, alice_client, ready_model, style_model
):
    page = alice_client.get(f"/models/generate/?model={ready_model.pk}").content.decode()
    assert f'<option value="{style_model.pk}">Ink · INKSTYLE</option>' in page
    response = alice_client.post(
        "/models/generate/",
        {
            **FORM,
            "model": ready_model.pk,
            "num_outputs": "1",
            "extra_model": style_model.pk,
            "extra_lora_scale": "0.6",
        },
    )
    assert response.status_code == 302, response.context["form"].errors
    generation = Generation.objects.get()
    assert generation.extra_lora_model == style_model
    sent = SandboxPrediction.objects.get().input
    assert sent["extra_lora"] == "huggingface.co/alice/ink-style" and sent["extra_lora_scale"] == 0.6
    assert sent["prompt"] == "ALICEX, a portrait in soft light, in the style of INKSTYLE"
    assert wait_for(lambda: _finished(generation)) and generation.status == G.SUCCEEDED


def test_the_second_lora_strength_is_bounded_by_each_targets_schema(
    sandbox, alice, alice_client, ready_model, style_model
):
    """extra_lora_scale: at most 2 on a trained version (flux-fine-tuner), 3 on flux-dev-lora."""
    refused = alice_client.post(
        "/models/generate/",
        {**FORM, "model": ready_model.pk, "extra_model": style_model.pk, "extra_lora_scale": "2.5"},
    )
    assert "less than or equal to 2" in str(refused.context["form"].errors["extra_lora_scale"])
    assert not Generation.objects.exists()
    hub = lora_model(alice, name="Hub only", trigger_word="HUBX", hf_repo_id="fluxsite/hub-only")
    accepted = alice_client.post(
        "/models/generate/",
        {
            **FORM,
            "model": hub.pk,
            "num_outputs": "1",
            "extra_model": ready_model.pk,
            "extra_lora_scale": "2.5",
        },
    )
    assert accepted.status_code == 302
    sent = SandboxPrediction.objects.get().input
    ref, _, version_id = ready_model.replicate_version.rpartition(":")
    assert sent["extra_lora"] == f"{ref}/{version_id}" and sent["extra_lora_scale"] == 2.5
    assert "HUBX" in sent["prompt"] and "ALICEX" in sent["prompt"]


def test_the_upscaler_is_a_builtin_of_the_sandbox_with_its_real_inputs(sandbox):
    fields = replicate_client.input_schema_get(model="nightmareai/real-esrgan")
    assert set(fields) == {"image", "scale", "face_enhance"}
    assert fields["scale"].maximum == 10 and fields["scale"].default == 4
    assert fields["face_enhance"].type == "boolean"


def test_an_upscale_is_priced_before_it_runs_and_kept_beside_the_original(
    sandbox, settings, alice, alice_client, ready_model
):
    settings.UPSCALE_CREDITS_PER_IMAGE = 3
    source = finished_generation(alice, ready_model).images.get()
    before = balance_for_user(alice)
    response = alice_client.post(f"/models/images/{source.pk}/upscale/", {"scale": "2"})
    generation = Generation.objects.get(mode=M.UPSCALE)
    assert response.status_code == 302 and response["Location"] == f"/models/generations/{generation.pk}/"
    assert balance_for_user(alice) == before - 3 and generation.cost_credits == 3
    prediction = SandboxPrediction.objects.get()
    assert prediction.model == "nightmareai/real-esrgan"
    assert prediction.input["scale"] == 2 and prediction.input["face_enhance"] is False
    assert (
        _fetched(alice_client, prediction.input["image"])
        == storage.get_storage(storage.PUBLIC).open(source.file_name).read()
    )
    assert wait_for(lambda: _finished(generation)) and generation.status == G.SUCCEEDED, (
        generation.error_message
    )
    upscaled = generation.images.get()
    output = replicate_client.prediction_get(prediction_id=generation.replicate_prediction_id).output
    assert isinstance(output, str) and output.endswith(".png")  # a Cog `-> Path`: one uri, not a list
    assert (upscaled.width, upscaled.height) == (128, 128) and upscaled.file_name.endswith(".png")
    assert Image.open(storage.get_storage(storage.PUBLIC).open(upscaled.file_name)).format == "PNG"
    assert generation.source_image == source
    page = alice_client.get(f"/models/images/{source.pk}/").content.decode()
    assert f"/models/images/{upscaled.pk}/" in page and "128 × 128" in page
    assert "The original image" in alice_client.get(f"/models/generations/{generation.pk}/").content.decode()
    assert balance_for_user(alice) == before - 3
    # "Again with this seed" on the upscale: the settings and seed of the image it enlarged.
    again = alice_client.get(f"/models/generate/?again={generation.pk}").context["form"]
    assert again.initial["seed"] == source.generation.seed and again.initial["prompt"] == "a cat"


def test_a_failed_upscale_is_refunded_once_even_with_its_webhook_delivered_twice(
    sandbox, settings, alice, alice_client, ready_model
):
    settings.GENERATION_DOWNLOAD_ATTEMPTS = 1
    source = finished_generation(alice, ready_model).images.get()
    before = balance_for_user(alice)
    fault_inject(service="replicate", operation="files.get", status=503, times=None)
    fault_inject(service="replicate", operation="*", kind=FaultKind.DUPLICATE_WEBHOOK, times=None)
    alice_client.post(f"/models/images/{source.pk}/upscale/", {"scale": "4"})
    generation = Generation.objects.get(mode=M.UPSCALE)
    assert wait_for(lambda: _finished(generation)) and generation.status == G.FAILED
    assert sandbox_runs_finished(generation.replicate_prediction_id)
    assert _spends_and_refunds(generation) == [-2, 2]
    assert balance_for_user(alice) == before and not generation.images.exists()


def test_a_failed_image_in_a_batch_is_refunded_once_and_the_others_kept(
    sandbox, settings, alice, alice_client, ready_model
):
    settings.GENERATION_DOWNLOAD_ATTEMPTS = 1
    fault_inject(service="replicate", operation="files.get", status=503, times=1)  # the first image only
    fault_inject(service="replicate", operation="*", kind=FaultKind.DUPLICATE_WEBHOOK, times=None)
    before = balance_for_user(alice)
    alice_client.post(
        "/models/generate/",
        {**FORM, "model": ready_model.pk, "num_outputs": "3", "input_image": upload(png())},
    )
    generation = Generation.objects.get()
    assert wait_for(lambda: _finished(generation)) and generation.status == G.SUCCEEDED
    assert sandbox_runs_finished(generation.replicate_prediction_id)
    assert generation.images.count() == 2
    assert _spends_and_refunds(generation) == [-12, 4]  # one image of three given back, once
    assert balance_for_user(alice) == before - 8
    assert "1 of 3 images could not be made or saved" in generation.error_message


def test_again_with_this_seed_reuses_the_inpainting_image_and_mask(sandbox, alice, alice_client, ready_model):
    alice_client.post(
        "/models/generate/",
        {
            **FORM,
            "model": ready_model.pk,
            "num_outputs": "1",
            "seed": "99",
            "input_image": upload(png()),
            "mask": upload(mask_png(), "mask.png"),
            "prompt_strength": "0.7",
        },
    )
    first = Generation.objects.get()
    assert wait_for(lambda: _finished(first))
    page = alice_client.get(f"/models/generate/?again={first.pk}")
    form = page.context["form"]
    assert form.initial["reuse"] == first.pk and form.initial["seed"] == 99
    assert form.initial["prompt_strength"] == 0.7
    assert f"/models/generations/{first.pk}/input/" in page.content.decode()
    again = {
        **FORM,
        "model": ready_model.pk,
        "num_outputs": "1",
        "seed": "99",
        "reuse": first.pk,
        "prompt_strength": "0.7",
    }
    assert alice_client.post("/models/generate/", again).status_code == 302
    second = Generation.objects.exclude(pk=first.pk).get()
    assert second.mode == M.INPAINT and second.seed == 99
    assert (second.input_image_name, second.mask_name) == (first.input_image_name, first.mask_name)
    sent = SandboxPrediction.objects.get(pk=second.replicate_prediction_id).input
    assert "mask" in sent and "image" in sent and sent["seed"] == 99


def test_again_with_this_seed_keeps_both_loras(sandbox, alice, alice_client, ready_model, style_model):
    alice_client.post(
        "/models/generate/",
        {
            **FORM,
            "model": ready_model.pk,
            "num_outputs": "1",
            "extra_model": style_model.pk,
            "extra_lora_scale": "0.4",
        },
    )
    first = Generation.objects.get()
    form = alice_client.get(f"/models/generate/?again={first.pk}").context["form"]
    assert form.initial["extra_model"] == style_model.pk and form.initial["extra_lora_scale"] == 0.4
    assert form.initial["seed"] == first.seed


def test_compare_shows_the_settings_of_every_mode_side_by_side(sandbox, alice, alice_client, ready_model):
    text = finished_generation(alice, ready_model).images.get()
    alice_client.post(
        "/models/generate/",
        {**FORM, "model": ready_model.pk, "num_outputs": "1", "input_image": upload(png())},
    )
    generation = Generation.objects.get(mode=M.IMAGE)
    assert wait_for(lambda: _finished(generation)) and generation.status == G.SUCCEEDED
    image = generation.images.get()
    gallery = alice_client.get("/models/gallery/").content.decode()
    assert 'form="compare-form"' in gallery and f'value="{image.pk}"' in gallery
    page = alice_client.get(f"/models/gallery/compare/?images={text.pk}&images={image.pk}")
    html = page.content.decode()
    assert page.status_code == 200 and [i.pk for i in page.context["images"]] == [text.pk, image.pk]
    assert "Text to image" in html and "Image to image" in html
    assert f"/models/generations/{generation.pk}/input/" in html and str(generation.seed) in html
    assert f"?again={generation.pk}" in html and f"?again={text.generation_id}" in html
    assert GeneratedImage.objects.count() == 2
    image_again = alice_client.get(f"/models/generate/?again={generation.pk}")
    assert image_again.context["form"].initial["reuse"] == generation.pk


def test_an_image_too_large_for_the_pixel_cap_is_refused_before_anything_is_spent(
    sandbox, settings, alice, alice_client, ready_model
):
    settings.GENERATION_INPUT_MAX_PIXELS = 1000
    before = balance_for_user(alice)
    response = alice_client.post(
        "/models/generate/", {**FORM, "model": ready_model.pk, "input_image": upload(png((64, 48)))}
    )
    assert "64 × 48 pixels; the most we take is 0.001 megapixels" in response.content.decode()
    assert not Generation.objects.exists() and not SandboxPrediction.objects.exists()
    assert balance_for_user(alice) == before
