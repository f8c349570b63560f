"""The training and dataset pages: creation, captions, deletion, ownership, methods."""

from __future__ import annotations

import pytest
from django.core.files.storage import storages
from django.urls import reverse

from tests.training import images
from tests.training.conftest import add_photos, post_files
from training.models import TrainingJob


@pytest.fixture
def photo(alice_client, training):
    post_files(alice_client, training, [("me.jpg", images.photo(seed=1))])
    return training.dataset.images.get()


def _urls(training, image) -> dict[str, str]:
    t, i = training.pk, image.pk
    return {
        "dataset": reverse("training:dataset", args=[t]),
        "upload": reverse("training:dataset_upload", args=[t]),
        "captions": reverse("training:caption_template", args=[t]),
        "caption": reverse("training:image_caption", args=[t, i]),
        "delete": reverse("training:image_delete", args=[t, i]),
        "thumbnail": reverse("training:image_thumbnail", args=[t, i]),
    }


def test_a_new_training_leads_to_its_dataset_page(alice_client, alice):
    response = alice_client.post(
        reverse("training:new"), {"name": "Rex the dog", "trigger_word": "", "subject_kind": "subject"}
    )

    job = TrainingJob.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == reverse("training:dataset", args=[job.pk])
    assert job.trigger_word == "ohwx_rex_the_dog" and job.status == TrainingJob.Status.DRAFT
    assert job.dataset.caption_template == "a photo of [trigger]"
    assert "Rex the dog" in alice_client.get(reverse("training:list")).content.decode()


@pytest.mark.parametrize("word", ["two words", "x", "a" * 33, "ohwx-anna", "émile", "semi;colon"])
def test_the_trigger_word_must_be_one_plain_token(alice_client, alice, word):
    response = alice_client.post(
        reverse("training:new"), {"name": "A", "trigger_word": word, "subject_kind": "style"}
    )

    assert response.status_code == 200
    assert "single word of 2-32 letters" in response.content.decode()
    assert not TrainingJob.objects.filter(owner=alice).exists()


def test_the_list_shows_only_my_trainings(alice_client, training, bob):
    from training.services import training_create

    training_create(owner=bob, name="Bob's cat", trigger_word="ohwx_cat", subject_kind="subject")

    body = alice_client.get(reverse("training:list")).content.decode()
    assert "Anna" in body and "Bob&#x27;s cat" not in body and "Bob's cat" not in body


def test_the_dataset_page_shows_the_grid_and_readiness(alice_client, training, settings):
    settings.DATASET_MIN_IMAGES = 2
    add_photos(alice_client, training, 2)

    page = alice_client.get(reverse("training:dataset", args=[training.pk]))
    grid = alice_client.get(reverse("training:dataset", args=[training.pk]), headers={"hx-request": "true"})

    assert "2 photos, ready to train" in page.content.decode()
    assert 'id="upload-form"' in page.content.decode()
    assert grid.content.decode().lstrip().startswith('<section id="dataset-grid"')
    assert 'id="upload-form"' not in grid.content.decode()
    assert grid.content.decode().count('class="thumb') == 2


def test_readiness_counts_warnings_and_missing_photos(alice_client, training):
    post_files(alice_client, training, [("tiny.jpg", images.photo((450, 300), seed=3))])

    body = alice_client.get(reverse("training:dataset", args=[training.pk])).content.decode()
    assert "1 photo, 1 warning, add at least 9 more to train" in body


def test_a_caption_is_saved_as_you_type(alice_client, training, photo):
    response = alice_client.post(
        _urls(training, photo)["caption"],
        {"caption": "  [trigger] in a red coat "},
        headers={"hx-request": "true"},
    )

    assert response.status_code == 200 and "Saved" in response.content.decode()
    photo.refresh_from_db()
    assert photo.caption == "[trigger] in a red coat"


def test_a_caption_says_who_wrote_it_and_a_persons_edit_takes_it_over(alice_client, training, photo):
    assert photo.caption_source == "person"  # the dataset's template, chosen by the person
    photo.caption, photo.caption_source, photo.caption_model = "a dog on grass", "model", "acme/captioner:v1"
    photo.save()
    url = _urls(training, photo)["caption"]

    alice_client.post(url, {"caption": " a dog  on grass "}, headers={"hx-request": "true"})  # an autosave
    photo.refresh_from_db()
    assert (photo.caption_source, photo.caption_model) == ("model", "acme/captioner:v1")

    alice_client.post(url, {"caption": "a dog on wet grass"}, headers={"hx-request": "true"})
    photo.refresh_from_db()
    assert (photo.caption, photo.caption_source, photo.caption_model) == ("a dog on wet grass", "person", "")

    alice_client.post(url, {"caption": ""}, headers={"hx-request": "true"})
    photo.refresh_from_db()
    assert photo.caption_source == ""


