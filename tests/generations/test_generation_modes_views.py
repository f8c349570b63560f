"""The modes' forms without Replicate: every refused input image or mask gets a clear message before
anything is spent, someone else's image, model or generation is a 404, methods and the anonymous."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from billing.selectors import balance_for_user
from generations.models import Generation
from generations.services import GenerationError, generated_image_upscale
from tests.generations.generation_kit import FORM, finished_generation, lora_model
from tests.generations.modes_kit import mask_png, png, upload
from tests.helpers import assert_no_inline_script

pytestmark = pytest.mark.django_db
VERSION = "fluxsite/lora-x:" + "a" * 64


@pytest.fixture
def model(alice):
    return lora_model(alice, replicate_version=VERSION)


@pytest.fixture
def bobs(bob):
    model = lora_model(bob, name="Bob's", replicate_version="fluxsite/lora-b:" + "b" * 64)
    generation = finished_generation(bob, model)
    return {"model": model, "generation": generation, "image": generation.images.get()}


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="GIF")
    return out.getvalue()


def _private_files(settings) -> list[Path]:
    root = Path(settings.STORAGES["private"]["OPTIONS"]["location"])
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"input_image": upload(b"not an image at all", "x.png")}, "The image could not be read as an image"),
        ({"input_image": upload(_gif(), "x.gif", "image/gif")}, "Use a JPEG, PNG or WebP image."),
        ({"input_image": upload(png()[:40], "cut.png")}, "The image could not be read as an image"),
        (
            {"input_image": upload(png((64, 48))), "mask": upload(b"GIF89a junk", "m.png")},
            "The mask could not be read",
        ),
        (
            {"input_image": upload(png((64, 48))), "mask": upload(mask_png((32, 32)), "m.png")},
            "The mask is 32 × 32 pixels but the image is 64 × 48",
        ),
        ({"mask": upload(mask_png(), "m.png")}, "A mask needs an image to paint over"),
    ],
)
def test_a_bad_input_image_or_mask_is_refused_clearly_before_anything_is_spent(
    settings, alice, alice_client, model, files, message
):
    before = balance_for_user(alice)
    response = alice_client.post("/models/generate/", {**FORM, "model": model.pk, **files})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Generation.objects.exists() and balance_for_user(alice) == before
    assert _private_files(settings) == []  # nothing was stored


def test_an_input_image_or_mask_over_the_byte_limit_is_a_form_error(settings, alice, alice_client, model):
    settings.GENERATION_INPUT_MAX_BYTES = 100
    before = balance_for_user(alice)
    big = png((64, 48), color=(1, 2, 3)) + b"\0" * 200
    response = alice_client.post(
        "/models/generate/",
        {**FORM, "model": model.pk, "input_image": upload(big), "mask": upload(big, "m.png")},
    )
    errors = response.context["form"].errors
    assert "the most we take is 100" in str(errors["input_image"])
    assert "The mask is" in str(errors["mask"])
    assert not Generation.objects.exists() and balance_for_user(alice) == before


def test_a_valid_image_is_stored_privately_and_priced_per_image(
    settings, alice, alice_client, bob_client, model
):
    before = balance_for_user(alice)
    response = alice_client.post(
        "/models/generate/", {**FORM, "model": model.pk, "num_outputs": "3", "input_image": upload(png())}
    )
    assert response.status_code == 302
    generation = Generation.objects.get()
    assert (
        generation.cost_credits == 12 and balance_for_user(alice) <= before - 12 + 12
    )  # refunded if Replicate is away
    assert generation.params["input_width"] == 64 and generation.params["input_height"] == 48
    assert [p.name for p in _private_files(settings)] == ["input.png"]
    served = alice_client.get(f"/models/generations/{generation.pk}/input/")
    assert served.status_code == 200 and b"".join(served.streaming_content) == png()
    assert alice_client.get(f"/models/generations/{generation.pk}/mask/").status_code == 404  # none
    assert bob_client.get(f"/models/generations/{generation.pk}/input/").status_code == 404  # not his


def test_someone_elses_gallery_image_as_the_input_is_a_404_and_nothing_is_spent(
    alice, alice_client, model, bobs
):
    before = balance_for_user(alice)
    image = bobs["image"]
    assert alice_client.get(f"/models/generate/?source_image={image.pk}").status_code == 404
    response = alice_client.post("/models/generate/", {**FORM, "model": model.pk, "source_image": image.pk})
    assert response.status_code == 404
    assert not Generation.objects.filter(owner=alice).exists() and balance_for_user(alice) == before


def test_someone_elses_model_as_the_second_lora_is_a_404(alice, alice_client, model, bobs):
    before = balance_for_user(alice)
    response = alice_client.post(
        "/models/generate/", {**FORM, "model": model.pk, "extra_model": bobs["model"].pk}
    )
    assert response.status_code == 404
    assert alice_client.get(f"/models/generate/?extra_model={bobs['model'].pk}").status_code == 404
    assert not Generation.objects.filter(owner=alice).exists() and balance_for_user(alice) == before


def test_someone_elses_generation_to_reuse_is_a_404(alice, alice_client, model, bobs):
    response = alice_client.post(
        "/models/generate/", {**FORM, "model": model.pk, "reuse": bobs["generation"].pk}
    )
    assert response.status_code == 404
    assert alice_client.get(f"/models/generate/?again={bobs['generation'].pk}").status_code == 404


def test_the_same_model_twice_is_refused(alice, alice_client, model):
    before = balance_for_user(alice)
    response = alice_client.post("/models/generate/", {**FORM, "model": model.pk, "extra_model": model.pk})
    assert "Choose a different model as the second LoRA" in response.content.decode()
    assert not Generation.objects.exists() and balance_for_user(alice) == before


def test_upscaling_someone_elses_image_is_a_404_and_the_service_refuses_it(alice, alice_client, bob, bobs):
    before = balance_for_user(alice)
    assert alice_client.post(f"/models/images/{bobs['image'].pk}/upscale/", {"scale": "2"}).status_code == 404
    with pytest.raises(GenerationError):
        generated_image_upscale(user=alice, image=bobs["image"], scale=2)
    assert not Generation.objects.filter(owner=alice).exists() and balance_for_user(alice) == before


def test_a_scale_the_form_does_not_offer_is_refused_without_spending(alice, alice_client, model):
    image = finished_generation(alice, model).images.get()
    before = balance_for_user(alice)
    response = alice_client.post(f"/models/images/{image.pk}/upscale/", {"scale": "7"}, follow=True)
    assert "Choose how much to upscale" in response.content.decode()
    assert Generation.objects.count() == 1 and balance_for_user(alice) == before


def test_upscale_is_post_only_and_needs_a_login(alice_client, anon_client, model, alice):
    image = finished_generation(alice, model).images.get()
    assert alice_client.get(f"/models/images/{image.pk}/upscale/").status_code == 405
    response = anon_client.post(f"/models/images/{image.pk}/upscale/", {"scale": "2"})
    assert response.status_code == 302 and "/login" in response["Location"]


def test_compare_needs_two_to_four_of_ones_own_images(alice, alice_client, anon_client, model, bobs):
    mine = [finished_generation(alice, model).images.get() for _ in range(5)]
    one = alice_client.get(f"/models/gallery/compare/?images={mine[0].pk}")
    assert one.status_code == 422 and "Pick two to four images to compare (1 picked)" in one.content.decode()
    five = "&".join(f"images={i.pk}" for i in mine)
    assert "(5 picked)" in alice_client.get(f"/models/gallery/compare/?{five}").content.decode()
    assert alice_client.get("/models/gallery/compare/").status_code == 200  # the how-to
    foreign = alice_client.get(f"/models/gallery/compare/?images={mine[0].pk}&images={bobs['image'].pk}")
    assert foreign.status_code == 404
    two = alice_client.get(f"/models/gallery/compare/?images={mine[1].pk}&images={mine[0].pk}")
    assert two.status_code == 200 and [i.pk for i in two.context["images"]] == [mine[1].pk, mine[0].pk]
    assert_no_inline_script(two.content)
    assert anon_client.get(f"/models/gallery/compare/?images={mine[0].pk}").status_code == 302


def test_the_generate_page_has_the_mask_tool_and_no_inline_script(alice_client, model, alice):
    image = finished_generation(alice, model).images.get()
    page = alice_client.get(f"/models/generate/?model={model.pk}&source_image={image.pk}").content.decode()
    assert 'enctype="multipart/form-data"' in page and "js/mask-canvas.js" in page
    assert "data-mask-canvas" in page and "data-mask-brush" in page and "data-mask-clear" in page
    assert 'value="erase"' in page and image.file_name in page
    assert_no_inline_script(page)


def test_again_with_a_new_mask_over_the_reused_image_is_checked_against_that_image(
    settings, alice, alice_client, model
):
    alice_client.post(
        "/models/generate/", {**FORM, "model": model.pk, "num_outputs": "1", "input_image": upload(png())}
    )
    first = Generation.objects.get()
    before = balance_for_user(alice)
    wrong = alice_client.post(
        "/models/generate/",
        {
            **FORM,
            "model": model.pk,
            "num_outputs": "1",
            "reuse": first.pk,
            "mask": upload(mask_png((10, 10)), "m.png"),
        },
    )
    assert "The mask is 10 × 10 pixels but the image is 64 × 48" in wrong.content.decode()
    assert Generation.objects.count() == 1 and balance_for_user(alice) == before
    right = alice_client.post(
        "/models/generate/",
        {
            **FORM,
            "model": model.pk,
            "num_outputs": "1",
            "reuse": first.pk,
            "mask": upload(mask_png(), "m.png"),
        },
    )
    assert right.status_code == 302
    second = Generation.objects.exclude(pk=first.pk).get()
    assert second.mode == Generation.Mode.INPAINT and second.input_image_name == first.input_image_name
    assert second.mask_name and second.params["input_width"] == 64


def test_the_image_page_shows_the_upscale_price_before_it_runs(settings, alice, alice_client, model):
    settings.UPSCALE_CREDITS_PER_IMAGE = 5
    image = finished_generation(alice, model).images.get()
    page = alice_client.get(f"/models/images/{image.pk}/").content.decode()
    assert "Upscale · 5 credits" in page and f"/models/images/{image.pk}/upscale/" in page


def test_account_deletion_lists_the_private_inputs_too(alice, alice_client, model):
    from generations.selectors import owned_file_names

    alice_client.post(
        "/models/generate/",
        {
            **FORM,
            "model": model.pk,
            "num_outputs": "1",
            "input_image": upload(png()),
            "mask": upload(mask_png(), "m.png"),
        },
    )
    generation = Generation.objects.get()
    files = owned_file_names(alice)
    assert ("private", generation.input_image_name) in files and ("private", generation.mask_name) in files


def test_two_loras_of_different_bases_are_refused_and_not_offered(alice, alice_client, model):
    from models_app.bases import QWEN_IMAGE

    qwen = lora_model(
        alice, name="Qwen one", replicate_version="fluxsite/lora-q:" + "c" * 64, base_model=QWEN_IMAGE
    )
    flux_style = lora_model(alice, name="Flux style", replicate_version="fluxsite/lora-s:" + "d" * 64)
    page = alice_client.get(f"/models/generate/?model={model.pk}").content.decode()
    picker = page[
        page.index('name="extra_model"') : page.index("</select>", page.index('name="extra_model"'))
    ]
    assert f'value="{flux_style.pk}"' in picker and f'value="{qwen.pk}"' not in picker
    before = balance_for_user(alice)
    with pytest.raises(GenerationError, match="must share their base model"):
        from generations.services import generation_start

        generation_start(
            user=alice, model=model, prompt="a photo", params={"num_outputs": 1}, extra_model=qwen
        )
    assert balance_for_user(alice) == before and not Generation.objects.exists()
