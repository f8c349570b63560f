"""Captioning a dataset's photos with a vision model, through the real SDK over HTTP to the sandbox.

The sandbox's captioners keep the real models' schemas and output shapes (sandbox/vendor/replicate/
cog/florence-2-large.predict.json, llava-13b.predict.json); their captions are built from what can be
measured of each photo.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.helpers import balance, wait_until
from tests.training.conftest import add_photos
from training.models import CaptionBatch, CaptionTask, DatasetImage

FLORENCE = "lucataco/florence-2-large"
LLAVA = "yorickvp/llava-13b"
pytestmark = pytest.mark.django_db(transaction=True)


def start(client, training, **fields):
    data = {
        "photos": "empty",
        "mode": "keep",
        "style": "natural",
        "trigger_placement": "start",
        "trigger_template": "",
        "model": FLORENCE,
        "purpose": "caption",
        **fields,
    }
    return client.post(
        reverse("training:caption_start", args=[training.pk]), data, headers={"HX-Request": "true"}
    )


def finished(training, timeout: float = 20.0) -> CaptionBatch:
    def fetch():
        return CaptionBatch.objects.filter(dataset__training=training).order_by("-pk").first()

    batch = wait_until(fetch, lambda b: b is not None and b.status != "running", timeout=timeout)
    assert batch is not None and batch.status != "running", list(
        CaptionTask.objects.values_list("status", "note")
    )
    return batch


def images_of(training) -> list[DatasetImage]:
    return list(DatasetImage.objects.filter(dataset__training=training).order_by("pk"))


def test_it_captions_the_empty_photos_and_keeps_a_persons_caption(sandbox, alice, alice_client, training):
    add_photos(alice_client, training, 3)
    first = images_of(training)[0]
    alice_client.post(
        reverse("training:image_caption", args=[training.pk, first.pk]), {"caption": "my own words"}
    )
    before = balance(alice)
    response = start(alice_client, training)
    assert response.status_code == 200, response.content.decode()[:600]
    batch = finished(training)
    assert batch.status == "finished"
    assert batch.tasks.count() == 2  # "keep": the photo with a caption is not even queued
    assert set(batch.tasks.values_list("status", flat=True)) == {"done"}
    assert balance(alice) == before - 2 * batch.price_per_photo
    kept, *captioned = images_of(training)
    assert (kept.caption, kept.caption_source) == ("my own words", "person")
    version = "da53547e17d45b9cfb48174b2f18af8b83ca020fa76db62136bf9c6616762595"
    for image in captioned:
        assert image.caption.startswith("[trigger], ")
        assert "photo" in image.caption.lower()
        assert image.caption_source == "model"
        assert image.caption_model == f"{FLORENCE}:{version}"
    page = alice_client.get(reverse("training:dataset", args=[training.pk]))
    assert page.content.count(b"caption-by-model") == 2


def test_keep_mode_again_never_overwrites_a_persons_edit_of_a_model_caption(sandbox, alice_client, training):
    add_photos(alice_client, training, 2)
    start(alice_client, training)
    finished(training)
    edited = images_of(training)[0]
    alice_client.post(
        reverse("training:image_caption", args=[training.pk, edited.pk]), {"caption": "mine now"}
    )
    response = start(alice_client, training, photos="all")
    assert response.status_code == 400  # nothing left to caption: both have captions
    assert b"No photo to caption" in response.content
    edited.refresh_from_db()
    assert (edited.caption, edited.caption_source, edited.caption_model) == ("mine now", "person", "")


def test_replace_mode_with_llava_tags_and_a_template(sandbox, alice_client, training):
    add_photos(alice_client, training, 2)
    start(alice_client, training)
    finished(training)
    response = start(
        alice_client,
        training,
        photos="all",
        mode="replace",
        style="tags",
        model=LLAVA,
        trigger_placement="token",
        trigger_template="a photo of [trigger], [caption]",
    )
    assert response.status_code == 200, response.content.decode()[:600]
    batch = CaptionBatch.objects.filter(model=LLAVA).get()
    batch = finished(training)
    assert set(batch.tasks.values_list("status", flat=True)) == {"done"}
    for image in images_of(training):
        assert image.caption.startswith("a photo of [trigger], ")
        assert image.caption.count(",") >= 3  # tags, joined from LLaVA's streamed text pieces
        assert image.caption_model.startswith(f"{LLAVA}:")


def test_append_mode_adds_to_the_existing_caption(sandbox, alice_client, training):
    add_photos(alice_client, training, 1)
    image = images_of(training)[0]
    alice_client.post(
        reverse("training:image_caption", args=[training.pk, image.pk]), {"caption": "[trigger] smiling"}
    )
    start(alice_client, training, photos="all", mode="append", trigger_placement="none")
    finished(training)
    image.refresh_from_db()
    assert image.caption.startswith("[trigger] smiling ")
    assert len(image.caption) > len("[trigger] smiling ") + 10
    assert image.caption_source == "model"


def test_the_cost_line_is_shown_before_running(sandbox, alice_client, training):
    add_photos(alice_client, training, 3)
    page = alice_client.get(reverse("training:dataset", args=[training.pk]))
    assert b"3 photos, 3 credits" in page.content
    line = alice_client.get(
        reverse("training:caption_estimate", args=[training.pk]),
        {
            "photos": "all",
            "mode": "replace",
            "style": "natural",
            "trigger_placement": "start",
            "model": LLAVA,
        },
    )
    assert line.status_code == 200
    assert b"3 photos, 3 credits" in line.content or b"3 photos" in line.content


def test_an_inspection_answers_the_checklist_and_shows_warnings_with_why(
    sandbox, alice, alice_client, training
):
    add_photos(alice_client, training, 2)
    before = balance(alice)
    captions = [image.caption for image in images_of(training)]
    response = start(
        alice_client,
        training,
        photos="all",
        mode="replace",
        trigger_placement="none",
        model=LLAVA,
        purpose="inspect",
    )
    assert response.status_code == 200, response.content.decode()[:600]
    batch = finished(training)
    assert batch.purpose == "inspect" and set(batch.tasks.values_list("status", flat=True)) == {"done"}
    assert balance(alice) == before - batch.cost_credits
    for image, caption in zip(images_of(training), captions, strict=True):
        assert image.caption == caption  # an inspection never touches captions
        assert set(image.inspection) == {
            "people",
            "face_visible",
            "face_covered",
            "text_or_watermark",
            "heavy_filter",
            "model",
        }
        assert image.inspection["model"].startswith(f"{LLAVA}:")
    # A checklist with problems shows each beside the upload's own warnings, with why it matters.
    image = images_of(training)[0]
    DatasetImage.objects.filter(pk=image.pk).update(
        inspection={**image.inspection, "people": 3, "face_covered": True, "text_or_watermark": True}
    )
    page = alice_client.get(reverse("training:dataset", args=[training.pk])).content.decode()
    assert "3 people in the photo" in page and "cannot tell which one is the subject" in page
    assert "face covered (sunglasses, hat)" in page and "letters get baked into" in page


def test_the_polled_panel_sends_every_caption_finished_since_the_boxes_were_read(
    sandbox, settings, alice_client, training
):
    """However slow the start's answer (a caption may finish before it is sent), the first poll
    replaces every box the batch captioned; a later poll sends none again."""
    import re

    settings.SANDBOX_PREDICTION_SECONDS = 0  # captions finish inside the start's own request
    add_photos(alice_client, training, 2)
    response = start(alice_client, training)
    found = re.search(r'hx-get="([^"]+/captioning/\d+/\?since=[0-9.]+)"', response.content.decode())
    assert found, response.content.decode()
    poll = found.group(1)
    batch = finished(training)
    first = alice_client.get(poll.replace("&amp;", "&"), headers={"HX-Request": "true"})
    assert first.status_code == 286  # finished: htmx stops polling
    body = first.content.decode()
    for image in images_of(training):
        box = re.search(rf'<textarea[^>]*id="caption-{image.pk}"[^>]*>', body)
        assert box and 'hx-swap-oob="true"' in box.group(0), body[:300]
    later = alice_client.get(
        reverse("training:caption_progress", args=[training.pk, batch.pk]) + "?since=9999999999",
        headers={"HX-Request": "true"},
    )
    assert "<textarea" not in later.content.decode()