def test_a_too_long_caption_is_refused(alice_client, training, photo):
    response = alice_client.post(
        _urls(training, photo)["caption"], {"caption": "x" * 1001}, headers={"hx-request": "true"}
    )

    assert response.status_code == 400
    photo.refresh_from_db()
    assert photo.caption == "a photo of [trigger]"


def test_the_caption_template_applies_to_all(alice_client, training):
    add_photos(alice_client, training, 3)

    response = alice_client.post(
        _urls(training, training.dataset.images.first())["captions"],
        {"template": "[trigger], portrait"},
        headers={"hx-request": "true"},
    )

    assert response.status_code == 200
    assert set(training.dataset.images.values_list("caption", flat=True)) == {"[trigger], portrait"}
    training.dataset.refresh_from_db()
    assert training.dataset.caption_template == "[trigger], portrait"


def test_deleting_asks_first_then_removes_the_photo_and_its_files(
    alice_client, training, photo, django_capture_on_commit_callbacks
):
    urls = _urls(training, photo)
    confirm = alice_client.get(urls["delete"])
    assert confirm.status_code == 200 and "Delete this photo?" in confirm.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        with_htmx = alice_client.post(urls["delete"], headers={"hx-request": "true"})

    assert with_htmx.status_code == 200 and "0 photos" in with_htmx.content.decode()
    assert not training.dataset.images.exists()
    assert not storages["private"].exists(photo.file_name)
    assert not storages["private"].exists(photo.thumbnail_name)


def test_the_thumbnail_is_served_to_its_owner(alice_client, training, photo):
    response = alice_client.get(_urls(training, photo)["thumbnail"])

    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content).startswith(b"\xff\xd8")
    assert "private" in response["Cache-Control"]


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("dataset", "get"),
        ("upload", "post"),
        ("captions", "post"),
        ("caption", "post"),
        ("delete", "get"),
        ("delete", "post"),
        ("thumbnail", "get"),
    ],
)
def test_bob_gets_404_on_alices_dataset(bob_client, training, photo, name, method):
    response = getattr(bob_client, method)(
        _urls(training, photo)[name], {"caption": "mine now", "template": "x"}
    )

    assert response.status_code == 404
    photo.refresh_from_db()
    assert photo.caption == "a photo of [trigger]"
    assert training.dataset.images.count() == 1


@pytest.mark.parametrize("name", ["dataset", "upload", "captions", "caption", "delete", "thumbnail"])
def test_anonymous_visitors_are_sent_to_log_in(anon_client, training, photo, name):
    method = "get" if name in ("dataset", "thumbnail", "delete") else "post"
    response = getattr(anon_client, method)(_urls(training, photo)[name])

    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))


def test_anonymous_visitors_cannot_see_the_list_or_create(anon_client):
    for url in (reverse("training:list"), reverse("training:new")):
        assert anon_client.get(url).status_code == 302


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("dataset", "post"),
        ("upload", "get"),
        ("captions", "get"),
        ("caption", "get"),
        ("delete", "put"),
        ("thumbnail", "post"),
    ],
)
def test_wrong_methods_get_405(alice_client, training, photo, name, method):
    assert getattr(alice_client, method)(_urls(training, photo)[name]).status_code == 405


def test_wrong_methods_on_list_and_new_get_405(alice_client):
    assert alice_client.post(reverse("training:list")).status_code == 405
    assert alice_client.put(reverse("training:new")).status_code == 405


def test_a_started_training_refuses_changes(alice_client, training, photo):
    # The pipeline adds real states; any status other than draft must freeze the dataset.
    TrainingJob.objects.filter(pk=training.pk).update(status="queued")

    response = post_files(alice_client, training, [("x.jpg", images.photo(seed=2))])

    assert response.status_code == 400 and "can no longer be changed" in response.json()["error"]
    assert training.dataset.images.count() == 1


def test_the_dataset_page_states_the_per_file_limit_with_django_filesizeformat(
    alice_client, training, settings
):
    settings.DATASET_MAX_FILE_BYTES = 1536 * 1024  # whole-megabyte rounding would print "1 MB"
    page = alice_client.get(reverse("training:dataset", args=[training.pk])).content.decode()
    assert "up to 1.5\xa0MB each" in page
