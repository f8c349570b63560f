"""Thin django-q2 tasks of the accounts app: they take primary keys and are safe to run twice."""

from __future__ import annotations

from fluxsite.accounts.services import webhooks


def webhook_delivery_send_task(delivery_id: int) -> str:
    """One attempt at a delivery; a second run of the same task finds it claimed or done and sends nothing."""
    return webhooks.webhook_delivery_send(delivery_id=delivery_id)


def webhooks_reconcile_task() -> dict[str, int]:
    """Scheduled every minute (catch_up off): sends the deliveries whose retry is due."""
    return webhooks.webhooks_reconcile()
