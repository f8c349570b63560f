from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable

import pytest
import stripe
from django.db import connections

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


def run_concurrently(fn: Callable[[int], object], n: int) -> list[object]:
    """Run fn(i) in n threads released at the same moment; returns results or raised exceptions."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as exc:
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def ensure_catalog() -> None:
    """The sandbox's packs and plan, loaded as `make run` loads them (tests/conftest.py `catalog`)."""
    catalog_load()
