from __future__ import annotations

import json
import time
import uuid

import pytest
import stripe

from tests.conftest import catalog_load


def stripe_event(type: str, obj: dict, *, event_id: str | None = None, created: int | None = None) -> dict:
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": created or int(time.time()),
        "livemode": False,
        "type": type,
        "data": {"object": obj, "previous_attributes": {}},
    }


def signed(event: dict, secret: str, *, timestamp: int | None = None) -> tuple[bytes, str]:
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
    return payload.encode(), header


@pytest.fixture
def post_event(client, settings, django_capture_on_commit_callbacks):
    """POST a signed event to the real endpoint; on-commit work (the task) runs before returning."""

    def post(event: dict, *, secret: str | None = None, timestamp: int | None = None):
        body, header = signed(event, secret or settings.STRIPE_WEBHOOK_SECRET, timestamp=timestamp)
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                "/billing/webhooks/stripe/",
                data=body,
                content_type="application/json",
                HTTP_STRIPE_SIGNATURE=header,
            )

    return post


def ensure_catalog() -> None:
    """The sandbox's packs and plan, loaded as `make run` loads them (tests/conftest.py `catalog`)."""
    catalog_load()
