"""Thin django-q2 tasks: primary keys in, one service call, safe to run twice."""

from __future__ import annotations

import contextlib

from fluxsite.integrations.errors import IntegrationError
from training import services
from training.models import TrainingJob
from training.webhook_records import replicate_webhook_process


def training_advance_task(job_id: int) -> None:
    services.training_advance(job_id=job_id)


def replicate_webhook_process_task(delivery_id: int) -> None:
    """Apply one recorded Replicate webhook, by kind; a delivery already processed is skipped."""
    replicate_webhook_process(delivery_id=delivery_id)


def training_sync_task(job_id: int) -> None:
    """Refresh one running training from Replicate (asked for by a watcher); errors wait for the poller."""

    job = TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.REPLICATE_TRAINING).first()
    if job is None or not job.replicate_training_id:
        return
    # Best effort: if Replicate does not answer, the every-minute poller tries again.
    with contextlib.suppress(IntegrationError):
        services.training_sync(job=job)


def trainings_reconcile_task() -> dict[str, int]:
    """Scheduled every minute (catch_up off): polls quiet trainings and resumes stalled stages, and
    does the same for their sample grids (one schedule: the grid is the training's last step)."""
    return {**services.trainings_reconcile(), **services.samples_reconcile()}


def sample_grid_start_task(job_id: int) -> int:
    """Plan a succeeded training's sample grid (once) and run its queued images."""
    return services.sample_grid_start(job_id=job_id)


def sample_grid_run_task(job_id: int) -> int:
    """Run the grid's queued images (each claimed first: safe to run twice)."""
    return services.sample_grid_run(job_id=job_id)


def training_notify_task(job_id: int) -> None:
    services.training_notify(job_id=job_id)


def caption_batch_pump_task(batch_id: int) -> int:
    """Create the next predictions of a caption batch (each photo claimed first: safe to run twice)."""
    return services.caption_batch_pump(batch_id=batch_id)


def captions_reconcile_task() -> dict[str, int]:
    """Scheduled every minute (catch_up off): polls quiet caption runs, fails lost claims, pumps batches."""
    return services.captions_reconcile()
