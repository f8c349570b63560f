"""The Replicate stand-in's HTTP API, mounted at /sandbox/replicate/ (so paths read v1/...).

Same paths, status codes, JSON shapes and webhook signatures as api.replicate.com (see
docs/vendors.md and https://replicate.com/docs/reference/http). Every endpoint
first consumes an armed fault (`fault_take(service="replicate", operation=...)`), then checks
the Bearer token against settings.REPLICATE_API_TOKEN, read at request time.
"""

from __future__ import annotations

import functools
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from sandbox.faults import HTTP_FAULT_KINDS, fault_delay, fault_take
from sandbox.models import FaultKind
from sandbox.replicate import captioning, schemas, simulation
from sandbox.replicate.models import (
    SandboxModel,
    SandboxPrediction,
    SandboxTraining,
    SandboxVersion,
    VersionKind,
)

TITLES = {
    400: "Bad Request",
    401: "Unauthenticated",
    402: "Insufficient credit",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    422: "Input validation failed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
DETAILS = {
    401: "You did not pass a valid authentication token",
    402: "You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing "
    "to purchase credit. Once you purchase credit, please wait a few minutes before trying again.",
    404: "The requested resource could not be found.",
    409: "A model with that name and owner already exists.",
    429: "Request was throttled. Your rate limit resets in ~30s.",
    500: "An internal error occurred.",
    503: "The service is temporarily unavailable. Please try again later.",
}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
WEBHOOK_EVENTS = ("start", "output", "logs", "completed")


def problem(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    retry_after: int | None = None,
    **extra: Any,
) -> JsonResponse:
    body = {
        "title": title or TITLES.get(status, "Error"),
        "detail": detail or DETAILS.get(status, ""),
        "status": status,
        **extra,
    }
    response = JsonResponse(body, status=status, content_type="application/problem+json")
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def endpoint(operation: str, *, auth: bool = True) -> Callable:
    """Faults first (so a 401 fault works with a good token), then the Bearer token."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            fault = fault_take(service="replicate", operation=operation, kinds=HTTP_FAULT_KINDS)
            if fault is not None and fault.kind == FaultKind.STATUS:
                status = fault.status or 500
                retry_after = (fault.retry_after or 1) if status in (429, 503) else None
                return problem(status, retry_after=retry_after)
            fault_delay(fault)
            if auth and not _token_ok(request):
                return problem(401)
            return view(request, *args, **kwargs)

        return csrf_exempt(wrapper)

    return decorate


def _token_ok(request: HttpRequest) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = settings.REPLICATE_API_TOKEN or ""
    return scheme in ("Bearer", "Token") and bool(expected) and hmac.compare_digest(token.strip(), expected)


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(request.path[: request.path.index("/v1/")])


def _body(request: HttpRequest) -> dict[str, Any] | None:
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _invalid(fields: list[dict[str, str]]) -> JsonResponse:
    """422 as recorded (sandbox/vendor/replicate/errors.json): detail lines, then invalid_fields."""
    return problem(422, schemas.validation_detail(fields), invalid_fields=fields)


def _webhook_problems(data: dict[str, Any]) -> list[dict[str, str]]:
    problems = []
    webhook = data.get("webhook")
    if webhook is not None and (
        not isinstance(webhook, str) or not webhook.startswith(("http://", "https://"))
    ):
        problems.append({"type": "format", "field": "webhook", "description": "Does not match format 'uri'"})
    events = data.get("webhook_events_filter")
    if events is not None and (not isinstance(events, list) or any(e not in WEBHOOK_EVENTS for e in events)):
        problems.append(
            {
                "type": "enum",
                "field": "webhook_events_filter",
                "description": "webhook_events_filter must contain only: start, output, logs, completed",
            }
        )
    return problems


# --- Models -----------------------------------------------------------------------------------------
@require_POST
@endpoint("models.create")
def models_create(request: HttpRequest) -> HttpResponse:
    data = _body(request)
    if data is None:
        return problem(400, "The request body is not valid JSON.")
    problems = [
        {"type": "required", "field": f, "description": f"{f} is required"}
        for f in ("owner", "name", "visibility", "hardware")
        if not data.get(f)
    ]
    if data.get("name") and not NAME_RE.match(str(data["name"])):
        problems.append(
            {
                "type": "pattern",
                "field": "name",
                "description": "name must be lowercase letters, digits, dashes, underscores and periods",
            }
        )
    if data.get("visibility") and data["visibility"] not in ("public", "private"):
        problems.append(
            {"type": "enum", "field": "visibility", "description": "visibility must be public or private"}
        )
    if problems:
        return _invalid(problems)
    simulation.builtin_models_ensure()
    try:
        with transaction.atomic():
            model = SandboxModel.objects.create(
                owner=data["owner"],
                name=data["name"],
                visibility=data["visibility"],
                hardware=data["hardware"],
                description=data.get("description") or "",
            )
    except IntegrityError:
        return problem(409)
    return JsonResponse(simulation.model_json(model, _base_url(request)), status=201)


@require_GET
@endpoint("models.get")
def model_get(request: HttpRequest, owner: str, name: str) -> HttpResponse:
    simulation.builtin_models_ensure()
    model = SandboxModel.objects.filter(owner=owner, name=name).first()
    if model is None:
        return problem(404)
    return JsonResponse(simulation.model_json(model, _base_url(request)))


@require_GET
@endpoint("models.versions.get")
def version_get(request: HttpRequest, owner: str, name: str, version_id: str) -> HttpResponse:
    simulation.builtin_models_ensure()
    version = SandboxVersion.objects.filter(
        model__owner=owner, model__name=name, version_id=version_id
    ).first()
    if version is None:
        return problem(404)
    return JsonResponse(simulation.version_json(version))


# --- Trainings --------------------------------------------------------------------------------------
@require_POST
@endpoint("trainings.create")
def training_create(request: HttpRequest, owner: str, name: str, version_id: str) -> HttpResponse:
    simulation.builtin_models_ensure()
    trainer = SandboxVersion.objects.filter(
        model__owner=owner, model__name=name, version_id=version_id, kind=VersionKind.TRAINER
    ).first()
    if trainer is None:
        return problem(404, "The specified trainer version does not exist or does not support training.")
    data = _body(request)
    if data is None:
        return problem(400, "The request body is not valid JSON.")
    destination = str(data.get("destination") or "")
    if "/" not in destination:
        return _invalid(
            [
                {
                    "type": "required",
                    "field": "destination",
                    "description": "destination is required, in the form owner/name",
                }
            ]
        )
    dest_owner, _, dest_name = destination.partition("/")
    if not SandboxModel.objects.filter(owner=dest_owner, name=dest_name).exists():
        # Replicate answers this one without a title.
        return JsonResponse(
            {"detail": "The specified training destination does not exist", "status": 404},
            status=404,
            content_type="application/problem+json",
        )
    components = trainer.openapi_schema["components"]["schemas"]
    problems = schemas.input_validate(data.get("input"), components["TrainingInput"], components)
    problems += _webhook_problems(data)
    if problems:
        return _invalid(problems)
    fail = fault_take(service="replicate", operation="trainings.create", kinds=(FaultKind.FAIL_TRAINING,))
    steps = simulation.training_steps(f"{owner}/{name}", data["input"])
    training = SandboxTraining.objects.create(
        id=simulation.new_id(),
        trainer=f"{owner}/{name}",
        trainer_version=version_id,
        destination=destination,
        input=data["input"],
        webhook=data.get("webhook") or "",
        webhook_events_filter=data.get("webhook_events_filter") or [],
        base_url=_base_url(request),
        duration_seconds=simulation.training_duration(steps),
        fail_midway=fail is not None,
    )
    transaction.on_commit(lambda: simulation.training_runner_start(training.id))
    return JsonResponse(simulation.training_json(training), status=201)


TRAININGS_PAGE_SIZE = 100  # "It will return 100 records per page" (the list endpoint's own docs)


@require_GET
@endpoint("trainings.list")
def training_list(request: HttpRequest) -> HttpResponse:
    """GET /v1/trainings: {"next", "previous", "results"}, the most recent training first (as documented
    in replicate-python-beta resources/trainings.py list(), generated from Replicate's OpenAPI spec)."""
    # The kept photos are drawn from, never listed.
    rows = SandboxTraining.objects.defer("photos").order_by("-created_at", "-id")
    cursor = request.GET.get("cursor", "")
    offset = int(cursor) if cursor.isdigit() else 0
    page = list(rows[offset : offset + TRAININGS_PAGE_SIZE + 1])
    base = f"{_base_url(request)}/v1/trainings"
    more = len(page) > TRAININGS_PAGE_SIZE
    return JsonResponse(
        {
            "next": f"{base}?cursor={offset + TRAININGS_PAGE_SIZE}" if more else None,
            "previous": f"{base}?cursor={max(0, offset - TRAININGS_PAGE_SIZE)}" if offset else None,
            "results": [simulation.training_json(t) for t in page[:TRAININGS_PAGE_SIZE]],
        }
    )


@require_GET
@endpoint("trainings.get")
def training_get(request: HttpRequest, training_id: str) -> HttpResponse:
    training = SandboxTraining.objects.filter(pk=training_id).first()
    if training is None:
        return problem(404)
    payload = simulation.training_json(training)
    if payload["status"] == "succeeded":
        simulation.trained_version_register(training)  # the runner may not have got there yet
    return JsonResponse(payload)


@require_POST
@endpoint("trainings.cancel")
def training_cancel(request: HttpRequest, training_id: str) -> HttpResponse:
    training = SandboxTraining.objects.filter(pk=training_id).first()
    if training is None:
        return problem(404)
    if simulation.training_state(training).status not in simulation.TERMINAL:
        SandboxTraining.objects.filter(pk=training_id, canceled_at__isnull=True).update(
            canceled_at=timezone.now()
        )
        training.refresh_from_db()
    return JsonResponse(simulation.training_json(training))


# --- Predictions ------------------------------------------------------------------------------------
def _prefer_wait(request: HttpRequest) -> float | None:
    match = re.match(r"^\s*wait(?:\s*=\s*(\d+))?\s*$", request.headers.get("Prefer", ""))
    if not match:
        return None
    return float(min(60, max(1, int(match.group(1) or 60))))


def _prediction_start(request: HttpRequest, version: SandboxVersion, data: dict[str, Any]) -> HttpResponse:
    components = version.openapi_schema["components"]["schemas"]
    schema = components["Input"]
    problems = schemas.input_validate(data.get("input"), schema, components) + _webhook_problems(data)
    if problems:
        return _invalid(problems)
    input_data = schemas.with_defaults(data["input"], schema)
    nsfw = re.search(r"\bnsfw\b", str(input_data.get("prompt", "")), re.IGNORECASE)
    error = simulation.NSFW_ERROR if nsfw and version.kind != VersionKind.CAPTIONER else ""
    text_output = None
    if version.kind == VersionKind.CAPTIONER:
        fault = fault_take(
            service="replicate", operation="predictions.create", kinds=captioning.CAPTION_FAULTS
        )
        ref = f"{version.model.owner}/{version.model.name}"
        text_output, error = captioning.caption_output(ref, input_data, fault.kind if fault else None)
    image_png = mask_png = None
    if version.kind != VersionKind.CAPTIONER and input_data.get("image"):
        # Opening the input comes before generating, so its error wins over the safety checker's.
        image_error, image_png, mask_png = simulation.prediction_inputs_load(
            input_data, accepts_mask="mask" in schema["properties"]
        )
        error = image_error or error
    prediction = SandboxPrediction.objects.create(
        id=simulation.new_id(),
        model=f"{version.model.owner}/{version.model.name}",
        version=version.version_id,
        input=input_data,
        webhook=data.get("webhook") or "",
        webhook_events_filter=data.get("webhook_events_filter") or [],
        base_url=_base_url(request),
        duration_seconds=float(settings.SANDBOX_PREDICTION_SECONDS),
        error=error,
        text_output=text_output,
        input_image=image_png,
        input_mask=mask_png,
    )
    transaction.on_commit(lambda: simulation.prediction_runner_start(prediction.id))
    wait = _prefer_wait(request)
    if wait is None:
        return JsonResponse(simulation.prediction_json(prediction), status=201)
    deadline = time.monotonic() + wait
    while (
        simulation.prediction_state(prediction).status not in simulation.TERMINAL
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
        prediction.refresh_from_db()
    payload = simulation.prediction_json(prediction)
    return JsonResponse(payload, status=201 if payload["status"] in simulation.TERMINAL else 202)


@require_POST
@endpoint("predictions.create")
def prediction_create(request: HttpRequest) -> HttpResponse:
    data = _body(request)
    if data is None:
        return problem(400, "The request body is not valid JSON.")
    simulation.builtin_models_ensure()
    version_id = str(data.get("version") or "").rpartition(":")[2]
    version = SandboxVersion.objects.select_related("model").filter(version_id=version_id).first()
    if version is None or version.kind == VersionKind.TRAINER:
        return problem(
            422,
            "The specified version does not exist (or perhaps you don't have permission to use it?)",
            title="Invalid version or not permitted",
        )
    return _prediction_start(request, version, data)


@require_POST
@endpoint("predictions.create")
def model_prediction_create(request: HttpRequest, owner: str, name: str) -> HttpResponse:
    data = _body(request)
    if data is None:
        return problem(400, "The request body is not valid JSON.")
    simulation.builtin_models_ensure()
    version = (
        SandboxVersion.objects.select_related("model")
        .filter(model__owner=owner, model__name=name)
        .exclude(kind=VersionKind.TRAINER)
        .order_by("-created_at", "-id")
        .first()
    )
    if version is None:
        return problem(404)
    return _prediction_start(request, version, data)


@require_GET
@endpoint("predictions.get")
def prediction_get(request: HttpRequest, prediction_id: str) -> HttpResponse:
    prediction = SandboxPrediction.objects.filter(pk=prediction_id).first()
    if prediction is None:
        return problem(404)
    return JsonResponse(simulation.prediction_json(prediction))


@require_POST
@endpoint("predictions.cancel")
def prediction_cancel(request: HttpRequest, prediction_id: str) -> HttpResponse:
    prediction = SandboxPrediction.objects.filter(pk=prediction_id).first()
    if prediction is None:
        return problem(404)
    if simulation.prediction_state(prediction).status not in simulation.TERMINAL:
        SandboxPrediction.objects.filter(pk=prediction_id, canceled_at__isnull=True).update(
            canceled_at=timezone.now()
        )
        prediction.refresh_from_db()
    return JsonResponse(simulation.prediction_json(prediction))


# --- Webhook secret and file delivery ---------------------------------------------------------------
@require_GET
@endpoint("webhooks.secret")
def webhook_secret(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"key": settings.REPLICATE_WEBHOOK_SECRET})


def _file_token_refused(request: HttpRequest) -> bool:
    """Output files are read with our token or without it: replicate-python 1.0.x sends it (its
    FileOutput reads through the API client), replicate-javascript and the OpenAPI-generated
    replicate-python-beta do not. A token that is sent must be the right one, as anywhere on the API
    host (what replicate.delivery does with a wrong one is unconfirmed)."""
    return "Authorization" in request.headers and not _token_ok(request)


@require_GET
@endpoint("files.get", auth=False)  # like replicate.delivery: the unguessable URL is the credential
def training_weights(
    request: HttpRequest, training_id: str, file_name: str = "trained_model.tar"
) -> HttpResponse:
    if _file_token_refused(request):
        return problem(401)
    training = SandboxTraining.objects.filter(pk=training_id).first()
    if training is None or simulation.training_state(training).status != "succeeded":
        return problem(404)
    data, content_type, file_name = simulation.weights_file(training)
    response = HttpResponse(data, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{file_name}"'
    return response


@require_GET
@endpoint("files.get", auth=False)
def prediction_file(request: HttpRequest, prediction_id: str, index: int, extension: str) -> HttpResponse:
    if _file_token_refused(request):
        return problem(401)
    prediction = SandboxPrediction.objects.filter(pk=prediction_id).first()
    if (
        prediction is None
        or simulation.prediction_state(prediction).status != "succeeded"
        or index >= int(prediction.input.get("num_outputs") or 1)
        or extension != simulation.output_extension(prediction)
    ):
        return problem(404)
    content, content_type = simulation.prediction_image(prediction, index)
    return HttpResponse(content, content_type=content_type)
