"""Issue 16, items 5 and 6: the trainer's own captions, and training with the reviewed captions.

What the real trainer does is in sandbox/vendor/replicate/flux-fine-tuner-captions.md (read from
replicate/flux-fine-tuner `train.py` and `caption.py` @ 3dd14e3): autocaption captions only the
photos without a `.txt`, and the output tar carries every caption it trained with under
`output/flux_train_replicate/captions/`. The end-to-end tests run the pipeline against the
sandbox over real HTTP; the bad-input tests feed our reader what a tar could carry.
"""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest
from django.urls import reverse

from fluxsite.integrations import storage
from models_app.services import TarCaptions, weights_read_captions
from models_app.services import weights as weights_module
from sandbox.replicate.models import SandboxTraining
from tests.helpers import wait_until
from tests.training.conftest import add_photos
from training.models import DatasetImage, TrainingJob
from training.services import CAPTION_MAX, caption_render, trainer_captions_record, trainings

S = TrainingJob.Status
Source = DatasetImage.CaptionSource
PARAMS = {
    "steps": 100,
    "learning_rate": 0.0004,
    "lora_rank": 16,
    "batch_size": 1,
    "resolution": "512,768,1024",
    "optimizer": "adamw8bit",
    "caption_dropout_rate": 0.05,
    "autocaption": True,
}


@pytest.fixture
def ready_training(alice, alice_client, settings):
    from billing.services import credits_grant
    from training.services import training_create

    credits_grant(user=alice, amount=5000, reference="test:topup")
    settings.REPLICATE_TIMEOUT_SECONDS = 5
    job = training_create(owner=alice, name="Anna", trigger_word="ohwx_anna", subject_kind="subject")
    add_photos(alice_client, job, 10)  # each captioned "a photo of [trigger]" by the template
    return job


def _uncaption(client, job, positions: list[int]) -> list[DatasetImage]:
    """Clear the captions of the photos at these 1-based positions, through the caption editor."""
    images = list(job.dataset.images.order_by("position", "pk"))
    chosen = [images[p - 1] for p in positions]
    for image in chosen:
        response = client.post(reverse("training:image_caption", args=[job.pk, image.pk]), {"caption": ""})
        assert response.status_code == 302
    return chosen


def _finish(job: TrainingJob) -> TrainingJob:
    fresh = wait_until(
        lambda: TrainingJob.objects.get(pk=job.pk), lambda j: j.status in (S.SUCCEEDED, S.FAILED), timeout=60
    )
    assert fresh.status == S.SUCCEEDED, (fresh.status, list(fresh.events.values_list("message", flat=True)))
    return fresh


def _zip_captions(job: TrainingJob) -> dict[str, str]:
    job.dataset.refresh_from_db()
    data = b"".join(storage.file_iter(alias=storage.PRIVATE, name=job.dataset.zip_name))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {n[: -len(".txt")]: archive.read(n).decode() for n in archive.namelist() if n.endswith(".txt")}


@pytest.mark.django_db(transaction=True)
@pytest.mark.once  # a sandbox journey, the same on any database: runs once in CI
def test_the_trainer_captions_only_the_photos_without_one_and_its_captions_are_kept_shown_and_reusable(
    sandbox, ready_training, alice_client
):
    job = ready_training
    _uncaption(alice_client, job, [2, 5, 9])
    start = alice_client.get(reverse("training:start", args=[job.pk])).content.decode()
    assert "3 of 10 photos will be captioned by the trainer" in start

    trainings.training_start(job=job, params=PARAMS)
    job = _finish(job)

    # What Replicate was sent: autocaption on, and a ZIP whose .txt members are exactly our captions.
    sent = SandboxTraining.objects.get(pk=job.replicate_training_id).input
    assert sent["autocaption"] is True
    images = list(job.dataset.images.order_by("position", "pk"))
    expected = {
        f"img_{i:03d}": caption_render(image.caption, "ohwx_anna")
        for i, image in enumerate(images, start=1)
        if image.caption
    }
    assert _zip_captions(job) == expected and len(expected) == 7

    # The trainer's captions, read from its output tar: only for the three we sent without one.
    assert set(job.trainer_captions) == {"img_002", "img_005", "img_009"}
    assert all(text.startswith("Photo of a person in a ") for text in job.trainer_captions.values())
    assert job.events.filter(message="The trainer captioned 3 photos.").exists()
    page = alice_client.get(reverse("training:detail", args=[job.pk])).content.decode()
    assert "The trainer&#x27;s captions" in page or "The trainer's captions" in page
    assert job.trainer_captions["img_005"] in page
    assert images[4].original_name in page

    # Duplicate, using them: the three get the trainer's words, marked as the trainer's.
    response = alice_client.post(reverse("training:duplicate", args=[job.pk]), {"trainer_captions": "1"})
    assert response.status_code == 302
    copy = TrainingJob.objects.exclude(pk=job.pk).get()
    rows = list(copy.dataset.images.order_by("position", "pk").values_list("caption", "caption_source"))
    for index in (2, 5, 9):
        assert rows[index - 1] == (job.trainer_captions[f"img_{index:03d}"], Source.TRAINER)
    assert [rows[i] for i in (0, 2, 9)] == [("a photo of [trigger]", Source.PERSON)] * 3
    # And without: the three stay without a caption.
    alice_client.post(reverse("training:duplicate", args=[job.pk]))
    plain = TrainingJob.objects.exclude(pk__in=[job.pk, copy.pk]).get()
    assert plain.dataset.images.filter(caption="").count() == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.once  # a sandbox journey, the same on any database: runs once in CI
