"""The whole path with the real django-q2 worker: `manage.py qcluster` in its own process.

Nothing runs synchronously here: the web side (the live server, which also serves the sandbox)
enqueues on the broker configured for this run (the database, or Redis when REDIS_URL is set),
and the worker process picks the tasks up, exactly as in production.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from billing.selectors import balance_for_user
from tests.helpers import wait_for
from tests.training.conftest import add_photos
from training.models import TrainingJob
from training.services import trainings

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.qcluster, pytest.mark.django_db(transaction=True)]


def test_a_training_runs_to_a_published_model_on_the_real_worker(
    qcluster_worker, alice, alice_client, tmp_path
):
    from billing.services import credits_grant
    from training.services import training_create

    credits_grant(user=alice, amount=5000, reference="test:topup")
    job = training_create(owner=alice, name="Worker run", trigger_word="ohwx_worker", subject_kind="subject")
    add_photos(alice_client, job, 10)
    before = balance_for_user(alice)
    trainings.training_start(job=job, params={"steps": 1000, "learning_rate": 0.0004, "lora_rank": 16})

    def finished() -> bool:
        job.refresh_from_db()
        if job.status in (TrainingJob.Status.SUCCEEDED, TrainingJob.Status.FAILED):
            return True
        assert qcluster_worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        return False

    wait_for(finished, timeout=90, interval=0.5)
    assert job.status == TrainingJob.Status.SUCCEEDED, (job.status, job.error_message)
    assert job.lora_model.status == "ready"
    assert balance_for_user(alice) < before
    assert job.events.filter(message__contains="Replicate training").exists()
