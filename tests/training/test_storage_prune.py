"""manage.py storage_prune: old dataset ZIPs and temporary files go, never a ZIP a queued or running
training needs; --dry-run lists; local files and S3 alike (moto over HTTP)."""

from __future__ import annotations

import io
import os
import secrets
import time
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from fluxsite.integrations import storage
from tests.integrations.test_storage import BUCKET, moto_endpoint, s3  # noqa: F401  (fixtures)
from tests.training import images
from training.models import Dataset, TrainingJob

pytestmark = pytest.mark.django_db
S = TrainingJob.Status


def zip_built(
    training: TrainingJob, *, days_ago: float, status: str = S.DRAFT, failed_stage: str = ""
) -> str:
    """A dataset whose ZIP was built `days_ago` days ago, its training in `status`."""
    name = storage.file_save(
        alias=storage.PRIVATE,
        name=f"datasets/{training.pk}/dataset-{secrets.token_hex(16)}.zip",
        content=io.BytesIO(b"PK\x05\x06" + b"\x00" * 18),
    )
    Dataset.objects.filter(training=training).update(
        zip_name=name,
        zip_size=22,
        zip_fingerprint="f" * 64,
        zip_built_at=timezone.now() - timedelta(days=days_ago),
    )
    TrainingJob.objects.filter(pk=training.pk).update(status=status, failed_stage=failed_stage)
    return name


def prune(*args: str, scratch: Path) -> str:
    out = io.StringIO()
    call_command("storage_prune", "--scratch-dir", str(scratch), *args, stdout=out)
    return out.getvalue()


def exists(name: str) -> bool:
    return storage.get_storage(storage.PRIVATE).exists(name)


@pytest.fixture
def make_training(alice):
    from training.services import training_create

    def make(label: str = "t") -> TrainingJob:
        return training_create(owner=alice, name=label, trigger_word=f"ohwx_{label}", subject_kind="subject")

    return make


def test_an_old_zip_of_a_training_that_does_not_run_is_deleted_and_forgotten(
    make_training, settings, tmp_path
):
    settings.DATASET_ZIP_KEEP_DAYS = 7
    draft, done = make_training("draft"), make_training("done")
    draft_zip = zip_built(draft, days_ago=8)
    done_zip = zip_built(done, days_ago=30, status=S.SUCCEEDED)

    out = prune(scratch=tmp_path)

    assert not exists(draft_zip) and not exists(done_zip)
    assert f"deleted dataset zip: {draft_zip}" in out
    dataset = Dataset.objects.get(training=draft)
    assert (dataset.zip_name, dataset.zip_fingerprint, dataset.zip_built_at) == ("", "", None)


@pytest.mark.parametrize(
    ("status", "failed_stage"),
    [
        (S.INITIALIZING, ""),  # queued
        (S.ZIP_CREATION, ""),
        (S.REPLICATE_TRAINING, ""),  # Replicate may still be downloading it
        (S.HUGGINGFACE_UPLOAD, ""),
        (S.FAILED, S.REPLICATE_TRAINING),  # its retry starts at Replicate, which reads the ZIP as it is
    ],
)
def test_the_zip_of_a_queued_or_running_training_is_kept_however_old(
    make_training, tmp_path, status, failed_stage
):
    job = make_training()
    name = zip_built(job, days_ago=90, status=status, failed_stage=failed_stage)
    out = prune(scratch=tmp_path)
    assert exists(name)
    assert name not in out
    assert Dataset.objects.get(training=job).zip_name == name


def test_a_failed_training_that_restarts_from_the_zip_stage_loses_its_old_zip(make_training, tmp_path):
    job = make_training()
    name = zip_built(job, days_ago=90, status=S.FAILED, failed_stage=S.ZIP_CREATION)
    prune(scratch=tmp_path)
    assert not exists(name)


def test_a_zip_younger_than_the_setting_is_kept(make_training, settings, tmp_path):
    settings.DATASET_ZIP_KEEP_DAYS = 7
    job = make_training()
    name = zip_built(job, days_ago=6)
    prune(scratch=tmp_path)
    assert exists(name)
    assert exists(name) and Dataset.objects.get(training=job).zip_name == name
    prune("--zip-days", "5", scratch=tmp_path)  # the option overrides the setting for one run
    assert not exists(name)


