"""Background tasks of the models app: thin, keyed by primary key, safe to run twice."""

from __future__ import annotations

import logging

from fluxsite.integrations.errors import IntegrationError
from models_app.services import lora_publish

logger = logging.getLogger(__name__)


def lora_publish_task(model_id: int) -> str:
    """Publish one model; the outcome is recorded on the model, so a failure is not re-raised.

    lora_publish stores publish_failed with the error's category, and the owner retries from the
    model page; the pipeline calls lora_publish directly when it wants to count attempts itself.
    """
    try:
        return lora_publish(model_id=model_id).status
    except IntegrationError as exc:
        logger.info("lora_publish_task(%s): %s (retryable=%s)", model_id, exc, exc.retryable)
        return f"publish_failed:{exc.category}"


def generation_submit_task(generation_id: int) -> str:
    """Create the Replicate prediction of one generation (claimed, so running it twice is harmless)."""
    from models_app.services import generation_submit

    generation = generation_submit(generation_id=generation_id)
    return generation.status if generation else "missing"


def prediction_webhook_process_task(delivery_id: int) -> None:
    """Apply one recorded prediction webhook; a delivery already processed is skipped."""
    from django.utils import timezone

    from fluxsite.integrations import replicate_client
    from models_app.services import generation_apply_replicate
    from training.models import ReplicateWebhook

    delivery = ReplicateWebhook.objects.filter(
        pk=delivery_id, kind="prediction", processed_at__isnull=True
    ).first()
    if delivery is None:
        return
    generation_apply_replicate(
        info=replicate_client.prediction_from_payload(delivery.payload), generation_hint=delivery.job_hint
    )
    ReplicateWebhook.objects.filter(pk=delivery_id).update(processed_at=timezone.now())


def generations_reconcile_task() -> dict[str, int]:
    """Scheduled every minute (catch_up off): polls quiet generations and runs due retries."""
    from models_app.services import generations_reconcile

    return generations_reconcile()
