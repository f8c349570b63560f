"""Replicate's webhooks, for trainings and for predictions: one view, one recording, one dispatch.

Replicate calls the URL we gave it when creating the run: `/trainings/webhooks/replicate/?job=<pk>`
for a training, `/models/webhooks/replicate/?gen=<pk>` for a prediction (a generation),
`/trainings/webhooks/replicate/caption/?task=<pk>` for a caption prediction (one photo). All
are this view with a different `kind`: the signature is verified on the raw body and the
delivery recorded once (training.webhook_records), the answer sent at once, and the work done
by training.tasks.replicate_webhook_process_task, which dispatches by kind.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from training.webhook_records import WebhookReceipt, replicate_webhook_record, webhook_job_hint

HINT_PARAMETER = {"training": "job", "prediction": "gen", "caption": "task"}


def webhook_response(receipt: WebhookReceipt) -> HttpResponse:
    """The HTTP answer for a receipt: plain text, with Retry-After on a 503."""
    response = HttpResponse(receipt.text, status=receipt.status_code, content_type="text/plain")
    if receipt.retry_after is not None:
        response["Retry-After"] = str(receipt.retry_after)
    return response


@csrf_exempt  # signed by Replicate instead: verified on the raw body by the service
@require_POST
def replicate_webhook(request: HttpRequest, kind: str) -> HttpResponse:
    receipt = replicate_webhook_record(
        headers=request.headers,
        body=request.body,
        kind=kind,
        job_hint=webhook_job_hint(request.GET.get(HINT_PARAMETER[kind])),
        task="training.tasks.replicate_webhook_process_task",
    )
    return webhook_response(receipt)
