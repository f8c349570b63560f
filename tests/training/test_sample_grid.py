"""The sample grid after a successful training, over real HTTP against the Replicate and Hugging Face
stand-ins: prompts × strengths with one seed, part of the training's price, rerunnable, never stuck."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import yaml
from django.utils import timezone

from billing.models import CreditEntry
from billing.pricing import training_cost_credits
from billing.selectors import balance_for_user
from fluxsite.integrations import huggingface_client, storage
from models_app.models import LoraModel
from sandbox.faults import fault_inject
from sandbox.replicate.models import SandboxPrediction
from tests.generations.generation_kit import lora_model, sandbox_version
from tests.helpers import wait_for
from tests.training.conftest import add_photos
from tests.training.test_pipeline import PARAMS, wait_for_status
from training.models import SampleImage, TrainingEvent, TrainingJob
from training.services import (
    sample_grid_rerun,
    sample_grid_run,
    sample_grid_start,
    samples_reconcile,
    trainings,
)

# Slow sandbox journeys whose outcome does not depend on the database: they run once in CI (pass 2).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.once]
S = TrainingJob.Status
C = SampleImage.Status
STRENGTHS = [0.0, 0.6, 0.8, 1.0, 1.2]


@pytest.fixture
def grid_job(sandbox, alice):
    """A succeeded training of alice's with its model on a sandbox trained version (no real run)."""
    from training.services import training_create

    job = training_create(owner=alice, name="Grid", trigger_word="ALICEX", subject_kind="subject")
    TrainingJob.objects.filter(pk=job.pk).update(
        status=S.SUCCEEDED, params={**PARAMS, "sample_prompts": ["a portrait in soft light", "a cat"]}
    )
    lora_model(alice, replicate_version=sandbox_version("grid"), training_id=job.pk)
    job.refresh_from_db()
    return job


def _card_has_widget(job: TrainingJob) -> bool:
    """True once the grid is done and the card was committed again with its images."""
    cells = SampleImage.objects.filter(job=job)
    if cells.count() != 10 or cells.filter(status__in=(C.QUEUED, C.RUNNING)).exists():
        return False
    return TrainingEvent.objects.filter(job=job, stage="samples").exists() and any(
        "widget" in line for line in _card_text(LoraModel.objects.get(training=job)).splitlines()
    )


def _card_text(model: LoraModel) -> str:
    """The card on `main`, or "" while a commit of it is landing: huggingface_hub reads the file's size
    (HEAD) and then its bytes (GET), both of `main`, and a commit between the two fails its
    consistency check, on the Hub as on the stand-in. The caller polls again."""
    import tempfile
    from pathlib import Path

    from fluxsite.integrations.errors import IntegrationError

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = huggingface_client.file_download(
                repo_id=model.hf_repo_id, filename="README.md", local_dir=Path(tmp)
            )
        except (OSError, IntegrationError):
            return ""
        return path.read_text()


def _readme(model: LoraModel, tmp_path) -> dict:
    path = huggingface_client.file_download(
        repo_id=model.hf_repo_id, filename="README.md", local_dir=tmp_path
    )
    text = path.read_text()
    return yaml.safe_load(text.split("---")[1])


def test_a_successful_training_makes_its_grid_and_puts_it_on_the_model_the_cover_and_the_card(
    sandbox, alice, alice_client, settings, tmp_path
):
    from billing.services import credits_grant
    from training.services import training_create

    credits_grant(user=alice, amount=5000, reference="test:topup")
    settings.REPLICATE_TIMEOUT_SECONDS = 5
    job = training_create(owner=alice, name="Anna", trigger_word="ohwx_anna", subject_kind="subject")
    add_photos(alice_client, job, 10)
    before = balance_for_user(alice)
    prompts = ["ohwx_anna reading in a library", "a watercolor of ohwx_anna"]
    job = trainings.training_start(job=job, params={**PARAMS, "sample_prompts": prompts})
    # One price, one entry: the training and its 10 sample images (2 prompts × 5 strengths).
    grid_credits = 10 * settings.SAMPLE_GRID_CREDITS_PER_IMAGE
    assert job.cost_credits == training_cost_credits(steps=1000) + grid_credits
    assert balance_for_user(alice) == before - job.cost_credits

    job = wait_for_status(job, (S.SUCCEEDED, S.FAILED), 60)
    assert job.status == S.SUCCEEDED, job.error_message
    # The grid's task comes after the success (a failed sample never fails the training).
    assert wait_for(lambda: _card_has_widget(job), timeout=40)
    cells = list(SampleImage.objects.filter(job=job).order_by("row", "col"))
    assert [(c.row, c.col) for c in cells] == [(r, c) for r in range(2) for c in range(5)]
    assert all(c.status == C.SUCCEEDED for c in cells), [(c.status, c.error_message) for c in cells]

    # The predictions Replicate got: the trained version, one seed, every strength, 0 included.
    model = LoraModel.objects.get(training=job)
    predictions = list(SandboxPrediction.objects.exclude(model__startswith="lucataco"))
    assert len(predictions) == 10
    assert {p.version for p in predictions} == {model.replicate_version.rpartition(":")[2]}
    assert {p.input["seed"] for p in predictions} == {settings.SAMPLE_GRID_SEED}
    assert sorted({p.input["lora_scale"] for p in predictions}) == STRENGTHS
    assert {p.input["prompt"] for p in predictions} == set(prompts)

    # On the model: the grid, the cover (the first prompt at the strength nearest 1.0), the card.
    grid = model.sample_grid
    assert grid["strengths"] == STRENGTHS and grid["prompts"] == prompts and grid["seed"] == 42
    assert model.cover_image_name == cells[3].file_name  # row 0, strength 1.0
    assert storage.get_storage(storage.PUBLIC).exists(model.cover_image_name)
    card = _readme(model, tmp_path)
    widget = card["widget"]
    assert [w["text"] for w in widget[:2]] == prompts
    info = huggingface_client.repo_info(repo_id=model.hf_repo_id)
    assert all(w["output"]["url"] in info.files for w in widget)
    assert info.sha == model.hf_commit

    # Nothing else was charged for the grid.
    assert balance_for_user(alice) == before - (job.cost_credits or 0)
    assert CreditEntry.objects.filter(wallet__user=alice, amount__lt=0).count() == 1

    page = alice_client.get(f"/models/{model.pk}/")
    assert page.status_code == 200 and b"Sample grid" in page.content
    assert storage.public_url(name=cells[0].thumbnail_name).encode() in page.content
    training_page = alice_client.get(f"/trainings/{job.pk}/")
    assert b"Sample grid" in training_page.content and b"(no LoRA)" in training_page.content

    # The owner's best strength: the card is committed again with that column's images.
    assert alice_client.post(f"/models/{model.pk}/strength/", {"lora_scale": "0.6"}).status_code == 302
    model.refresh_from_db()
    assert model.suggested_lora_scale == 0.6 and model.hf_commit != info.sha
    widget = _readme(model, tmp_path / "again")["widget"]
    assert len(widget) == 3  # the cover (kept), then each prompt at 0.6
    assert [w["text"] for w in widget[1:]] == prompts
    assert huggingface_client.repo_info(repo_id=model.hf_repo_id).sha == model.hf_commit
    published = huggingface_client.file_download(
        repo_id=model.hf_repo_id, filename=widget[1]["output"]["url"], local_dir=tmp_path / "img"
    )
    row0_at_06 = b"".join(storage.file_iter(alias=storage.PUBLIC, name=cells[1].file_name))
    assert published.read_bytes() == row0_at_06


