"""The whole path with the real django-q2 worker: `manage.py qcluster` in its own process.

Nothing runs synchronously here: the web side (the live server, which also serves the sandbox)
enqueues on the broker configured for this run (the database, or Redis when REDIS_URL is set),
and the worker process picks the tasks up, exactly as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from billing.selectors import balance_for_user
from tests.helpers import wait_for
from tests.training.conftest import add_photos
from training.models import TrainingJob
from training.services import trainings

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.qcluster, pytest.mark.django_db(transaction=True)]


def worker_env(base_url: str, media_root: Path, hf_root: Path, var_dir: Path) -> dict[str, str]:
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    if db["ENGINE"].endswith("sqlite3"):
        env["SQLITE_PATH"] = str(db["NAME"])
    else:
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        )
    env.update(
        SITE_URL=base_url,
        SANDBOX_MODE="true",
        DEBUG="true",
        SANDBOX_TRAINING_SECONDS="3",
        MEDIA_ROOT=str(media_root),
        SANDBOX_HF_ROOT=str(hf_root),
        FLUXSITE_VAR_DIR=str(var_dir),
        Q_WORKERS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def test_a_training_runs_to_a_published_model_on_the_real_worker(
    sandbox, settings, alice, alice_client, tmp_path
):
    from billing.services import credits_grant
    from training.services import training_create

    media = tmp_path / "shared-media"
    settings.MEDIA_ROOT = str(media)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media), "base_url": "/media/"},
        },
        "private": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media / "private"), "base_url": None},
        },
    }
    credits_grant(user=alice, amount=5000, reference="test:topup")
    job = training_create(owner=alice, name="Worker run", trigger_word="ohwx_worker", subject_kind="subject")
    add_photos(alice_client, job, 10)

    worker = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        start_new_session=True,
        env=worker_env(sandbox, media, settings.SANDBOX_HF_ROOT, tmp_path / "var"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        before = balance_for_user(alice)
        trainings.training_start(job=job, params={"steps": 1000, "learning_rate": 0.0004, "lora_rank": 16})

        def finished() -> bool:
            job.refresh_from_db()
            if job.status in (TrainingJob.Status.SUCCEEDED, TrainingJob.Status.FAILED):
                return True
            assert worker.poll() is None, worker.stdout.read().decode()[-3000:] if worker.stdout else ""
            return False

        wait_for(finished, timeout=90, interval=0.5)
        assert job.status == TrainingJob.Status.SUCCEEDED, (job.status, job.error_message)
        assert job.lora_model.status == "ready"
        assert balance_for_user(alice) < before
        assert job.events.filter(message__contains="Replicate training").exists()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
