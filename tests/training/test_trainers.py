"""The trainer registry (training/trainers/), every test parametrised over it.

Through the sandbox over real HTTP like test_pipeline.py: a training with each trainer goes from
photos to a published model; the estimate follows the trainer; what a trainer cannot take is a
field error on the start page with nothing spent; duplicating keeps the trainer; and what a model
generates with follows its base.

The registry's numbers are copied from the vendor files (app code never reads the sandbox); the
first test compares them with those files, so a copy that drifts fails here. The fast FLUX
trainer's steps range is ours (its vendor file has none): the test asserts the file still has none.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django import forms
from django.urls import reverse

from billing.selectors import balance_for_user
from sandbox.replicate.models import SandboxTraining
from tests.helpers import wait_until
from tests.training.conftest import add_photos
from training.models import DatasetImage, TrainingJob
from training.trainers.registry import TRAINERS, trainer_get

S = TrainingJob.Status
VENDOR = Path(__file__).resolve().parents[2] / "sandbox" / "vendor" / "replicate" / "cog"
SCHEMA_FILES = {
    "flux-dev": "flux-dev-lora-trainer.train.json",
    "fast-flux": "fast-flux-trainer.train.json",
    "qwen-image": "qwen-image-lora-trainer.train.json",
}
KEYS = list(TRAINERS)


def test_every_registered_trainer_has_a_vendor_schema_file():
    assert set(SCHEMA_FILES) == set(TRAINERS)


@pytest.mark.parametrize("key", KEYS)
def test_a_trainers_settings_are_its_vendor_schemas_names_ranges_and_defaults(key):
    schema = json.loads((VENDOR / SCHEMA_FILES[key]).read_text())
    properties = schema["input"]["properties"]
    enums = schema.get("enums", {})
    for setting in trainer_get(key).settings:
        spec = properties[setting.input]  # every setting is an input the trainer declares
        if setting.ours:
            # No vendor bounds exist: ours stand in, and the day the vendor publishes some, this fails.
            assert "minimum" not in spec and "maximum" not in spec and "default" not in spec
            continue
        assert spec.get("minimum") == setting.minimum, setting.name
        assert spec.get("maximum") == setting.maximum, setting.name
        if key != "qwen-image" or setting.name != "default_caption":  # ours names the subject
            assert spec.get("default") == setting.default, setting.name
        if setting.choices:
            ref = spec["allOf"][0]["$ref"].rsplit("/", 1)[-1]
            assert tuple(enums[ref]["enum"]) == setting.choices


@pytest.mark.parametrize("key", KEYS)
def test_the_estimate_is_the_trainers_time_and_hardware_price(key, settings):
    from training.services import sample_grid_estimate, training_estimate

    trainer = trainer_get(key)
    credits, dollars = training_estimate(steps=1000, sample_prompts=0, trainer=key)
    assert credits == trainer.cost_credits(steps=1000)
    _, grid = sample_grid_estimate(prompts=2)
    assert training_estimate(steps=1000, sample_prompts=2, trainer=key)[0] == credits + grid
    # The typical runs the research quotes (docs/trainers-research.md).
    expected = {"flux-dev": "1.68", "fast-flux": "1.46", "qwen-image": "1.14"}[key]
    assert dollars == expected


def test_the_trainers_estimates_differ_and_the_flux_one_is_unchanged(settings):
    from billing.pricing import training_cost_credits
    from training.services import training_estimate

    assert training_estimate(steps=1000, sample_prompts=0)[0] == training_cost_credits(steps=1000)
    assert len({training_estimate(steps=1000, sample_prompts=0, trainer=k)[0] for k in KEYS}) == 3


# --- Through the sandbox ----------------------------------------------------------------------------
def _params(key: str) -> dict:
    return {**trainer_get(key).defaults(), "sample_prompts": []} | (
        {"autocaption": True} if key == "flux-dev" else {}
    )


@pytest.fixture
def funded(alice):
    from billing.services import credits_grant

    credits_grant(user=alice, amount=5000, reference="test:topup")
    return alice


def _job(alice, alice_client, key: str, *, trigger: str = "Anna", photos: int = 10) -> TrainingJob:
    from training.services import training_create

    job = training_create(owner=alice, name="Anna", trigger_word=trigger, subject_kind="subject", trainer=key)
    if photos:
        add_photos(alice_client, job, photos)
    return job


@pytest.mark.django_db(transaction=True)
@pytest.mark.once  # a sandbox journey, the same on any database: runs once in CI
@pytest.mark.parametrize("key", KEYS)
def test_a_training_with_each_trainer_goes_from_photos_to_a_published_model(
    key, sandbox, funded, alice_client, settings
):
    from fluxsite.integrations import huggingface_client, storage
    from training.services import trainings

    settings.REPLICATE_TIMEOUT_SECONDS = 5
    trainer = trainer_get(key)
    job = _job(funded, alice_client, key)
    before = balance_for_user(funded)
    trainings.training_start(job=job, params=_params(key))
    job = wait_until(
        lambda: TrainingJob.objects.get(pk=job.pk), lambda j: j.status in (S.SUCCEEDED, S.FAILED), timeout=40
    )
    assert job.status == S.SUCCEEDED, (job.error_message, list(job.events.values_list("message", flat=True)))
    assert job.trainer == key
    run = SandboxTraining.objects.get()
    assert (
        run.trainer == trainer.model() and run.trainer_version == trainer.version() or not trainer.version()
    )
    assert trainer.dataset_input in run.input
    assert job.progress_step == job.progress_total == int(trainer.setting("steps").default)
    assert job.current_loss is not None
    model = job.lora_model
    assert model.base_model == trainer.base_model and model.trained_with == trainer.model()
    assert model.status == "ready" and model.hf_repo_id
    ours = b"".join(storage.file_iter(alias=storage.PRIVATE, name=model.weights_file_name))
    published = huggingface_client.file_download(
        repo_id=model.hf_repo_id, filename="lora.safetensors", local_dir=settings.MEDIA_ROOT
    )
    assert published.read_bytes() == ours
    card = huggingface_client.file_download(
        repo_id=model.hf_repo_id, filename="README.md", local_dir=Path(settings.MEDIA_ROOT) / "card"
    ).read_text()
    assert f"base_model: {trainer.base_model}" in card and trainer.model() in card
    assert job.cost_credits and balance_for_user(funded) == before - job.cost_credits


@pytest.mark.django_db(transaction=True)
@pytest.mark.once  # a sandbox journey, the same on any database: runs once in CI
def test_the_qwen_trainer_gets_our_zip_as_dataset_and_a_default_caption_that_names_the_subject(
    sandbox, funded, alice_client, settings
):
    from training.services import trainings

    job = _job(funded, alice_client, "qwen-image", trigger="Sabrina")
    first = DatasetImage.objects.filter(dataset__training=job).order_by("pk")[0]
    DatasetImage.objects.filter(dataset__training=job).exclude(pk=first.pk).update(caption="")
    DatasetImage.objects.filter(pk=first.pk).update(caption="Sabrina laughing, [trigger] in red")
    trainings.training_start(job=job, params=_params("qwen-image"))
    run = wait_until(
        lambda: SandboxTraining.objects.first(), lambda r: r is not None and r.captions, timeout=20
    )
    assert run is not None
    assert "input_images" not in run.input and "trigger_word" not in run.input
    assert run.input["default_caption"] == "A photo of Sabrina"
    captions = {k: v for k, v in run.captions.items() if not k.startswith("__")}
    assert captions.pop("img_001") == "Sabrina laughing, Sabrina in red"  # ours, [trigger] rendered
    assert set(captions.values()) == {"A photo of Sabrina"}  # default_caption, verbatim


# --- The start page ------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_start_page_offers_every_trainer_with_its_time_and_cost(funded, alice_client):
    job = _job(funded, alice_client, "flux-dev", trigger="ohwx_anna")
    body = alice_client.get(reverse("training:start", args=[job.pk])).content.decode()
    from training.services import training_estimate

    for key, trainer in TRAINERS.items():
        assert trainer.label in body
        credits, _ = training_estimate(steps=int(trainer.setting("steps").default), trainer=key)
        assert f"{credits} credits" in body


@pytest.mark.django_db
@pytest.mark.parametrize("key", KEYS)
def test_picking_a_trainer_swaps_in_only_its_settings(key, funded, alice_client):
    job = _job(funded, alice_client, "flux-dev", trigger="ohwx_anna")
    url = reverse("training:start", args=[job.pk]) + f"?trainer={key}"
    body = alice_client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert 'id="params-card"' in body and "<html" not in body
    assert f'name="trainer" value="{key}"' in body
    names = {s.name for s in trainer_get(key).settings}
    for other in ("resolution", "caption_dropout_rate", "default_caption", "lora_rank"):
        assert (f'name="{other}"' in body) == (other in names), other


@pytest.mark.django_db
@pytest.mark.parametrize("key", KEYS)
def test_steps_out_of_a_trainers_range_are_a_field_error_and_nothing_is_spent(key, funded, alice_client):
    job = _job(funded, alice_client, key)
    low, high = trainer_get(key).steps_bounds
    before = balance_for_user(funded)
    data = {k: v for k, v in _params(key).items() if k != "sample_prompts"} | {
        "trainer": key,
        "steps": high + 1,
    }
    response = alice_client.post(reverse("training:start", args=[job.pk]), data)
    assert response.status_code == 400
    assert response.context["form"].errors["steps"]
    assert balance_for_user(funded) == before
    assert TrainingJob.objects.get(pk=job.pk).status == S.DRAFT


def _post_start(client, job, key, **extra):
    data = {k: v for k, v in _params(key).items() if k != "sample_prompts"} | {"trainer": key, **extra}
    return client.post(reverse("training:start", args=[job.pk]), data)


@pytest.mark.django_db
def test_qwen_refuses_a_rare_token_as_its_trigger_word(funded, alice_client):
    job = _job(funded, alice_client, "qwen-image", trigger="ohwx_anna")
    before = balance_for_user(funded)
    response = _post_start(alice_client, job, "qwen-image")
    assert response.status_code == 400
    assert any("rare tokens" in e for e in response.context["trainer_errors"])
    assert "rare tokens" in response.content.decode()
    assert balance_for_user(funded) == before and TrainingJob.objects.get(pk=job.pk).status == S.DRAFT


@pytest.mark.django_db
def test_qwen_refuses_captions_and_a_default_caption_that_do_not_name_the_subject(funded, alice_client):
    job = _job(funded, alice_client, "qwen-image", trigger="Sabrina")
    first = DatasetImage.objects.filter(dataset__training=job).order_by("pk")[0]
    DatasetImage.objects.filter(dataset__training=job).update(caption="")  # these get default_caption
    DatasetImage.objects.filter(pk=first.pk).update(caption="a woman on a beach")
    response = _post_start(alice_client, job, "qwen-image", default_caption="a photo of a woman")
    assert response.status_code == 400
    assert any("1 caption do not name" in e for e in response.context["trainer_errors"])
    assert response.context["form"].errors["default_caption"]
    assert TrainingJob.objects.get(pk=job.pk).status == S.DRAFT


@pytest.mark.django_db
def test_the_fast_trainer_refuses_a_dataset_of_one_photo(funded, alice_client, settings):
    settings.DATASET_MIN_IMAGES = 1
    job = _job(funded, alice_client, "fast-flux", photos=1)
    response = _post_start(alice_client, job, "fast-flux")
    assert response.status_code == 400
    assert any("at least 2 photos" in e for e in response.context["trainer_errors"])


@pytest.mark.django_db
def test_the_service_refuses_what_the_trainer_cannot_take_too(funded, alice_client):
    from training.services import PipelineError, trainings

    job = _job(funded, alice_client, "qwen-image", trigger="TOK")
    before = balance_for_user(funded)
    with pytest.raises(PipelineError, match="rare tokens"):
        trainings.training_start(job=job, params=_params("qwen-image"))
    assert balance_for_user(funded) == before


@pytest.mark.django_db
@pytest.mark.parametrize("key", KEYS)
def test_duplicating_a_training_keeps_its_trainer(key, funded, alice_client):
    from training.services import training_duplicate

    job = _job(funded, alice_client, key, photos=2)
    assert training_duplicate(job=job).trainer == key


@pytest.mark.django_db
def test_an_existing_training_without_a_choice_stays_on_the_flux_trainer(funded, alice_client):
    job = _job(funded, alice_client, "flux-dev", trigger="ohwx_anna")
    body = alice_client.get(reverse("training:start", args=[job.pk])).content.decode()
    assert 'name="trainer" value="flux-dev"' in body and 'name="resolution"' in body


# --- Generation follows the model's base ------------------------------------------------------------------
@pytest.mark.django_db
def test_a_qwen_model_generates_with_its_version_and_replicate_weights(alice):
    from generations.models import Generation
    from generations.services.generation import generation_target, prediction_request
    from models_app.bases import QWEN_IMAGE
    from models_app.models import LoraModel

    model = LoraModel.objects.create(
        owner=alice,
        name="Q",
        slug="q",
        trigger_word="Sabrina",
        base_model=QWEN_IMAGE,
        replicate_version="fluxsite/q:" + "a" * 64,
        hf_repo_id="alice/q",
        weights_size=1,
        status=LoraModel.Status.READY,
    )
    generation = Generation(
        owner=alice,
        lora_model=model,
        effective_prompt="Sabrina on a beach",
        params={
            "aspect_ratio": "1:1",
            "num_outputs": 1,
            "lora_scale": 1.0,
            "num_inference_steps": 28,
            "output_format": "webp",
            "guidance_scale": 4.0,
        },
    )
    target, data = prediction_request(generation=generation, model=model)
    assert target == {"version": "a" * 64}
    assert data["replicate_weights"] == "https://huggingface.co/alice/q/resolve/main/lora.safetensors"
    assert data["guidance"] == 4.0 and "guidance_scale" not in data and "num_outputs" not in data
    # No base generator of known schema for Qwen-Image: without its version it cannot generate.
    LoraModel.objects.filter(pk=model.pk).update(replicate_version="")
    model.refresh_from_db()
    from generations.services.generation import GenerationError

    with pytest.raises(GenerationError):
        generation_target(model=model)


@pytest.mark.django_db
def test_a_flux_model_generates_exactly_as_before(alice, settings):
    from generations.models import Generation
    from generations.services.generation import prediction_request
    from models_app.models import LoraModel

    model = LoraModel.objects.create(
        owner=alice,
        name="F",
        slug="f",
        trigger_word="ohwx_f",
        hf_repo_id="alice/f",
        weights_size=1,
        status=LoraModel.Status.READY,
    )
    params = {
        "aspect_ratio": "1:1",
        "num_outputs": 2,
        "lora_scale": 1.0,
        "num_inference_steps": 28,
        "output_format": "webp",
        "guidance_scale": 3.0,
    }
    generation = Generation(owner=alice, lora_model=model, effective_prompt="ohwx_f", params=params)
    target, data = prediction_request(generation=generation, model=model)
    assert target == {"model": settings.REPLICATE_GENERATION_MODEL}
    assert (
        data["num_outputs"] == 2
        and data["guidance"] == 3.0
        and data["lora_weights"] == "huggingface.co/alice/f"
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.once  # a sandbox journey, the same on any database: runs once in CI
def test_a_qwen_trainings_sample_grid_runs_on_its_version_with_its_own_input_names(
    sandbox, funded, alice_client, settings
):
    """The grid follows the model's base: Qwen's predictor gets replicate_weights (the published
    lora.safetensors) and `guidance`, and no num_outputs (it makes one image a run)."""
    from sandbox.replicate.models import SandboxPrediction
    from training.models import SampleImage
    from training.services import trainings

    settings.SAMPLE_GRID_STRENGTHS = [0.0, 1.0]
    job = _job(funded, alice_client, "qwen-image", trigger="Sabrina")
    trainings.training_start(
        job=job, params={**_params("qwen-image"), "sample_prompts": ["Sabrina in a garden"]}
    )
    done = wait_until(
        lambda: list(SampleImage.objects.filter(job=job)),
        lambda cells: len(cells) == 2 and all(c.status not in ("queued", "running") for c in cells),
        timeout=60,
    )
    assert [c.status for c in done] == ["succeeded", "succeeded"], [c.error_message for c in done]
    model = TrainingJob.objects.get(pk=job.pk).lora_model
    predictions = list(SandboxPrediction.objects.exclude(model__startswith="lucataco"))
    assert len(predictions) == 2
    assert {p.version for p in predictions} == {model.replicate_version.rpartition(":")[2]}
    for prediction in predictions:
        assert "num_outputs" not in prediction.input and "guidance_scale" not in prediction.input
        assert prediction.input["guidance"] == 3
        assert prediction.input["replicate_weights"].endswith(
            f"{model.hf_repo_id}/resolve/main/lora.safetensors"
        )


@pytest.mark.django_db(transaction=True)
@pytest.mark.once  # a sandbox journey, the same on any database: runs once in CI
def test_a_qwen_models_generate_form_takes_one_image_a_run_and_its_aspect_ratios(
    sandbox, funded, alice_client, settings
):
    """The generate page's limits come from the Qwen version's own schema (7 aspect ratios) and
    its predictor's one image a run, so more than one image is a field error, never a paid run
    that delivers fewer images than it charged."""
    from generations.forms import GenerateForm
    from generations.services.generation import generation_limits
    from training.services import trainings

    job = _job(funded, alice_client, "qwen-image", trigger="Sabrina")
    trainings.training_start(job=job, params=_params("qwen-image"))
    job = wait_until(
        lambda: TrainingJob.objects.get(pk=job.pk), lambda j: j.status in (S.SUCCEEDED, S.FAILED), timeout=40
    )
    limits = generation_limits(model=job.lora_model)
    assert limits["num_outputs"].maximum == 1
    assert limits["guidance_scale"].maximum == 10  # predict.py's `guidance` 0-10
    form = GenerateForm(limits=limits)
    aspect = form.fields["aspect_ratio"]
    assert isinstance(aspect, forms.ChoiceField)
    assert [c for c, _ in list(aspect.choices)] == [  # type: ignore[arg-type]
        "1:1",
        "16:9",
        "9:16",
        "4:3",
        "3:4",
        "3:2",
        "2:3",
    ]
    assert GenerateForm(data={"num_outputs": 2}, limits=limits).errors["num_outputs"]


def test_a_qwen_model_without_published_weights_is_not_offered_a_run_that_would_ignore_its_lora(alice):
    """Its trained version applies the LoRA only from replicate_weights (the published file)."""
    from generations.services import GenerationError, generation_start
    from models_app.bases import QWEN_IMAGE
    from tests.generations.generation_kit import lora_model

    before = balance_for_user(alice)
    model = lora_model(
        alice, replicate_version="fluxsite/q:" + "e" * 64, base_model=QWEN_IMAGE, status="publish_failed"
    )
    with pytest.raises(GenerationError, match="weights are not published"):
        generation_start(user=alice, model=model, prompt="a photo", params={"num_outputs": 1})
    assert balance_for_user(alice) == before
