"""A dataset photo as the image to start from (issue 17: "upload or pick an image, from the gallery or
the dataset"): the training app hands a copy to the generations app, which never reads its tables."""

from __future__ import annotations

import io
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from billing.selectors import balance_for_user
from fluxsite.integrations import storage
from generations.models import Generation, InputImage
from sandbox.replicate.models import SandboxPrediction
from tests.generations.generation_kit import FORM, lora_model, sandbox_version
from tests.training import images
from tests.training.test_dashboards import make_training
from training.models import TrainingJob

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def trained(sandbox, alice):
    job = make_training(alice, status=TrainingJob.Status.SUCCEEDED, photos=3)
    model = lora_model(alice, replicate_version=sandbox_version("alice"), training=job)
    photo = job.dataset.images.order_by("position", "pk")[0]
    # make_training stores placeholder bytes; this photo gets a real prepared JPEG.
    photo.file_name = storage.file_save(
        alias=storage.PRIVATE, name=f"datasets/{job.pk}/real.jpg", content=io.BytesIO(images.photo(seed=3))
    )
    photo.save(update_fields=["file_name"])
    return job, model, photo


def _use_url(job, photo) -> str:
    return reverse("training:image_use_as_input", args=[job.pk, photo.pk])


def test_a_dataset_photo_starts_an_image_to_image_generation_with_the_trained_model(
    trained, alice, alice_client
):
    job, model, photo = trained
    page = alice_client.get(reverse("training:dataset", args=[job.pk])).content.decode()
    assert _use_url(job, photo) in page and "Start an image from this photo" in page

    before = balance_for_user(alice)
    response = alice_client.post(_use_url(job, photo))
    assert response.status_code == 302
    target = urlsplit(response["Location"])
    staged = InputImage.objects.get()
    assert target.path == reverse("generations:generate")
    assert parse_qs(target.query) == {"staged": [str(staged.pk)], "model": [str(model.pk)]}
    assert balance_for_user(alice) == before  # handing a photo over costs nothing
    photo_bytes = storage.get_storage(storage.PRIVATE).open(photo.file_name).read()
    kept = storage.get_storage(storage.PRIVATE).open(staged.file_name).read()
    assert kept == photo_bytes and staged.label.startswith(photo.original_name)

    form_page = alice_client.get(response["Location"]).content.decode()
    preview = reverse("generations:input_image_file", args=[staged.pk])
    assert preview in form_page and f'name="staged" value="{staged.pk}"' in form_page
    served = alice_client.get(preview)
    assert served.status_code == 200 and b"".join(served.streaming_content) == photo_bytes

    response = alice_client.post(
        reverse("generations:generate"), {**FORM, "model": model.pk, "staged": staged.pk, "num_outputs": "1"}
    )
    assert response.status_code == 302, response.context["form"].errors
    generation = Generation.objects.get()
    assert generation.mode == Generation.Mode.IMAGE and generation.input_image_name != staged.file_name
    sent = SandboxPrediction.objects.get().input
    fetched = alice_client.get(urlsplit(sent["image"]).path)
    assert b"".join(fetched.streaming_content) == photo_bytes  # the photo reached the model
    assert sent["prompt_strength"] == 0.8


def test_no_photo_offers_it_before_the_training_has_a_model(alice, alice_client):
    job = make_training(alice, status=TrainingJob.Status.DRAFT, photos=2)
    page = alice_client.get(reverse("training:dataset", args=[job.pk])).content.decode()
    assert "Start an image from this photo" not in page


def test_someone_elses_photo_or_kept_image_is_a_404_and_nothing_is_kept(trained, alice_client, bob_client):
    job, model, photo = trained
    assert bob_client.post(_use_url(job, photo)).status_code == 404
    assert not InputImage.objects.exists()

    alice_client.post(_use_url(job, photo))
    staged = InputImage.objects.get()
    assert bob_client.get(reverse("generations:input_image_file", args=[staged.pk])).status_code == 404
    assert bob_client.get(reverse("generations:generate") + f"?staged={staged.pk}").status_code == 404
    assert bob_client.post(reverse("generations:generate"), {**FORM, "staged": staged.pk}).status_code == 404
    assert not Generation.objects.exists()


def test_only_post_hands_a_photo_over(trained, alice_client):
    job, _, photo = trained
    assert alice_client.get(_use_url(job, photo)).status_code == 405


def test_a_photo_that_no_longer_reads_as_an_image_gets_a_message_and_nothing_is_kept(trained, alice_client):
    job, _, _ = trained
    broken = job.dataset.images.exclude(file_name__endswith="real.jpg").first()  # placeholder bytes
    response = alice_client.post(_use_url(job, broken), follow=True)
    assert "could not be read as an image" in response.content.decode()
    assert not InputImage.objects.exists()


def test_kept_images_are_listed_for_account_deletion(trained, alice, alice_client, bob):
    from generations.selectors import owned_file_names

    job, _, photo = trained
    alice_client.post(_use_url(job, photo))
    assert (storage.PRIVATE, InputImage.objects.get().file_name) in owned_file_names(alice)
    assert owned_file_names(bob) == []
