"""The generate page, the generation page and the gallery: validation, scoping, methods, anonymous."""

from __future__ import annotations

import pytest

from billing.selectors import balance_for_user
from fluxsite.integrations import storage
from generations.models import GeneratedImage, Generation
from models_app.models import LoraModel
from tests.generations.generation_kit import FORM, finished_generation, lora_model
from tests.helpers import assert_no_inline_script

pytestmark = pytest.mark.django_db
VERSION = "fluxsite/lora-x:" + "a" * 64


@pytest.fixture
def model(alice):
    return lora_model(alice, replicate_version=VERSION)


@pytest.fixture
def generation(alice, model):
    return finished_generation(alice, model, images=2)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"prompt": ""}, "prompt", "Write a prompt."),
        ({"prompt": "x" * 2000}, "prompt", "at most 1000 characters"),
        ({"num_outputs": "5"}, "num_outputs", "less than or equal to 4"),
        # No schema can be read here (no sandbox): the narrower known range applies (trained versions: 2).
        ({"lora_scale": "2.5"}, "lora_scale", "less than or equal to 2"),
        ({"num_inference_steps": "0"}, "num_inference_steps", "greater than or equal to 1"),
        ({"guidance_scale": "11"}, "guidance_scale", "less than or equal to 10"),
        ({"aspect_ratio": "7:5"}, "aspect_ratio", "Select a valid choice"),
        ({"output_format": "gif"}, "output_format", "Select a valid choice"),
        ({"seed": "-1"}, "seed", "greater than or equal to 0"),
    ],
)
def test_bad_input_is_a_form_error_and_nothing_is_charged(alice, alice_client, model, change, field, message):
    before = balance_for_user(alice)
    page = alice_client.post("/models/generate/", {**FORM, "model": model.pk, **change})
    assert page.status_code == 200
    assert message in str(page.context["form"].errors[field])
    assert not Generation.objects.exists() and balance_for_user(alice) == before


def test_a_model_that_is_not_ready_is_refused(alice, alice_client):
    not_ready = lora_model(alice, name="Fresh", status="publishing")
    page = alice_client.post("/models/generate/", {**FORM, "model": not_ready.pk})
    assert "is not ready to generate yet" in page.content.decode()
    assert not Generation.objects.exists()
    assert "not ready" in alice_client.get(f"/models/generate/?model={not_ready.pk}").content.decode()


def test_a_model_still_publishing_with_a_trained_version_is_usable(alice, alice_client):
    publishing = lora_model(alice, name="Publishing", status="publishing", replicate_version=VERSION)
    page = alice_client.get(f"/models/generate/?model={publishing.pk}").content.decode()
    assert f'<option value="{publishing.pk}" selected>' in page and "not ready" not in page


def test_someone_elses_model_is_404(bob_client, model):
    assert bob_client.get(f"/models/generate/?model={model.pk}").status_code == 404
    assert bob_client.post("/models/generate/", {**FORM, "model": model.pk}).status_code == 404