def test_dry_run_lists_what_would_go_and_deletes_nothing(make_training, alice, tmp_path):
    from generations.models import InputImage
    from generations.services import input_image_add

    job = make_training()
    name = zip_built(job, days_ago=30)
    with time_machine.travel(timezone.now() - timedelta(days=5)):
        staged = input_image_add(user=alice, data=images.photo(seed=3), label="a dataset photo")
    leftover = tmp_path / "fluxsite-weights-abc123"
    leftover.mkdir()
    old = time.time() - 5 * 86400
    os.utime(leftover, (old, old))

    out = prune("--dry-run", scratch=tmp_path)

    assert f"would delete dataset zip: {name}" in out
    assert f"would delete staged input: {staged.file_name}" in out
    assert f"would delete scratch: {leftover}" in out
    assert "would delete 1 dataset ZIP(s)" in out
    assert exists(name) and exists(staged.file_name) and leftover.exists()
    assert Dataset.objects.get(training=job).zip_name == name
    assert InputImage.objects.filter(pk=staged.pk).exists()


def test_an_orphaned_zip_is_deleted_but_the_photos_beside_it_are_not(make_training, tmp_path):
    job = make_training()
    kept = zip_built(job, days_ago=0)
    orphan = storage.file_save(
        alias=storage.PRIVATE, name=f"datasets/{job.pk}/dataset-{'0' * 32}.zip", content=io.BytesIO(b"PK")
    )
    photo = storage.file_save(
        alias=storage.PRIVATE, name=f"datasets/{job.pk}/{'1' * 32}.jpg", content=io.BytesIO(b"jpeg")
    )
    with time_machine.travel(timezone.now() + timedelta(days=3)):  # the orphan is 3 days old now
        prune("--zip-days", "4", scratch=tmp_path)
    assert exists(orphan)  # younger than 4 days: a build may still be writing it
    with time_machine.travel(timezone.now() + timedelta(days=3)):
        prune("--zip-days", "2", scratch=tmp_path)
    assert not exists(orphan)
    assert exists(photo)
    assert not exists(kept)  # its dataset's own ZIP, 3 days old, went by the ordinary rule


def test_staged_input_images_older_than_the_setting_go_with_their_rows(alice, settings, tmp_path):
    from generations.models import InputImage
    from generations.services import input_image_add

    settings.TEMP_FILES_KEEP_DAYS = 2
    with time_machine.travel(timezone.now() - timedelta(days=3)):
        old = input_image_add(user=alice, data=images.photo(seed=1), label="old")
    young = input_image_add(user=alice, data=images.photo(seed=2), label="young")

    prune(scratch=tmp_path)

    assert not InputImage.objects.filter(pk=old.pk).exists()
    assert not exists(old.file_name)
    assert InputImage.objects.filter(pk=young.pk).exists() and exists(young.file_name)


def test_only_our_own_old_scratch_folders_are_removed(settings, tmp_path, db):
    settings.TEMP_FILES_KEEP_DAYS = 2
    old = time.time() - 3 * 86400
    ours_old = tmp_path / "fluxsite-publish-x1"
    ours_old.mkdir()
    (ours_old / "lora.safetensors").write_bytes(b"weights")
    ours_young = tmp_path / "fluxsite-weights-x2"
    ours_young.mkdir()
    not_ours = tmp_path / "someone-elses-tmp"
    not_ours.mkdir()
    for path in (ours_old, not_ours):
        os.utime(path, (old, old))

    prune(scratch=tmp_path)

    assert not ours_old.exists()
    assert ours_young.exists() and not_ours.exists()


def test_it_refuses_to_keep_less_than_a_day(tmp_path, db):
    with pytest.raises(CommandError, match="at least one day"):
        prune("--zip-days", "0", scratch=tmp_path)


def test_on_s3_old_and_orphaned_zips_go_and_running_ones_stay(s3, make_training, tmp_path):  # noqa: F811
    draft, running = make_training("draft"), make_training("running")
    old = zip_built(draft, days_ago=10)
    needed = zip_built(running, days_ago=10, status=S.REPLICATE_TRAINING)
    orphan = storage.file_save(
        alias=storage.PRIVATE, name=f"datasets/{draft.pk}/dataset-{'2' * 32}.zip", content=io.BytesIO(b"PK")
    )
    assert not storage.is_local(storage.PRIVATE)

    with time_machine.travel(timezone.now() + timedelta(days=8)):
        out = prune(scratch=tmp_path)

    keys = {
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="private/datasets/").get("Contents", [])
    }
    assert f"private/{old}" not in keys
    assert f"private/{orphan}" not in keys
    assert f"private/{needed}" in keys
    assert f"deleted dataset zip: {orphan}" in out
