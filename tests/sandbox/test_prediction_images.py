"""The stand-in's output images come from the model that made them, driven by the `replicate` SDK.

A trained version draws with its training's own photos; the seed, the prompt, lora_scale,
extra_lora, an input image and a mask each change the picture the way the predictor's inputs say
(sandbox/vendor/replicate/cog/flux-fine-tuner.trained-version.predict.json, flux-dev-lora.predict.json).
What the pixels look like is the sandbox's own (no vendor material shows FLUX output); the tests
check what the inputs do to them, which is what the application relies on.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import pytest
import replicate
from django.conf import settings
from huggingface_hub import CommitOperationAdd
from PIL import Image, ImageChops, ImageStat

from fluxsite.integrations import huggingface_client as hf
from sandbox.replicate.pictures import BAND_HEIGHT
from tests.helpers import wait_until
from tests.sandbox.replicate_kit import dataset_url, zip_bytes

# Slow sandbox journeys whose outcome does not depend on the database: they run once in CI (pass 2).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.once]

GREEN = (40, 190, 70)
BLUE = (40, 70, 210)
PROMPT = "a portrait of ZXQ in a red room"


@pytest.fixture
def sdk(sandbox) -> replicate.Client:
    return replicate.Client(api_token=settings.REPLICATE_API_TOKEN, base_url=settings.REPLICATE_BASE_URL)


@pytest.fixture(autouse=True)
def _fast_predictions(settings):
    settings.SANDBOX_PREDICTION_SECONDS = 0.2


def _encoded(picture: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    picture.save(out, format=fmt)
    return out.getvalue()


def _dataset(colour: tuple[int, int, int]) -> bytes:
    """Three photos of one colour in three shapes (portrait, landscape, square)."""
    return zip_bytes(
        {
            "photo_1.jpg": _encoded(Image.new("RGB", (300, 400), colour), "JPEG"),
            "photo_1.txt": "a photo of [trigger]",
            "photo_2.png": _encoded(Image.new("RGB", (400, 300), colour)),
            "photo_3.jpg": _encoded(Image.new("RGB", (256, 256), colour), "JPEG"),
        }
    )


def _train(sdk: replicate.Client, name: str, colour: tuple[int, int, int] = GREEN):
    """A succeeded training of fluxsite/<name> on photos of `colour`."""
    sdk.models.create(owner="fluxsite", name=name, visibility="private", hardware="cpu")
    trainer = sdk.models.get("ostris/flux-dev-lora-trainer").latest_version
    assert trainer is not None
    training = sdk.trainings.create(
        model="ostris/flux-dev-lora-trainer",
        version=trainer.id,
        destination=f"fluxsite/{name}",
        input={"input_images": dataset_url(_dataset(colour), name=f"datasets/{name}.zip"), "steps": 100},
    )
    done = wait_until(
        lambda: sdk.trainings.get(training.id), lambda t: t.status in ("succeeded", "failed"), timeout=20
    )
    assert done.status == "succeeded", done.error
    return done


def _version(training) -> str:
    return training.output["version"].rpartition(":")[2]


def _run(sdk: replicate.Client, *, version: str | None = None, model: str | None = None, **input_):
    if version:
        prediction = sdk.predictions.create(version=version, input=input_, wait=10)
    else:
        prediction = sdk.models.predictions.create(
            model=model or "black-forest-labs/flux-dev-lora", input=input_, wait=10
        )
    return prediction


def _file(prediction, index: int = 0) -> bytes:
    assert prediction.status == "succeeded", prediction.error
    response = httpx.get(prediction.output[index], timeout=10)
    assert response.status_code == 200
    return response.content


def _picture(content: bytes) -> Image.Image:
    """The image below the SANDBOX band, in RGB."""
    picture = Image.open(io.BytesIO(content)).convert("RGB")
    return picture.crop((0, BAND_HEIGHT, picture.width, picture.height))


def _difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel, 0..255."""
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def _distance(picture: Image.Image, colour: tuple[int, int, int]) -> float:
    return _difference(picture, Image.new("RGB", picture.size, colour))