def test_with_every_photo_captioned_autocaption_is_off_and_the_trainer_writes_none(
    sandbox, ready_training, alice_client
):
    start = alice_client.get(reverse("training:start", args=[ready_training.pk])).content.decode()
    assert "All photos have your captions" in start
    trainings.training_start(job=ready_training, params=PARAMS)
    job = _finish(ready_training)
    assert SandboxTraining.objects.get(pk=job.replicate_training_id).input["autocaption"] is False
    assert len(_zip_captions(job)) == 10
    assert job.trainer_captions == {}
    page = alice_client.get(reverse("training:detail", args=[job.pk])).content.decode()
    assert "trainer-captions" not in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.once  # a sandbox journey, the same on any database: runs once in CI
def test_when_the_person_turns_autocaption_off_it_stays_off(sandbox, ready_training, alice_client):
    _uncaption(alice_client, ready_training, [1])
    trainings.training_start(job=ready_training, params={**PARAMS, "autocaption": False})
    job = _finish(ready_training)
    assert SandboxTraining.objects.get(pk=job.replicate_training_id).input["autocaption"] is False
    assert job.trainer_captions == {}


@pytest.mark.django_db
def test_the_start_page_and_its_preset_fragment_say_who_captions(alice_client, training):
    from tests.training.test_caption_bulk import _photos

    _photos(training, [(f"p{i}.jpg", "" if i < 4 else "mine") for i in range(12)])
    page = alice_client.get(reverse("training:start", args=[training.pk])).content.decode()
    assert "4 of 12 photos will be captioned by the trainer" in page
    fragment = alice_client.get(
        reverse("training:start", args=[training.pk]) + "?preset=quick", headers={"HX-Request": "true"}
    ).content.decode()
    assert "4 of 12 photos will be captioned by the trainer" in fragment
    posted = alice_client.post(reverse("training:start", args=[training.pk]), {"steps": "0"}).content.decode()
    assert "4 of 12 photos have no caption and autocaption is off" in posted  # the box was left unticked


# --- Bad input from the trainer's output -------------------------------------------------------
@pytest.mark.django_db
def test_what_the_trainer_writes_is_kept_as_plain_text_cut_to_the_limit_or_dropped(alice_client, training):
    from tests.training.test_caption_bulk import _photos

    _photos(training, [("mine.jpg", "my own"), ("a.jpg", ""), ("b.jpg", ""), ("c.jpg", ""), ("d.jpg", "")])
    found = TarCaptions(
        by_stem={
            "img_001": b"ours, copied back",  # a photo we captioned: not the trainer's
            "img_002": b"  \n\t ",  # empty
            "img_003": ("w" * 5000).encode(),  # absurdly long
            "img_004": "<b>bold</b>\r\n<script>alert(1)</script>\x00 caf\u00e9".encode(
                "utf-16"
            ),  # markup, UTF-16
            "img_005": b"\x89PNG\r\n\x1a\n\x00\x00binary",  # the wrong format
            "img_099": b"no such photo",
        },
        skipped=1,
    )
    kept = trainer_captions_record(job=training, found=found)
    training.refresh_from_db()
    assert set(training.trainer_captions) == {"img_003", "img_004", "img_005"}
    assert training.trainer_captions["img_003"] == "w" * CAPTION_MAX
    assert training.trainer_captions["img_004"] == "<b>bold</b> <script>alert(1)</script> caf\u00e9"
    assert "\x00" not in training.trainer_captions["img_005"]
    assert kept.text == (
        "The trainer captioned 3 photos (1 cut to 1000 characters; 1 empty, dropped; "
        "1 caption files over the size limits, skipped)."
    )
    TrainingJob.objects.filter(pk=training.pk).update(status=S.SUCCEEDED)
    page = alice_client.get(reverse("training:detail", args=[training.pk])).content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def _tar(members: dict[str, bytes], *, link: str = "") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return out.getvalue()


def test_the_tar_reader_takes_only_caption_files_within_their_limits(tmp_path, monkeypatch):
    root = "output/flux_train_replicate"
    path = tmp_path / "trained_model.tar"
    path.write_bytes(
        _tar(
            {
                f"{root}/lora.safetensors": b"weights",
                f"{root}/config.yaml": b"job: x",
                f"{root}/captions/img_001.txt": b"one",
                f"{root}/captions/img_002.txt": b"x" * (weights_module.CAPTION_FILE_MAX_BYTES + 1),
                f"{root}/captions/img_003.txt": b"x" * weights_module.CAPTION_FILE_MAX_BYTES,  # at the limit
                f"{root}/captions/notes.md": b"not a caption",
            },
            link=f"{root}/captions/img_004.txt",
        )
    )
    found = weights_read_captions(tar_path=path)
    assert set(found.by_stem) == {"img_001", "img_003"} and found.skipped == 1
    assert found.by_stem["img_001"] == b"one"

    monkeypatch.setattr(weights_module, "CAPTIONS_MAX_FILES", 1)
    found = weights_read_captions(tar_path=path)
    assert set(found.by_stem) == {"img_001"} and found.skipped == 2


def test_a_tar_without_captions_gives_none(tmp_path):
    path = tmp_path / "trained_model.tar"
    path.write_bytes(_tar({"output/flux_train_replicate/lora.safetensors": b"weights"}))
    assert weights_read_captions(tar_path=path) == TarCaptions(by_stem={}, skipped=0)