def test_the_page_offers_suggestions_for_the_models_kind_and_a_live_preview(alice, alice_client, model):
    style = lora_model(alice, name="Ink", subject_kind="style", replicate_version=VERSION)
    page = alice_client.get(f"/models/generate/?model={style.pk}").content.decode()
    assert 'data-suggestion="a lighthouse on a cliff at dusk, in the style of ALICEX"' in page
    assert 'hx-trigger="input changed delay:300ms"' in page and "generate.js" in page
    assert_no_inline_script(page)
    preview = alice_client.get(
        "/models/generate/preview/",
        {"model": model.pk, "prompt": "a cat", "num_outputs": 3},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "ALICEX, a cat" in preview and "12 credits" in preview and "<html" not in preview
    kept = alice_client.get("/models/generate/preview/", {"model": model.pk, "prompt": "alicex on a boat"})
    assert "alicex on a boat" in kept.content.decode() and "was added" not in kept.content.decode()


def test_again_with_this_seed_prefills_the_form(alice_client, generation):
    form = alice_client.get(f"/models/generate/?again={generation.pk}").context["form"]
    assert form["seed"].value() == 42 and form["prompt"].value() == "a cat"


def test_the_gallery_lists_images_newest_first_and_paginates(alice, alice_client, model, generation):
    newer = finished_generation(alice, model, images=1)
    page = alice_client.get("/models/gallery/")
    images = list(page.context["page"].object_list)
    assert images[0].generation_id == newer.pk and len(images) == 3
    assert alice_client.get(f"/models/{model.pk}/gallery/").status_code == 200
    detail = alice_client.get(f"/models/{model.pk}/").content.decode()
    assert images[0].thumbnail_name in detail  # the model page shows its recent images
    listing = alice_client.get("/models/").content.decode()
    assert images[0].thumbnail_name in listing  # the list card falls back to the latest image


def test_an_image_opens_large_downloads_and_becomes_the_cover(alice_client, model, generation):
    image = generation.images.order_by("index").first()
    page = alice_client.get(f"/models/images/{image.pk}/").content.decode()
    assert image.file_name in page and f"?again={generation.pk}" in page
    download = alice_client.get(f"/models/images/{image.pk}/download/")
    assert download["Content-Disposition"].startswith("attachment;") and b"".join(download.streaming_content)
    assert alice_client.post(f"/models/images/{image.pk}/cover/").status_code == 302
    model.refresh_from_db()
    assert model.cover_image_name == image.file_name
    assert storage.public_url(name=image.file_name) in alice_client.get("/models/").content.decode()


def test_deleting_an_image_needs_a_confirmation_and_clears_the_cover(
    alice_client, model, generation, django_capture_on_commit_callbacks
):
    image = generation.images.first()
    model.cover_image_name = image.file_name
    model.save()
    assert alice_client.get(f"/models/images/{image.pk}/delete/").status_code == 200
    alice_client.post(f"/models/images/{image.pk}/delete/", {})
    assert GeneratedImage.objects.filter(pk=image.pk).exists()
    with django_capture_on_commit_callbacks(execute=True):  # the files go once the row is gone
        response = alice_client.post(f"/models/images/{image.pk}/delete/", {"confirm": "on"})
    assert response.status_code == 302 and not GeneratedImage.objects.filter(pk=image.pk).exists()
    assert not storage.get_storage(storage.PUBLIC).exists(image.file_name)
    model.refresh_from_db()
    assert model.cover_image_name is None


def test_the_status_fragment_keeps_polling_while_running(alice, alice_client, model):
    running = Generation.objects.create(
        owner=alice,
        lora_model=model,
        model_name=model.name,
        prompt="a",
        effective_prompt="ALICEX, a",
        params={"aspect_ratio": "1:1"},
        num_outputs=2,
        status=Generation.Status.RUNNING,
    )
    response = alice_client.get(f"/models/generations/{running.pk}/status/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "every 2s" in response.content.decode()


URLS = [
    ("get", "/models/generations/{g}/"),
    ("get", "/models/generations/{g}/status/"),
    ("post", "/models/generations/{g}/cancel/"),
    ("get", "/models/images/{i}/"),
    ("get", "/models/images/{i}/download/"),
    ("get", "/models/images/{i}/delete/"),
    ("post", "/models/images/{i}/delete/"),
    ("post", "/models/images/{i}/cover/"),
    ("get", "/models/{m}/gallery/"),
    ("get", "/models/generate/?again={g}"),
]


@pytest.mark.parametrize(("method", "path"), URLS)
def test_bob_gets_404_for_alices_generations_and_images(bob_client, model, generation, method, path):
    image = generation.images.first()
    url = path.format(g=generation.pk, i=image.pk, m=model.pk)
    assert (
        getattr(bob_client, method)(url, {"confirm": "on"} if method == "post" else None).status_code == 404
    )
    assert GeneratedImage.objects.filter(pk=image.pk).exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [*URLS, ("get", "/models/generate/"), ("get", "/models/gallery/"), ("get", "/models/generate/preview/")],
)
def test_the_anonymous_visitor_is_sent_to_log_in(anon_client, model, generation, method, path):
    url = path.format(g=generation.pk, i=generation.images.first().pk, m=model.pk)
    response = getattr(anon_client, method)(url)
    assert response.status_code == 302 and "/login" in response["Location"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/models/generations/{g}/"),
        ("post", "/models/generations/{g}/status/"),
        ("get", "/models/generations/{g}/cancel/"),
        ("post", "/models/images/{i}/"),
        ("post", "/models/images/{i}/download/"),
        ("get", "/models/images/{i}/cover/"),
        ("post", "/models/gallery/"),
        ("put", "/models/generate/"),
        ("post", "/models/generate/preview/"),
        ("get", "/models/webhooks/replicate/"),
    ],
)
def test_the_wrong_method_is_405(alice_client, generation, method, path):
    url = path.format(g=generation.pk, i=generation.images.first().pk)
    assert getattr(alice_client, method)(url).status_code == 405


def test_the_model_list_costs_the_same_queries_for_one_model_and_for_eight(alice, alice_client):
    from tests.helpers import cold_queries

    def count() -> int:
        response, queries = cold_queries(alice_client, "/models/")
        assert response.status_code == 200
        return queries

    finished_generation(alice, lora_model(alice, name="Model 0"))
    one = count()
    for i in range(1, 8):
        finished_generation(alice, lora_model(alice, name=f"Model {i}"))
    page = alice_client.get("/models/").content.decode()
    assert count() == one
    for thumbnail in GeneratedImage.objects.values_list("thumbnail_name", flat=True):
        assert storage.public_url(name=thumbnail) in page  # each card shows its model's latest image


def test_the_model_picker_offers_the_recent_models_and_finds_the_others(alice, alice_client, monkeypatch):
    from generations import views

    monkeypatch.setattr(views, "_limits", lambda model: {})  # the picker is the subject, not the schema
    for i in range(30):
        lora_model(alice, name=f"Model {i:02d}", replicate_version=VERSION)
    page = alice_client.get("/models/generate/").content.decode()
    picker = page[
        page.index('<select id="id_model"') : page.index("</select>", page.index('<select id="id_model"'))
    ]
    assert picker.count("<option value=") == 20 and "Model 29" in picker and "Model 05" not in picker
    assert 'name="model_q"' in page

    found = alice_client.get("/models/generate/", {"model_q": "model 05"}, headers={"hx-request": "true"})
    body = found.content.decode()
    assert "<html" not in body and "Model 05" in body and body.count("<option") == 1
    # An older model named in the address is offered too, selected.
    old = LoraModel.objects.get(name="Model 03")
    chosen = alice_client.get("/models/generate/", {"model": old.pk}).content.decode()
    assert f'<option value="{old.pk}" selected>' in chosen