def _data_uri(content: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(content).decode()


def _input_photo() -> Image.Image:
    """A 512 x 512 input with structure: four coloured quarters."""
    picture = Image.new("RGB", (512, 512), (230, 200, 40))
    picture.paste((200, 40, 160), (256, 0, 512, 256))
    picture.paste((20, 20, 20), (0, 256, 256, 512))
    picture.paste((240, 240, 240), (256, 256, 512, 512))
    return picture


# --- Seed, prompt, determinism ---------------------------------------------------------------------
def test_the_same_inputs_give_the_same_bytes_and_another_seed_a_visibly_different_picture(sdk):
    version = _version(_train(sdk, "lora-green"))
    first = _file(_run(sdk, version=version, prompt=PROMPT, seed=42))
    again = _file(_run(sdk, version=version, prompt=PROMPT, seed=42))
    other_seed = _file(_run(sdk, version=version, prompt=PROMPT, seed=43))

    assert first == again  # two predictions, different ids: the id is not in the recipe
    assert first != other_seed
    assert _difference(_picture(first), _picture(other_seed)) > 5


def test_the_prompt_changes_the_picture_and_a_run_without_seed_reports_the_one_it_used(sdk):
    lighthouse = _run(sdk, prompt="a lighthouse at dusk", seed=7, output_format="png")
    forest = _run(sdk, prompt="a pine forest in snow", seed=7, output_format="png")
    assert _difference(_picture(_file(lighthouse)), _picture(_file(forest))) > 5

    unseeded = _run(sdk, prompt="a lighthouse at dusk", output_format="png")
    seed = int(unseeded.logs.split("Using seed: ", 1)[1].split()[0])
    assert 0 <= seed < 2**16  # predict.py: int.from_bytes(os.urandom(2), "big")
    assert _file(_run(sdk, prompt="a lighthouse at dusk", seed=seed, output_format="png")) == _file(unseeded)


def test_each_output_of_a_batch_is_its_own_picture(sdk):
    prediction = _run(sdk, prompt=PROMPT, seed=5, num_outputs=2, output_format="png")
    assert _difference(_picture(_file(prediction, 0)), _picture(_file(prediction, 1))) > 5


def test_output_format_quality_and_aspect_ratio_still_hold(sdk):
    small = _file(_run(sdk, prompt=PROMPT, seed=1, output_format="jpg", output_quality=10))
    large = _file(_run(sdk, prompt=PROMPT, seed=1, output_format="jpg", output_quality=95))
    assert Image.open(io.BytesIO(small)).format == "JPEG"
    assert len(small) < len(large)
    wide = Image.open(io.BytesIO(_file(_run(sdk, prompt=PROMPT, seed=1, aspect_ratio="16:9"))))
    assert wide.format == "WEBP"
    assert wide.size == (512, 288)


# --- LoRA strength -----------------------------------------------------------------------------------
def test_strength_zero_is_the_base_model_without_any_lora(sdk):
    training = _train(sdk, "lora-green")
    common: dict[str, Any] = {"prompt": PROMPT, "seed": 11, "output_format": "png"}
    base = _file(_run(sdk, **common))  # flux-dev-lora, no lora_weights

    assert _file(_run(sdk, version=_version(training), lora_scale=0, **common)) == base
    weights = training.output["weights"]
    assert _file(_run(sdk, lora_weights=weights, lora_scale=0, **common)) == base
    # ...and with any strength at all, the LoRA shows.
    assert _file(_run(sdk, version=_version(training), lora_scale=0.2, **common)) != base


def test_more_strength_brings_the_picture_closer_to_the_dataset_photos(sdk):
    version = _version(_train(sdk, "lora-green"))
    distances = [
        _distance(_picture(_file(_run(sdk, version=version, prompt=PROMPT, seed=3, lora_scale=scale))), GREEN)
        for scale in (0, 0.3, 0.7, 1.0, 2.0)
    ]
    assert distances == sorted(distances, reverse=True)
    assert len(set(distances)) == len(distances)  # strictly
    assert distances[0] - distances[-1] > 30  # visibly, not by a rounding error


def test_the_base_model_draws_a_trainings_photos_from_its_weights_url_or_its_model(sdk):
    training = _train(sdk, "lora-green")
    common: dict[str, Any] = {"prompt": PROMPT, "seed": 9}
    plain = _distance(_picture(_file(_run(sdk, **common))), GREEN)
    by_url = _distance(_picture(_file(_run(sdk, lora_weights=training.output["weights"], **common))), GREEN)
    by_model = _distance(_picture(_file(_run(sdk, lora_weights="fluxsite/lora-green", **common))), GREEN)
    unknown = _distance(_picture(_file(_run(sdk, lora_weights="huggingface.co/no/such", **common))), GREEN)

    assert by_url < plain - 30
    assert by_model == pytest.approx(by_url, abs=1)
    assert unknown == pytest.approx(plain, abs=1)  # weights the sandbox does not know: the base picture


def test_weights_published_to_the_hub_carry_their_training_back(sdk, settings, tmp_path):
    """The app publishes the tar's lora.safetensors to Hugging Face and runs the base model with
    lora_weights=huggingface.co/<repo>: the picture is the training's."""
    import tarfile

    settings.SANDBOX_HF_ROOT = tmp_path / "hf-store"
    training = _train(sdk, "lora-green")
    with tarfile.open(fileobj=io.BytesIO(httpx.get(training.output["weights"]).content)) as tar:
        member = tar.extractfile("output/flux_train_replicate/lora.safetensors")
        assert member is not None
        lora = member.read()
    api = hf.build_api(token=settings.HF_TOKEN)
    api.create_repo("fluxsite/green-lora", private=False, exist_ok=True)
    api.create_commit(
        "fluxsite/green-lora", [CommitOperationAdd("lora.safetensors", lora)], commit_message="Upload LoRA"
    )
    common: dict[str, Any] = {"prompt": PROMPT, "seed": 9}
    plain = _distance(_picture(_file(_run(sdk, **common))), GREEN)
    published = _distance(
        _picture(_file(_run(sdk, lora_weights="huggingface.co/fluxsite/green-lora", **common))), GREEN
    )
    assert published < plain - 30


def test_extra_lora_blends_a_second_training_by_its_own_scale(sdk):
    green = _train(sdk, "lora-green", GREEN)
    blue = _train(sdk, "lora-blue", BLUE)
    to_blue = [
        _distance(
            _picture(
                _file(
                    _run(
                        sdk,
                        version=_version(green),
                        prompt=PROMPT,
                        seed=4,
                        extra_lora=blue.output["weights"],
                        extra_lora_scale=scale,
                    )
                )
            ),
            BLUE,
        )
        for scale in (0, 0.5, 1.0, 2.0)
    ]
    assert to_blue == sorted(to_blue, reverse=True)
    assert to_blue[0] - to_blue[-1] > 20


# --- Image to image and inpainting -------------------------------------------------------------------
def test_image_to_image_goes_from_the_input_at_strength_0_to_the_generation_at_1(sdk):
    photo = _input_photo()
    url = dataset_url(_encoded(photo), name="inputs/photo.png")  # a signed URL of our own storage
    common: dict[str, Any] = {"prompt": PROMPT, "seed": 21, "output_format": "png"}
    keep = _picture(_file(_run(sdk, image=url, prompt_strength=0.0, **common)))
    half = _picture(_file(_run(sdk, image=_data_uri(_encoded(photo)), prompt_strength=0.5, **common)))
    full = _picture(_file(_run(sdk, image=url, prompt_strength=1.0, **common)))
    text_to_image = _picture(_file(_run(sdk, **common)))
    source = photo.crop((0, BAND_HEIGHT, 512, 512))

    assert _difference(keep, source) < 1
    assert _difference(full, text_to_image) < 1  # same size (512 x 512): the pure generation
    assert _difference(keep, source) < _difference(half, source) < _difference(full, source)


def test_image_to_image_takes_the_input_images_size_rounded_to_16(sdk):
    photo = Image.new("RGB", (300, 200), (10, 120, 200))
    prediction = _run(sdk, prompt=PROMPT, image=_data_uri(_encoded(photo, "JPEG"), "image/jpeg"))
    assert Image.open(io.BytesIO(_file(prediction))).size == (304, 208)


def test_inpainting_keeps_the_black_of_the_mask_and_repaints_the_white(sdk):
    version = _version(_train(sdk, "lora-green"))
    photo = _input_photo()
    mask = Image.new("L", (512, 512), 0)
    mask.paste(255, (256, 0, 512, 512))  # repaint the right half
    out = _picture(
        _file(
            _run(
                sdk,
                version=version,
                prompt=PROMPT,
                seed=2,
                image=dataset_url(_encoded(photo), name="inputs/photo.png"),
                mask=_data_uri(_encoded(mask)),
                prompt_strength=1.0,
                output_format="webp",
            )
        )
    )
    source = photo.crop((0, BAND_HEIGHT, 512, 512))
    height = out.height

    def half(picture: Image.Image, left: int) -> Image.Image:
        return picture.crop((left, 0, left + 256, height))

    assert _difference(half(out, 0), half(source, 0)) < 4  # kept, within WebP noise
    assert _difference(half(out, 256), half(source, 256)) > 30  # repainted
    assert _distance(half(out, 256), GREEN) < _distance(half(source, 256), GREEN)  # with the LoRA


# --- Inputs that do not open -------------------------------------------------------------------------
def test_an_input_image_that_is_not_an_image_fails_the_prediction_like_the_predictor(sdk):
    url = dataset_url(b"this is not a picture", name="inputs/broken.png")
    prediction = _run(sdk, prompt=PROMPT, image=url)
    assert prediction.status == "failed"
    assert prediction.output is None
    # PIL's Image.open on the file Cog downloaded the URL to (named after the URL's last segment).
    assert prediction.error.startswith("cannot identify image file '/tmp/")


def test_an_undecodable_mask_and_an_unreachable_image_fail_with_an_error(sdk, sandbox):
    version = _version(_train(sdk, "lora-green"))
    photo = _data_uri(_encoded(_input_photo()))
    bad_mask = _run(sdk, version=version, prompt=PROMPT, image=photo, mask=_data_uri(b"GIF89a broken"))
    assert bad_mask.status == "failed"
    assert bad_mask.error.startswith("cannot identify image file")

    missing = _run(sdk, prompt=PROMPT, image=f"{sandbox}/media/nothing-here.png")
    assert missing.status == "failed"
    # No vendor material records Cog's message for an input URL that fails: the wording is the
    # sandbox's own (the same as for a training's input_images); what is claimed is a failed run.
    assert missing.error == "Exception: failed to download image: HTTP 404"

    # The stand-in is still serving: the next prediction runs.
    assert _run(sdk, prompt=PROMPT, seed=1).status == "succeeded"


def test_the_admin_shows_a_trainings_photos_and_a_predictions_mode(sdk, staff_client):
    training = _train(sdk, "lora-green")
    page = staff_client.get(f"/admin/sandbox_replicate/sandboxtraining/{training.id}/change/")
    assert page.status_code == 200
    assert page.content.decode().count('<img src="data:image/jpeg;base64,') == 3

    photo = _data_uri(_encoded(_input_photo()))
    prediction = _run(sdk, version=_version(training), prompt=PROMPT, image=photo, mask=photo)
    page = staff_client.get(f"/admin/sandbox_replicate/sandboxprediction/{prediction.id}/change/")
    assert page.status_code == 200
    assert "inpainting" in page.content.decode()
