"""Replicate's webhook endpoint: verify, record, acknowledge, then work (in a task)."""

from __future__ import annotations

import json
import logging

from django.db import IntegrityError, OperationalError, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from fluxsite.integrations import replicate_client
from fluxsite.integrations.errors import IntegrationError
from training.models import ReplicateWebhook

logger = logging.getLogger(__name__)


@csrf_exempt  # signed by Replicate instead: verified below on the raw body
@require_POST
def replicate_webhook(request: HttpRequest) -> HttpResponse:
    body = request.body
    try:
        replicate_client.webhook_verify(headers=request.headers, body=body)
        payload = json.loads(body)
    except (IntegrationError, ValueError) as exc:
        logger.warning("refused a Replicate webhook: %s", exc)
        return HttpResponseBadRequest("invalid signature or body")
    try:
        with transaction.atomic():
            delivery = ReplicateWebhook.objects.create(
                webhook_id=request.headers["webhook-id"][:100], replicate_id=str(payload.get("id", ""))[:64],
                status=str(payload.get("status", ""))[:20], payload=payload,
                job_hint=int(request.GET["job"]) if request.GET.get("job", "").isdigit() else None)
    except IntegrityError:
        return HttpResponse("duplicate", status=200)  # a retry of a delivery we already have
    except OperationalError:
        return HttpResponse("busy", status=503)  # a lock timeout: let Replicate retry
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task("training.tasks.replicate_webhook_process_task", delivery.pk))
    return HttpResponse("ok", status=200)
