"""Recording Replicate's webhooks, trainings and predictions alike: verify, record once, acknowledge.

Both endpoints (training.webhooks and models_app.views) call `replicate_webhook_record`, so the two
can no longer drift. What it answers:

- a bad or stale signature: 400, nothing stored (the body is not from Replicate);
- a signed body that is not the object we expect (not JSON, an array, a number, an object without
  an id or a status...): 400 (not JSON) or 422 (wrong shape), stored as `refused` with the reason,
  never processed. Replicate signed it, so it is evidence of a change on their side worth keeping;
- a webhook-id we already have: the same answer as the first time, and nothing changes;
- a lock timeout while inserting, or no REPLICATE_WEBHOOK_SECRET to verify with: 503, so
  Replicate retries (the missing secret is logged as an error);
- otherwise: 200, and the work is enqueued once the row is committed.

Webhooks: https://replicate.com/docs/topics/webhooks (body = the object as GET returns it),
verification: https://replicate.com/docs/topics/webhooks/verify-webhook
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, OperationalError, connection, models, transaction
from django.db.models import Value
from django.utils import timezone
from django_q.tasks import async_task

from fluxsite.integrations import replicate_client
from fluxsite.integrations.errors import IntegrationError
from fluxsite.ratelimits import log_allowed
from training.models import ReplicateWebhook

logger = logging.getLogger(__name__)
LOCK_TIMEOUT_MS = 3000
STORED_TEXT_MAX = 20_000  # characters of a non-JSON body kept for the admin
# Beyond `id` and `status` (checked below): the fields a training object always carries, as
# GET /v1/trainings/{id} returns it (replicate-python tests/cassettes/trainings-get.yaml), and their
# JSON types. A prediction carries the same (models-predictions-create.yaml), but for predictions
# they are only type-checked when present: the pipeline reads nothing but id, status, output and error.
FIELD_TYPES: dict[str, type] = {"model": str, "version": str, "input": dict}
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "training": ("model", "version", "input"),
    "prediction": (),
    "caption": (),
}
ID_MAX = 64  # ReplicateWebhook.replicate_id / TrainingJob.replicate_training_id; Replicate's ids are 26
STATUS_MAX = 20


@dataclass(frozen=True)
class WebhookReceipt:
    """What to answer Replicate: an HTTP status and a short text; `delivery_id` when stored."""

    status_code: int
    text: str
    delivery_id: int | None = None
    retry_after: int | None = None


def webhook_job_hint(value: str | None) -> int | None:
    """Our own id from the webhook URL's query (`?job=` / `?gen=`), or None when it is not one."""
    # Only ASCII digits and within a PositiveIntegerField: "²".isdigit() is true and int() refuses it.
    return int(value) if value and re.fullmatch(r"[0-9]{1,9}", value) else None


def _parse(body: bytes) -> tuple[Any, str]:
    """(the body as we store it, why it is not JSON or "")."""

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")  # json.loads accepts NaN and Infinity; PostgreSQL does not

    try:
        return json.loads(body, parse_constant=no_constants), ""
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        text = body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")[:STORED_TEXT_MAX]
        return text, "the body is not JSON"


def _holds_nul(value: Any) -> bool:
    # PostgreSQL's jsonb cannot hold U+0000. Walked without recursion: a body nested a few hundred
    # levels deep still parses, and must not overflow the stack here.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    return {list: "an array", str: "a string", int: "a number", float: "a number"}.get(
        type(value), "something else"
    )


def _shape_problem(value: Any, kind: str) -> str:
    """Why `value` is not a `kind` object as Replicate sends it, or "" when it is one."""
    if not isinstance(value, dict):
        return f"the body is {_json_type(value)}, not a JSON object"
    object_id = value.get("id")
    if not isinstance(object_id, str) or not object_id.strip():
        return "the object has no id string"
    if len(object_id) > ID_MAX or not object_id.isprintable():
        return "the object's id is not a Replicate id"
    status = value.get("status")
    # An unknown status is fine (it is treated as not finished); a missing or non-text one is not.
    if not isinstance(status, str) or not status.strip() or len(status) > STATUS_MAX:
        return "the object has no status string"
    for name, expected in FIELD_TYPES.items():
        if name not in value and name not in REQUIRED_FIELDS[kind]:
            continue
        if not isinstance(value.get(name), expected):
            return (
                f"the object's {name} is missing or not a JSON {'object' if expected is dict else 'string'}"
            )
    return ""


def _refusal_status(reason: str) -> int:
    return 400 if reason == "the body is not JSON" else 422


def _answer_again(webhook_id: str) -> WebhookReceipt:
    """A delivery we already have: answer as the first time, change nothing."""
    earlier = ReplicateWebhook.objects.filter(webhook_id=webhook_id).only("outcome", "refusal_reason").first()
    if earlier is not None and earlier.outcome == ReplicateWebhook.Outcome.REFUSED:
        return WebhookReceipt(_refusal_status(earlier.refusal_reason), f"refused: {earlier.refusal_reason}")
    return WebhookReceipt(200, "duplicate")


