"""Outbound webhooks: a person's endpoints get signed events about their trainings and images.

Why here (fluxsite.accounts) and not in the api app: the training and generations apps emit the
events, and they sit above accounts and below api (import-linter's layers), so they call
`webhook_event_emit` directly. The deliveries are written in the emitter's transaction (an outbox:
no event for a transition that rolled back, none lost for one that committed) and sent by
`fluxsite.accounts.tasks.webhook_delivery_send_task` once it commits.

Signing is the Standard Webhooks scheme (https://www.standardwebhooks.com/, spec/standard-webhooks.md):
`webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}" keyed with the base64-decoded secret>`, so any of its verifiers work
(the tests verify with the official `standardwebhooks` library).

A delivery is claimed before it is sent (compare-and-swap on attempts and next_attempt_at), so a
task run twice sends once; a failed send is retried after 5 s, 30 s, 2 min, 10 min, 1 h by the
every-minute reconcile (`manage.py webhooks_reconcile`), up to WEBHOOK_MAX_ATTEMPTS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone

from fluxsite.accounts.models import User, WebhookDelivery, WebhookEndpoint
from fluxsite.integrations.downloads import host_addresses, ip_is_public, post_pinned

logger = logging.getLogger(__name__)

EVENTS = WebhookEndpoint.Event
ENDPOINTS_MAX = 10
RETRY_DELAYS_SECONDS = (5, 30, 120, 600, 3600)  # after attempt 1, 2, 3, 4, 5 (and 1 h after that)
CLAIM_SECONDS = 60  # a claimed send that died is tried again after this (by the reconcile)
D = WebhookDelivery.Status


class WebhookError(Exception):
    """A refused endpoint; the message is safe to show."""


# --- Destinations --------------------------------------------------------------------------------
def destination_check(url: str) -> tuple[str, ...]:
    """The addresses `url`'s host resolves to, checked: refused (WebhookError) when the URL is not
    https, or when any address is private, loopback, link-local (...), unless
    WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS (sandbox, DEBUG), which allows those and plain http. Checked
    when the endpoint is registered and again before every send (DNS can change in between); the
    send connects only to the addresses checked (fluxsite.integrations.downloads.post_pinned)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError("Enter an http:// or https:// URL.")
    try:
        addresses = host_addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except (OSError, UnicodeError, ValueError):
        raise WebhookError(f"{parts.hostname} does not resolve: check the host name.")
    if not addresses:
        raise WebhookError(f"{parts.hostname} does not resolve: check the host name.")
    if settings.WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS:  # the sandbox and DEBUG: a local receiver is fine
        return addresses
    if not all(ip_is_public(address) for address in addresses):
        raise WebhookError(
            f"{parts.hostname} resolves to a private, loopback or link-local address: "
            "webhooks go only to public addresses."
        )
    if parts.scheme != "https":
        raise WebhookError("The URL must start with https://.")
    return addresses


# --- Endpoints -------------------------------------------------------------------------------------
def webhook_secret_new() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def webhook_endpoint_create(*, user: User, url: str, events: list[str]) -> WebhookEndpoint:
    url = url.strip()
    chosen = [event for event in EVENTS.values if event in events]
    if not chosen or len(chosen) != len(set(events)):
        raise WebhookError("Choose at least one event among: " + ", ".join(EVENTS.values) + ".")
    if len(url) > 500:
        raise WebhookError("The URL is too long (500 characters at most).")
    destination_check(url)
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()  # the limit holds under races
        if WebhookEndpoint.objects.filter(owner=user).count() >= ENDPOINTS_MAX:
            raise WebhookError(f"You have {ENDPOINTS_MAX} endpoints, the most: delete one first.")
        return WebhookEndpoint.objects.create(owner=user, url=url, events=chosen, secret=webhook_secret_new())


def webhook_endpoint_get(*, user: User, pk: int) -> WebhookEndpoint:
    """The user's endpoint, or Http404 (another user's too)."""
    return get_object_or_404(WebhookEndpoint, pk=pk, owner=user)


def webhook_endpoint_delete(*, user: User, endpoint_id: int) -> None:
    webhook_endpoint_get(user=user, pk=endpoint_id).delete()


# --- Events ------------------------------------------------------------------------------------------
def _envelope(event_type: str, data: dict, now: datetime) -> dict:
    return {"type": event_type, "timestamp": now.isoformat(), "data": data}


def _enqueue_send(delivery_ids: list[int]) -> None:
    from django_q.tasks import async_task

    def send() -> None:
        for delivery_id in delivery_ids:
            async_task(
                "fluxsite.accounts.tasks.webhook_delivery_send_task",
                delivery_id,
                task_name=f"webhook-delivery-{delivery_id}",
            )

    transaction.on_commit(send)


