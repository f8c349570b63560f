"""Creating a training over the API: the draft, its photos (multipart), the quote and the start,
over real HTTP against the live server with the sandbox standing in for Replicate."""

from __future__ import annotations

import httpx
import pytest

from billing.selectors import balance_for_user
from tests.api.conftest import token_for
from tests.training import images
from training.models import DatasetImage, TrainingJob

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def http(sandbox, alice, settings):
    settings.DATASET_MIN_IMAGES = 2
    _, secret = token_for(alice)
    with httpx.Client(base_url=sandbox, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as client:
        yield client


def _photos(count: int, seed: int = 0):
    return [("files", (f"p{i}.jpg", images.photo(seed=seed + i), "image/jpeg")) for i in range(count)]


def test_a_training_is_created_filled_quoted_and_started(alice, http):
    created = http.post("/api/v1/trainings", json={"name": "Anna portraits"})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert created.json()["stage"] == "draft" and created.json()["trigger_word"].startswith("ohwx_")

    early = http.post(f"/api/v1/trainings/{job_id}/start?dry_run=true", json={"steps": 500})
    assert early.status_code == 200 and early.json()["valid"] is False  # no photos yet
    assert "add at least 2 more" in early.json()["errors"][0]["message"]

    key = {"Idempotency-Key": "photos-1"}
    photos = _photos(3)
    upload = http.post(f"/api/v1/trainings/{job_id}/photos", files=photos, headers=key)
    assert upload.status_code == 200, upload.text
    assert [f["ok"] for f in upload.json()["files"]] == [True, True, True]
    assert upload.json()["ready"] is True and upload.json()["photo_count"] == 3
    # A retry (httpx picks a new multipart boundary) gets the first answer: no photo twice.
    again = http.post(f"/api/v1/trainings/{job_id}/photos", files=photos, headers=key)
    assert again.json() == upload.json() and again.headers["Idempotent-Replayed"] == "true"
    assert DatasetImage.objects.filter(dataset__training_id=job_id).count() == 3
    other = http.post(f"/api/v1/trainings/{job_id}/photos", files=_photos(3, seed=50), headers=key)
    assert other.status_code == 422

    before = balance_for_user(alice)
    quote = http.post(f"/api/v1/trainings/{job_id}/start?dry_run=true", json={"steps": 500})
    assert quote.status_code == 200 and quote.json()["valid"] is True, quote.text
    credits = quote.json()["credits"]
    assert credits > 0 and balance_for_user(alice) == before
    assert TrainingJob.objects.get(pk=job_id).status == TrainingJob.Status.DRAFT

    bad = http.post(f"/api/v1/trainings/{job_id}/start", json={"steps": 99999})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "steps"
    assert balance_for_user(alice) == before

    started = http.post(f"/api/v1/trainings/{job_id}/start", json={"steps": 500})
    assert started.status_code == 200, started.text
    assert started.json()["stage"] != "draft" and started.json()["cost_credits"] == credits
    assert balance_for_user(alice) == before - credits
    twice = http.post(f"/api/v1/trainings/{job_id}/start", json={"steps": 500})
    assert twice.status_code == 409 and balance_for_user(alice) == before - credits


def test_a_bad_draft_or_a_missing_file_field_is_a_422_problem(http):
    answer = http.post("/api/v1/trainings", json={"name": "x", "trigger_word": "two words"})
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "trigger_word"
    assert not TrainingJob.objects.exists()
    job_id = http.post("/api/v1/trainings", json={"name": "Anna"}).json()["id"]
    empty = http.post(f"/api/v1/trainings/{job_id}/photos", files=[("other", ("a.txt", b"x", "text/plain"))])
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "files"


def test_a_bad_photo_gets_its_verdict_and_the_others_are_kept(http):
    job_id = http.post("/api/v1/trainings", json={"name": "Anna"}).json()["id"]
    files = [*_photos(1), ("files", ("broken.jpg", b"not an image", "image/jpeg"))]
    verdicts = http.post(f"/api/v1/trainings/{job_id}/photos", files=files).json()["files"]
    assert [v["ok"] for v in verdicts] == [True, False] and verdicts[1]["message"]


def test_bobs_token_cannot_add_photos_to_alices_training(http, bob, sandbox):
    job_id = http.post("/api/v1/trainings", json={"name": "Anna"}).json()["id"]
    _, secret = token_for(bob)
    answer = httpx.post(
        f"{sandbox}/api/v1/trainings/{job_id}/photos",
        files=_photos(1),
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert answer.status_code == 404
    start = httpx.post(
        f"{sandbox}/api/v1/trainings/{job_id}/start", json={}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert start.status_code == 404
    assert not DatasetImage.objects.exists()
    assert TrainingJob.objects.get(pk=job_id).status == TrainingJob.Status.DRAFT


def test_creating_a_training_needs_the_train_scope(alice, sandbox):
    _, secret = token_for(alice, scopes=("read", "generate"))
    answer = httpx.post(
        f"{sandbox}/api/v1/trainings", json={"name": "Anna"}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert answer.status_code == 403 and not TrainingJob.objects.exists()


def test_a_photo_over_the_per_file_limit_is_skipped_while_it_streams_in(http, settings):
    settings.DATASET_MAX_FILE_BYTES = 50_000
    job_id = http.post("/api/v1/trainings", json={"name": "Anna"}).json()["id"]
    small = images.photo(size=(64, 64), seed=1)
    big = images.photo(size=(1600, 1200), seed=2)
    assert len(small) < 50_000 < len(big)
    files = [("files", ("small.jpg", small, "image/jpeg")), ("files", ("big.jpg", big, "image/jpeg"))]
    answer = http.post(f"/api/v1/trainings/{job_id}/photos", files=files)
    assert answer.status_code == 200, answer.text
    verdicts = {v["name"]: v for v in answer.json()["files"]}
    assert (
        verdicts["big.jpg"]["ok"] is False and "we stopped reading it there" in verdicts["big.jpg"]["message"]
    )
    assert DatasetImage.objects.filter(dataset__training_id=job_id).count() == (
        1 if verdicts["small.jpg"]["ok"] else 0
    )
