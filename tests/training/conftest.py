from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from tests.training import images


@pytest.fixture
def training(alice):
    from training.services import training_create

    return training_create(owner=alice, name="Anna", trigger_word="ohwx_anna", subject_kind="subject")


def post_files(client, training, files: list[tuple[str, bytes]], **kwargs):
    """Upload through the real view, asking for the JSON verdicts the browser script reads."""
    url = reverse("training:dataset_upload", args=[training.pk])
    payload = {"files": [SimpleUploadedFile(name, data) for name, data in files]}
    return client.post(url, payload, headers={"accept": "application/json"}, **kwargs)


def add_photos(client, training, count: int, start_seed: int = 1000) -> list[dict]:
    response = post_files(
        client, training, [(f"p{i}.jpg", images.photo(seed=start_seed + i)) for i in range(count)]
    )
    assert response.status_code == 200, response.content
    verdicts = response.json()["files"]
    assert all(v["ok"] for v in verdicts), verdicts
    return verdicts
