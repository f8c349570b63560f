"""The training ZIP: generated member names, captions with the trigger word, streamed and idempotent."""

from __future__ import annotations

import io
import zipfile
import zlib
from urllib.parse import urlsplit

import pytest
import time_machine
from django.core.files.storage import storages

from tests.training.conftest import add_photos
from training.models import DatasetImage
from training.selectors import owned_file_names
from training.services import (
    DatasetError,
    dataset_build_zip,
    dataset_image_caption_set,
    dataset_zip_url,
)


@pytest.fixture
def small_limits(settings):
    settings.DATASET_MIN_IMAGES = 3


def _read(name: str) -> bytes:
    with storages["private"].open(name, "rb") as handle:
        return handle.read()


def test_the_zip_holds_generated_names_and_rendered_captions(alice_client, training, small_limits):
    add_photos(alice_client, training, 3)
    first = training.dataset.images.first()
    dataset_image_caption_set(image=first, caption="[trigger] wearing a hat")
    DatasetImage.objects.filter(pk=training.dataset.images.last().pk).update(caption="")

    dataset = dataset_build_zip(dataset_id=training.dataset.pk)

    data = _read(dataset.zip_name)
    assert dataset.zip_size == len(data) and dataset.zip_crc32 == f"{zlib.crc32(data):08x}"
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    assert archive.namelist() == ["img_001.jpg", "img_001.txt", "img_002.jpg", "img_002.txt", "img_003.jpg"]
    assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    assert archive.read("img_001.txt") == b"ohwx_anna wearing a hat"
    assert archive.read("img_002.txt") == b"a photo of ohwx_anna"
    assert archive.read("img_001.jpg") == _read(first.file_name)


def test_building_twice_reuses_the_zip_until_something_changes(
    alice_client, training, small_limits, django_capture_on_commit_callbacks
):
    add_photos(alice_client, training, 3)
    with time_machine.travel("2030-01-01 12:00Z", tick=False):
        first = dataset_build_zip(dataset_id=training.dataset.pk)
    again = dataset_build_zip(dataset_id=training.dataset.pk)
    assert (again.zip_name, again.zip_built_at) == (first.zip_name, first.zip_built_at)

    dataset_image_caption_set(image=training.dataset.images.first(), caption="[trigger] close-up")
    with django_capture_on_commit_callbacks(execute=True):
        rebuilt = dataset_build_zip(dataset_id=training.dataset.pk)

    assert rebuilt.zip_name != first.zip_name and rebuilt.zip_crc32 != first.zip_crc32
    assert not storages["private"].exists(first.zip_name)  # the stale archive is removed


def test_a_dataset_outside_the_limits_is_not_zipped(alice_client, training, small_limits):
    add_photos(alice_client, training, 2)

    with pytest.raises(DatasetError, match="needs 3-50 photos"):
        dataset_build_zip(dataset_id=training.dataset.pk)


def test_the_zip_url_is_signed_and_downloads(alice_client, training, small_limits, client, settings):
    add_photos(alice_client, training, 3)
    dataset = dataset_build_zip(dataset_id=training.dataset.pk)

    url = dataset_zip_url(dataset=dataset)

    assert url.startswith(settings.SITE_URL) and "/files/" in url
    response = client.get(urlsplit(url).path)
    assert response.status_code == 200
    assert f"{zlib.crc32(b''.join(response.streaming_content)):08x}" == dataset.zip_crc32


def test_owned_file_names_lists_every_stored_file(alice_client, training, small_limits, bob):
    add_photos(alice_client, training, 3)
    dataset = dataset_build_zip(dataset_id=training.dataset.pk)

    files = owned_file_names(training.owner)

    assert len(files) == 3 * 2 + 1 and ("private", dataset.zip_name) in files
    assert all(storages[alias].exists(name) for alias, name in files)
    assert owned_file_names(bob) == []


def test_images_without_a_recorded_crc_are_read_once_and_still_zip_correctly(
    alice_client, training, small_limits
):
    add_photos(alice_client, training, 3)
    training.dataset.images.update(crc32=None)
    dataset = dataset_build_zip(dataset_id=training.dataset.pk)
    archive = zipfile.ZipFile(io.BytesIO(_read(dataset.zip_name)))
    assert archive.testzip() is None and len(archive.namelist()) == 6


def test_a_photo_changed_since_upload_is_refused_instead_of_writing_a_corrupt_zip(
    alice_client, training, small_limits
):
    add_photos(alice_client, training, 3)
    training.dataset.images.filter(pk=training.dataset.images.first().pk).update(byte_size=12)
    with pytest.raises((DatasetError, ValueError)):
        dataset_build_zip(dataset_id=training.dataset.pk)


def test_crc32_combine_agrees_with_zlib_on_the_concatenation():
    import os
    import random

    from training.dataset_zip import crc32_combine

    rng = random.Random(7)
    for _ in range(50):
        a, b = os.urandom(rng.randint(0, 2000)), os.urandom(rng.randint(0, 70_000))
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
