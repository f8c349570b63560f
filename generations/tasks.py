"""Background tasks of the generations app: thin, keyed by primary key, safe to run twice.

Replicate's prediction webhooks are processed by training.tasks.replicate_webhook_process_task
(one recording and one dispatch for every Replicate webhook), which calls
generations.services.generation_apply_replicate.
"""

from __future__ import annotations

from generations.services import generation_submit, generations_reconcile


def generation_submit_task(generation_id: int) -> str:
    """Create the Replicate prediction of one generation (claimed, so running it twice is harmless)."""
    generation = generation_submit(generation_id=generation_id)
    return generation.status if generation else "missing"


def generations_reconcile_task() -> dict[str, int]:
    """Scheduled every minute (catch_up off): polls quiet generations and runs due retries."""
    return generations_reconcile()
