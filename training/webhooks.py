"""Replicate's webhook endpoint for trainings: verify, record, acknowledge, then work (in a task).

The recording itself is training.webhook_records.replicate_webhook_record, shared with the
prediction endpoint (models_app.views.replicate_webhook).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from training.webhook_records import WebhookReceipt, replicate_webhook_record, webhook_job_hint


def webhook_response(receipt: WebhookReceipt) -> HttpResponse:
    """The HTTP answer for a receipt: plain text, with Retry-After on a 503."""
    response = HttpResponse(receipt.text, status=receipt.status_code, content_type="text/plain")
    if receipt.retry_after is not None:
        response["Retry-After"] = str(receipt.retry_after)
    return response


@csrf_exempt  # signed by Replicate instead: verified on the raw body by the service
@require_POST
def replicate_webhook(request: HttpRequest) -> HttpResponse:
    receipt = replicate_webhook_record(
        headers=request.headers,
        body=request.body,
        kind="training",
        job_hint=webhook_job_hint(request.GET.get("job")),
        task="training.tasks.replicate_webhook_process_task",
    )
    return webhook_response(receipt)