def test_a_failed_sample_leaves_the_training_succeeded_and_its_rerun_makes_it_at_no_charge(
    grid_job, alice, alice_client, bob_client
):
    fault_inject(service="replicate", operation="predictions.create", status=422, times=1)
    before = balance_for_user(alice)
    sample_grid_start(job_id=grid_job.pk)
    cells = SampleImage.objects.filter(job=grid_job)
    assert cells.count() == 10
    failed = list(cells.filter(status=C.FAILED))
    assert len(failed) == 1 and failed[0].error_message
    assert cells.filter(status=C.SUCCEEDED).count() == 9
    grid_job.refresh_from_db()
    assert grid_job.status == S.SUCCEEDED
    model = LoraModel.objects.get(training=grid_job)
    assert sum(cell["status"] == "failed" for row in model.sample_grid["cells"] for cell in row) == 1
    assert b"Run the failed samples again" in alice_client.get(f"/trainings/{grid_job.pk}/").content

    assert bob_client.post(f"/trainings/{grid_job.pk}/samples/rerun/").status_code == 404
    assert alice_client.get(f"/trainings/{grid_job.pk}/samples/rerun/").status_code == 405
    assert cells.filter(status=C.FAILED).count() == 1

    response = alice_client.post(f"/trainings/{grid_job.pk}/samples/rerun/")
    assert response.status_code == 302
    assert cells.filter(status=C.SUCCEEDED).count() == 10
    assert SandboxPrediction.objects.count() == 10  # the refused create made none; the rerun one
    assert balance_for_user(alice) == before  # paid with the training: no charge, no refund
    model.refresh_from_db()
    assert all(cell["status"] == "succeeded" for row in model.sample_grid["cells"] for cell in row)
    with pytest.raises(Exception, match="nothing to run again"):
        sample_grid_rerun(job=grid_job)


def test_the_grids_tasks_are_idempotent(grid_job):
    assert sample_grid_start(job_id=grid_job.pk) == 10
    assert sample_grid_start(job_id=grid_job.pk) == 0
    assert sample_grid_run(job_id=grid_job.pk) == 0
    assert SampleImage.objects.filter(job=grid_job).count() == 10
    assert SandboxPrediction.objects.count() == 10


def test_a_worker_killed_mid_grid_leaves_nothing_stuck(grid_job, settings):
    from training.services.samples import sample_grid_plan

    assert sample_grid_plan(job=grid_job) == 10
    cells = SampleImage.objects.filter(job=grid_job)
    old = timezone.now() - timedelta(minutes=10)
    # One claimed by a worker that died before creating its prediction; the others never run.
    first = cells.order_by("pk").first()
    assert first is not None
    cells.filter(pk=first.pk).update(status=C.RUNNING, claimed_at=old, attempts=1)
    cells.update(updated_at=old)
    counts = samples_reconcile()
    assert counts["samples_requeued"] == 1
    assert cells.filter(status=C.SUCCEEDED).count() == 10
    assert SandboxPrediction.objects.count() == 10


def test_a_prediction_still_running_when_the_worker_stops_waiting_is_finished_by_the_poller(
    grid_job, settings
):
    settings.SAMPLE_GRID_WAIT_SECONDS = 0  # no Prefer: wait, no polling: the poller's job
    settings.SANDBOX_PREDICTION_SECONDS = 1
    settings.SAMPLE_GRID_CONCURRENCY = 1
    sample_grid_start(job_id=grid_job.pk)
    cells = SampleImage.objects.filter(job=grid_job)
    assert cells.filter(status=C.RUNNING).count() == 10
    time.sleep(1.5)  # the stand-in's predictions finish by its clock
    cells.update(updated_at=timezone.now() - timedelta(minutes=10))
    assert samples_reconcile()["samples_polled"] == 10
    assert cells.filter(status=C.SUCCEEDED).count() == 10
