"""Background tasks of the models app: thin, keyed by primary key, safe to run twice."""

from __future__ import annotations

import logging

from fluxsite.integrations.errors import IntegrationError
from models_app.services import lora_card_publish, lora_publish

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


def lora_card_publish_task(model_id: int) -> str:
    """Commit the model card again (its example images follow the suggested strength). Best effort:
    a refusal is logged, the card keeps its last images and the next publish or grid rewrites it."""
    try:
        return lora_card_publish(model_id=model_id) or "skipped"
    except IntegrationError as exc:
        logger.warning("lora_card_publish_task(%s): %s (%s)", model_id, exc, exc.detail)
        return f"failed:{exc.category}"