def replicate_webhook_record(
    *, headers: Mapping[str, str], body: bytes, kind: str, job_hint: int | None, task: str
) -> WebhookReceipt:
    """Verify a Replicate webhook on its raw body and record it once; returns what to answer.

    `kind` is "training" or "prediction" (what the endpoint expects); `task` is the dotted path of
    the django-q2 task that processes an accepted delivery, given its primary key. It is enqueued on
    commit, only for a new accepted delivery. A refused delivery is stored but never enqueued.
    """
    try:
        replicate_client.webhook_verify(headers=headers, body=body)
    except ImproperlyConfigured as exc:
        # Our fault, not the sender's: 503 so Replicate retries once the secret is set (check E002).
        logger.error("cannot verify a Replicate %s webhook: %s", kind, exc)
        return WebhookReceipt(503, "webhook secret not configured", retry_after=60)
    except IntegrationError as exc:
        if log_allowed("webhook_refusal_log"):
            logger.warning("refused a Replicate %s webhook: %s", kind, exc.detail or exc)
        return WebhookReceipt(400, "invalid signature")
    webhook_id = {k.lower(): v for k, v in headers.items()}["webhook-id"][:100]  # present: verified above
    stored, reason = _parse(body)
    if not reason and _holds_nul(stored):
        stored, reason = (
            body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")[:STORED_TEXT_MAX],
            "the body holds a NUL character",
        )
    reason = reason or _shape_problem(stored, kind)
    # A body of JSON null is stored as JSON null: a bare None would be SQL NULL, refused by the column.
    payload = Value(None, models.JSONField()) if stored is None else stored
    fields: dict[str, Any] = {
        "webhook_id": webhook_id,
        "kind": kind,
        "job_hint": job_hint,
        "payload": payload,
    }
    if isinstance(stored, dict):
        fields["replicate_id"] = stored["id"][:ID_MAX] if isinstance(stored.get("id"), str) else ""
        fields["status"] = stored["status"][:STATUS_MAX] if isinstance(stored.get("status"), str) else ""
    if reason:
        fields.update(outcome=ReplicateWebhook.Outcome.REFUSED, refusal_reason=reason[:200])
        logger.warning("refused a signed Replicate %s webhook %s: %s", kind, webhook_id, reason)
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # A twin inserting the same webhook-id holds the unique-index lock until it commits:
                # wait a little, then answer 503 rather than hold Replicate's connection.
                with connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
            try:
                with transaction.atomic():
                    delivery = ReplicateWebhook.objects.create(**fields)
            except IntegrityError:
                return _answer_again(webhook_id)
            if not reason:
                pk = delivery.pk
                transaction.on_commit(lambda: async_task(task, pk))
    except OperationalError as exc:
        # PostgreSQL's lock_timeout, or SQLite's "database is locked": Replicate will retry.
        logger.warning("Replicate %s webhook %s: busy (%s)", kind, webhook_id, exc)
        return WebhookReceipt(503, "busy", retry_after=5)
    if reason:
        return WebhookReceipt(_refusal_status(reason), f"refused: {reason}", delivery_id=delivery.pk)
    return WebhookReceipt(200, "ok", delivery_id=delivery.pk)


def replicate_webhook_process(*, delivery_id: int, replay: bool = False) -> bool:
    """Apply one recorded, accepted Replicate webhook, by kind. Returns whether it was applied.

    A delivery already processed is skipped, unless `replay` (an operator replaying it from the back
    office, e.g. after a fix): applying twice is safe, since every apply below is a compare-and-swap
    from the state the object is in. A refused delivery is never applied.
    """
    # Imported here: the services import the pipeline, which does not need the recording.
    from generations.services import generation_apply_replicate
    from training import services

    deliveries = ReplicateWebhook.objects.filter(pk=delivery_id, outcome=ReplicateWebhook.Outcome.ACCEPTED)
    if not replay:
        deliveries = deliveries.filter(processed_at__isnull=True)
    delivery = deliveries.first()
    if delivery is None:
        return False
    if delivery.kind == "caption":
        services.caption_apply_replicate(
            info=replicate_client.prediction_from_payload(delivery.payload), task_hint=delivery.job_hint
        )
    elif delivery.kind == "prediction":
        generation_apply_replicate(
            info=replicate_client.prediction_from_payload(delivery.payload), generation_hint=delivery.job_hint
        )
    else:
        services.training_apply_replicate(
            info=replicate_client.training_from_payload(delivery.payload), job_hint=delivery.job_hint
        )
    ReplicateWebhook.objects.filter(pk=delivery_id).update(processed_at=timezone.now())
    return True
