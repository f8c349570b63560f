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