def webhook_event_emit(*, user_id: int, event_type: str, data: dict) -> list[int]:
    """Record the event for each of the user's endpoints that chose it, in the caller's transaction,
    and send them once it commits. Returns the deliveries' ids (none when nobody listens)."""
    endpoints = [e for e in WebhookEndpoint.objects.filter(owner_id=user_id) if event_type in e.events]
    if not endpoints:
        return []
    now = timezone.now()
    event_id = "msg_" + uuid.uuid4().hex
    with transaction.atomic():
        ids = [
            WebhookDelivery.objects.create(
                endpoint=endpoint,
                event_id=event_id,
                type=event_type,
                payload=_envelope(event_type, data, now),
                next_attempt_at=now,
            ).pk
            for endpoint in endpoints
        ]
        _enqueue_send(ids)
    return ids


def webhook_test_send(*, user: User, endpoint_id: int) -> WebhookDelivery:
    """A `webhook.test` event to this one endpoint (the page's "Send test event")."""
    endpoint = webhook_endpoint_get(user=user, pk=endpoint_id)
    now = timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint,
            event_id="msg_" + uuid.uuid4().hex,
            type="webhook.test",
            payload=_envelope(
                "webhook.test", {"endpoint_id": endpoint.pk, "message": "Hello from Fluxsite"}, now
            ),
            next_attempt_at=now,
        )
        _enqueue_send([delivery.pk])
    return delivery


# --- Sending --------------------------------------------------------------------------------------------
def webhook_sign(*, secret: str, event_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{event_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def retry_delay_seconds(attempt: int) -> int:
    """How long after failed attempt `attempt` (1-based) the next one is due."""
    return RETRY_DELAYS_SECONDS[min(attempt, len(RETRY_DELAYS_SECONDS)) - 1]


def _claim(delivery_id: int, now: datetime) -> WebhookDelivery | None:
    """Take the due delivery for one attempt (compare-and-swap): None when it is not due, done,
    or another worker took it first. The claim pushes next_attempt_at CLAIM_SECONDS ahead."""
    delivery = WebhookDelivery.objects.filter(pk=delivery_id).select_related("endpoint").first()
    if delivery is None or delivery.status != D.PENDING:
        return None
    if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
        return None
    claimed = WebhookDelivery.objects.filter(
        pk=delivery.pk, status=D.PENDING, attempts=delivery.attempts
    ).update(
        attempts=delivery.attempts + 1, next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS), updated_at=now
    )
    if claimed != 1:
        return None
    delivery.attempts += 1
    return delivery


def webhook_delivery_send(*, delivery_id: int) -> str:
    """One attempt at a due delivery: "succeeded", "retry", "failed" or "skipped" (not due, done,
    or taken by another worker: a second run of the same task sends nothing)."""
    now = timezone.now()
    delivery = _claim(delivery_id, now)
    if delivery is None:
        return "skipped"
    endpoint = delivery.endpoint
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
    timestamp = int(now.timestamp())
    code: int | None = None
    error = ""
    try:
        code = post_pinned(
            url=endpoint.url,
            addresses=destination_check(endpoint.url),
            content=body.encode(),
            headers={
                "content-type": "application/json",
                "user-agent": "Fluxsite-Webhooks/1",
                "webhook-id": delivery.event_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": webhook_sign(
                    secret=endpoint.secret, event_id=delivery.event_id, timestamp=timestamp, body=body
                ),
            },
            timeout_seconds=float(settings.WEBHOOK_TIMEOUT_SECONDS),
        )  # no redirect is followed: it could lead anywhere
        if not 200 <= code < 300:
            error = f"The endpoint answered {code}."
    except WebhookError as exc:
        error = str(exc)
    except httpx.TimeoutException:
        error = f"No answer within {settings.WEBHOOK_TIMEOUT_SECONDS} s."
    except httpx.HTTPError as exc:
        error = f"Could not connect: {exc.__class__.__name__}."
    if not error:
        WebhookDelivery.objects.filter(pk=delivery.pk, status=D.PENDING).update(
            status=D.SUCCEEDED,
            last_status_code=code,
            last_error="",
            next_attempt_at=None,
            updated_at=timezone.now(),
        )
        return "succeeded"
    last = delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS
    WebhookDelivery.objects.filter(pk=delivery.pk, status=D.PENDING).update(
        status=D.FAILED if last else D.PENDING,
        last_status_code=code,
        last_error=error[:300],
        next_attempt_at=None if last else now + timedelta(seconds=retry_delay_seconds(delivery.attempts)),
        updated_at=timezone.now(),
    )
    logger.info("webhook delivery %s attempt %s: %s", delivery.pk, delivery.attempts, error)
    return "failed" if last else "retry"


def webhooks_reconcile(*, now: datetime | None = None) -> dict[str, int]:
    """Every minute: send the deliveries that are due again (retries, and sends whose worker died)."""
    now = now or timezone.now()
    due = list(
        WebhookDelivery.objects.filter(status=D.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:500]
    )
    _enqueue_send(due)
    return {"webhooks_due": len(due)}
