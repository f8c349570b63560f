"""Replicate: the only module that imports the `replicate` SDK.

Plain keyword-only functions that return small frozen dataclasses and raise only
IntegrationError. The client is built at each call from settings (so a test that overrides
REPLICATE_BASE_URL talks to the sandbox), with explicit timeouts.

API reference: https://replicate.com/docs/reference/http
Webhooks:      https://replicate.com/docs/topics/webhooks/verify-webhook

Error mapping (status → category):
  401/403 authentication; 402 service_error, not retryable (the account is out of credit:
  an operator must top it up, retrying cannot help); 404/409/422 validation (422 carries
  invalid_fields); 429 rate_limit (with retry_after); 408/504 timeout; other 5xx service_error;
  httpx timeouts → timeout; other transport errors → network.
Note: the SDK itself retries GET requests on 429/503/504 (up to 10 times, honouring Retry-After),
so those statuses reach us from GETs only once its retries are exhausted; POSTs are never retried.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx
import replicate
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables
from replicate.exceptions import ReplicateError
from replicate.version import Versions

from fluxsite.integrations.errors import Category, IntegrationError, category_for_status, redact

if TYPE_CHECKING:
    from replicate.model import Models
    from replicate.pagination import Page
    from replicate.training import Training

SERVICE = "replicate"
# "aborted": a run whose deadline passed before it started (Replicate's prediction lifecycle docs);
# the generated OpenAPI types list only the other five. Anything else unknown is "not finished".
FINISHED = ("succeeded", "failed", "canceled", "aborted")
T = TypeVar("T")


# --- Results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelInfo:
    owner: str
    name: str
    visibility: str
    latest_version_id: str | None

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True)
class TrainingInfo:
    """What a training object carries. It names no destination (the SDK fills one in itself, from
    output.version, with a FIXME): a training is matched to ours by id, or by model, version and
    the input we sent."""

    id: str
    status: str  # starting, processing, succeeded, failed, canceled (anything else: not finished)
    output_version: str | None  # "owner/name:<64 hex>" once succeeded
    weights_url: str | None
    logs: str
    error: str | None
    predict_time: float | None  # billed GPU seconds, once finished
    created_at: str | None
    started_at: str | None
    completed_at: str | None
    model: str = ""  # the trainer, "owner/name"
    version: str = ""  # the trainer's version id
    input: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class PredictionInfo:
    id: str
    status: str
    output_urls: tuple[str, ...]
    error: str | None
    predict_time: float | None
    created_at: str | None = None
    completed_at: str | None = None
    # The output as sent (a text model's string, list of text pieces or object); None until finished.
    output: Any = None

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED


# --- The client -----------------------------------------------------------------------------------
@dataclass
class _LastResponse:
    """What the SDK drops: the raw JSON of the last response (metrics, invalid_fields) and Retry-After."""

    payload: Any = None
    retry_after: float | None = None
    status: int | None = None

    def hook(self, response: httpx.Response) -> None:
        response.read()  # event hooks see the response before its body is read
        self.status = response.status_code
        try:
            self.payload = response.json()
        except ValueError:
            self.payload = None
        header = (response.headers.get("Retry-After") or "").strip()
        self.retry_after = float(header) if header.replace(".", "", 1).isdigit() else None


@dataclass
class _Session:
    client: replicate.Client
    last: _LastResponse = field(default_factory=_LastResponse)


@sensitive_variables()
def _session() -> _Session:
    """Build a client from settings; ImproperlyConfigured names every missing setting."""
    missing = [
        name for name in ("REPLICATE_API_TOKEN", "REPLICATE_BASE_URL") if not getattr(settings, name, "")
    ]
    if missing:
        raise ImproperlyConfigured(
            f"Replicate needs these settings: {', '.join(missing)} (see .env.example)."
        )
    last = _LastResponse()
    seconds = float(settings.REPLICATE_TIMEOUT_SECONDS)
    timeout = httpx.Timeout(seconds, connect=min(seconds, 10.0))

    def keep_a_timeout(request: httpx.Request) -> None:
        # replicate 1.0.7's predictions.create passes `timeout=None` to httpx when no `wait` is given
        # (prediction.py _create_prediction_timeout), and None means "no timeout at all": a create
        # that hangs would hold the worker forever. Put our own back.
        if all(value is None for value in (request.extensions.get("timeout") or {}).values()):
            request.extensions["timeout"] = timeout.as_dict()

    client = replicate.Client(
        api_token=settings.REPLICATE_API_TOKEN,
        base_url=settings.REPLICATE_BASE_URL.rstrip("/"),
        timeout=timeout,
        event_hooks={"request": [keep_a_timeout], "response": [last.hook]},
        follow_redirects=False,
    )
    return _Session(client=client, last=last)


@contextmanager
def _errors(session: _Session, action: str) -> Iterator[None]:
    try:
        yield
    except ReplicateError as exc:
        raise _from_status(exc, session.last, action) from None
    except httpx.TimeoutException as exc:
        raise IntegrationError(
            service=SERVICE,
            category=Category.TIMEOUT,
            message=f"Replicate did not answer in time ({action}).",
            detail=repr(exc),
        ) from None
    except httpx.HTTPError as exc:
        raise IntegrationError(
            service=SERVICE,
            category=Category.NETWORK,
            message=f"Replicate could not be reached ({action}).",
            detail=redact(repr(exc), settings.REPLICATE_API_TOKEN),
        ) from None
    except (ValueError, TypeError, KeyError) as exc:  # pydantic ValidationError is a ValueError
        raise IntegrationError(
            service=SERVICE,
            category=Category.SERVICE_ERROR,
            message=f"Replicate sent an answer we could not read ({action}).",
            detail=redact(repr(exc), settings.REPLICATE_API_TOKEN)[:2000],
        ) from None


def _from_status(exc: ReplicateError, last: _LastResponse, action: str) -> IntegrationError:
    status = exc.status or last.status or 500
    body = last.payload if isinstance(last.payload, dict) else {}
    detail = redact(f"{status} {exc.title or ''}: {exc.detail or ''}".strip(), settings.REPLICATE_API_TOKEN)
    common: dict[str, Any] = {"service": SERVICE, "status": status, "detail": detail}
    if status == 402:
        return IntegrationError(
            category=Category.SERVICE_ERROR,
            retryable=False,
            message="Replicate account is out of credit: an operator must top it up.",
            **common,
        )
    category = category_for_status(status)
    if category == Category.VALIDATION:
        fields = body.get("invalid_fields") if isinstance(body.get("invalid_fields"), list) else None
        what = {404: "was not found", 409: "already exists", 422: "was refused as invalid"}.get(
            status, "was refused"
        )
        return IntegrationError(
            category=category,
            invalid_fields=fields,
            message=f"Replicate: the request ({action}) {what}.",
            **common,
        )
    if category == Category.RATE_LIMIT:
        return IntegrationError(
            category=category,
            retry_after=last.retry_after,
            message="Replicate asked us to slow down.",
            **common,
        )
    messages = {
        Category.AUTHENTICATION: "Replicate refused our API token.",
        Category.TIMEOUT: f"Replicate timed out ({action}).",
        Category.SERVICE_ERROR: f"Replicate had an internal problem ({action}).",
    }
    return IntegrationError(
        category=category,
        message=messages.get(category, f"Replicate error ({action})."),
        retry_after=last.retry_after,
        **common,
    )


def _call(action: str, fn: Callable[[replicate.Client], T]) -> tuple[T, _Session]:
    session = _session()
    with _errors(session, action):
        return fn(session.client), session
    raise AssertionError("unreachable")  # pragma: no cover  (_errors always raises or returns)


# --- Models ---------------------------------------------------------------------------------------
def _model_info(model: Any) -> ModelInfo:
    latest = getattr(model, "latest_version", None)
    return ModelInfo(
        owner=model.owner,
        name=model.name,
        visibility=model.visibility,
        latest_version_id=latest.id if latest else None,
    )


def model_ensure(
    *, owner: str, name: str, visibility: Literal["public", "private"] = "private", description: str = ""
) -> ModelInfo:
    """Create the destination model (POST /v1/models); an existing one (409) is fetched instead.

    https://replicate.com/docs/reference/http#models.create
    """
    params: Models.CreateModelParams = {"visibility": visibility, "hardware": "cpu"}
    if description:
        params["description"] = description
    try:
        model, _ = _call("create a model", lambda c: c.models.create(owner=owner, name=name, **params))
    except IntegrationError as exc:
        if exc.status != 409:
            raise
        model, _ = _call("get a model", lambda c: c.models.get(f"{owner}/{name}"))
    return _model_info(model)


def model_get(*, owner: str, name: str) -> ModelInfo:
    """https://replicate.com/docs/reference/http#models.get"""
    model, _ = _call("get a model", lambda c: c.models.get(f"{owner}/{name}"))
    return _model_info(model)


def trainer_version_get(*, model: str | None = None, pinned: str | None = None) -> str:
    """The version to train with: `pinned`, or the latest version of `model` (by default
    settings.REPLICATE_TRAINER_VERSION, or settings.REPLICATE_TRAINER_MODEL's latest version)."""
    if model is None:
        model, pinned = settings.REPLICATE_TRAINER_MODEL, settings.REPLICATE_TRAINER_VERSION
    if pinned:
        return pinned
    owner, _, name = model.partition("/")
    info = model_get(owner=owner, name=name)
    if not info.latest_version_id:
        raise IntegrationError(
            service=SERVICE,
            category=Category.SERVICE_ERROR,
            retryable=False,
            message="The trainer model has no version to train with.",
            detail=model,
        )
    return info.latest_version_id


# --- Input schemas (a version's own limits) ---------------------------------------------------------
@dataclass(frozen=True)
class InputField:
    """One input of a version's schema: Cog's OpenAPI `Input` property, with its enum resolved."""

    name: str
    type: str  # string, integer, number, boolean
    minimum: float | None = None
    maximum: float | None = None
    default: Any = None
    choices: tuple[Any, ...] | None = None


def input_schema_parse(openapi_schema: Any) -> dict[str, InputField]:
    """The `Input` properties of a version's `openapi_schema` (Cog keeps `choices` as an enum schema
    referenced through `allOf: [{"$ref": "#/components/schemas/<name>"}]`)."""
    components = ((openapi_schema or {}).get("components") or {}).get("schemas") or {}
    properties = (components.get("Input") or {}).get("properties") or {}
    fields: dict[str, InputField] = {}
    for name, spec in properties.items():
        if not isinstance(spec, dict):
            continue
        kind, choices = spec.get("type"), spec.get("enum")
        for part in spec.get("allOf") or []:
            ref = str((part or {}).get("$ref", ""))
            target = (
                components.get(ref.rsplit("/", 1)[-1], {}) if ref.startswith("#/components/schemas/") else {}
            )
            kind = kind or target.get("type")
            choices = choices or target.get("enum")
        fields[name] = InputField(
            name=name,
            type=str(kind or "string"),
            minimum=spec.get("minimum") if isinstance(spec.get("minimum"), int | float) else None,
            maximum=spec.get("maximum") if isinstance(spec.get("maximum"), int | float) else None,
            default=spec.get("default"),
            choices=tuple(choices) if isinstance(choices, list) else None,
        )
    return fields


SCHEMA_CACHE_SECONDS = {"version": 24 * 3600, "latest": 600}  # a version never changes; "latest" may


def input_schema_get(*, model: str, version_id: str | None = None) -> dict[str, InputField]:
    """The inputs (names, types, ranges, choices) of a version, or of a model's latest version.

    Read from Replicate (`GET /v1/models/{owner}/{name}/versions/{id}`, or the model's
    latest_version) and cached: a version is immutable.
    https://replicate.com/docs/reference/http#models.versions.get
    """
    from django.core.cache import cache

    key = f"replicate-schema:{settings.REPLICATE_BASE_URL}:{model}:{version_id or 'latest'}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    if version_id:
        owner, _, name = model.partition("/")
        version, _ = _call("read a version", lambda c: Versions(c, (owner, name)).get(version_id))
        schema = version.openapi_schema
    else:
        found, _ = _call("get a model", lambda c: c.models.get(model))
        latest = getattr(found, "latest_version", None)
        schema = latest.openapi_schema if latest else {}
    fields = input_schema_parse(schema)
    cache.set(key, fields, SCHEMA_CACHE_SECONDS["version" if version_id else "latest"])
    return fields


# --- Trainings ------------------------------------------------------------------------------------
def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _predict_time(payload: Mapping[str, Any]) -> float | None:
    metrics = payload.get("metrics")
    value = metrics.get("predict_time") if isinstance(metrics, dict) else None
    return float(value) if isinstance(value, int | float) else None


def training_from_payload(payload: Mapping[str, Any]) -> TrainingInfo:
    """A training object (GET response or webhook body) as a TrainingInfo."""
    output = payload.get("output")
    if not isinstance(output, dict):
        output = {}
    return TrainingInfo(
        id=str(payload.get("id", "")),
        status=str(payload.get("status", "")),
        output_version=_text(output.get("version")),
        weights_url=_text(output.get("weights")),
        logs=_text(payload.get("logs")) or "",
        error=_text(payload.get("error")),
        predict_time=_predict_time(payload),
        created_at=_text(payload.get("created_at")),
        started_at=_text(payload.get("started_at")),
        completed_at=_text(payload.get("completed_at")),
        model=_text(payload.get("model")) or "",
        version=_text(payload.get("version")) or "",
        input=dict(payload["input"]) if isinstance(payload.get("input"), dict) else {},
    )


def _training_info(training: Any, session: _Session) -> TrainingInfo:
    # The SDK's Training drops `metrics`: read the raw JSON it just parsed.
    payload = session.last.payload
    if isinstance(payload, dict) and payload.get("id") == training.id:
        return training_from_payload(payload)
    return training_from_payload(training.dict())


def training_create(
    *,
    destination: str,
    input: Mapping[str, Any],
    webhook_url: str | None = None,
    events: tuple[str, ...] = ("start", "completed"),
    version: str | None = None,
    model: str | None = None,
) -> TrainingInfo:
    """Start a training of `model` (default settings.REPLICATE_TRAINER_MODEL) into `destination`
    ("owner/name").

    https://replicate.com/docs/reference/http#trainings.create
    """
    trainer_model = model or settings.REPLICATE_TRAINER_MODEL
    trainer_version = version or (trainer_version_get(model=model) if model else trainer_version_get())
    params: dict[str, Any] = {"destination": destination}
    if webhook_url:
        params["webhook"] = webhook_url
        params["webhook_events_filter"] = list(events)
    training, session = _call(
        "start a training",
        lambda c: c.trainings.create(
            model=trainer_model, version=trainer_version, input=dict(input), **params
        ),
    )
    return _training_info(training, session)


def trainings_recent(*, pages: int = 2) -> list[TrainingInfo]:
    """The account's most recent trainings, newest first (100 a page, at most `pages` pages).

    https://replicate.com/docs/reference/http#trainings.list
    """
    found: list[TrainingInfo] = []
    cursor: str | EllipsisType | None = ...  # the SDK's "first page"
    for _ in range(max(1, pages)):
        page, session = _call("list trainings", functools.partial(_trainings_page, cursor=cursor))
        payload = session.last.payload if isinstance(session.last.payload, dict) else {}
        results = payload.get("results")
        if not isinstance(results, list):
            results = []
        found.extend(training_from_payload(item) for item in results if isinstance(item, dict))
        if not page.next:
            break
        cursor = page.next
    return found


def _trainings_page(client: replicate.Client, *, cursor: str | EllipsisType | None) -> Page[Training]:
    return client.trainings.list(cursor)


def training_get(*, training_id: str) -> TrainingInfo:
    """https://replicate.com/docs/reference/http#trainings.get"""
    training, session = _call("read a training", lambda c: c.trainings.get(training_id))
    return _training_info(training, session)


def training_cancel(*, training_id: str) -> TrainingInfo:
    """https://replicate.com/docs/reference/http#trainings.cancel"""
    training, session = _call("cancel a training", lambda c: c.trainings.cancel(training_id))
    return _training_info(training, session)


# --- Predictions ----------------------------------------------------------------------------------
def prediction_from_payload(payload: Mapping[str, Any]) -> PredictionInfo:
    output = payload.get("output")
    if isinstance(output, str):
        urls: tuple[str, ...] = (output,)
    elif isinstance(output, list):
        urls = tuple(str(u) for u in output if isinstance(u, str))
    else:
        urls = ()
    return PredictionInfo(
        id=str(payload.get("id", "")),
        status=str(payload.get("status", "")),
        output_urls=urls,
        error=_text(payload.get("error")),
        predict_time=_predict_time(payload),
        created_at=_text(payload.get("created_at")),
        completed_at=_text(payload.get("completed_at")),
        output=output,
    )


def _prediction_info(prediction: Any) -> PredictionInfo:
    return prediction_from_payload(prediction.dict())


def prediction_create(
    *,
    input: Mapping[str, Any],
    version: str | None = None,
    model: str | None = None,
    webhook_url: str | None = None,
    wait_seconds: int | None = None,
    events: tuple[str, ...] = ("start", "completed"),
) -> PredictionInfo:
    """Run a version ("hash" or "owner/name:hash") or a model ("owner/name"); exactly one of the two.

    `wait_seconds` (1-60) sends `Prefer: wait=N`: the answer may then already be finished.
    https://replicate.com/docs/reference/http#predictions.create
    https://replicate.com/docs/reference/http#models.predictions.create
    """
    if (version is None) == (model is None):
        raise ValueError("Pass exactly one of version or model.")
    params: dict[str, Any] = {}
    if webhook_url:
        params["webhook"] = webhook_url
        params["webhook_events_filter"] = list(events)
    if wait_seconds:
        params["wait"] = max(1, min(60, int(wait_seconds)))
    if model is not None:
        prediction, _ = _call(
            "start a prediction",
            lambda c: c.models.predictions.create(model=model, input=dict(input), **params),
        )
    elif version is not None:  # always, after the check above; says so to mypy
        prediction, _ = _call(
            "start a prediction", lambda c: c.predictions.create(version=version, input=dict(input), **params)
        )
    return _prediction_info(prediction)


def prediction_get(*, prediction_id: str) -> PredictionInfo:
    """https://replicate.com/docs/reference/http#predictions.get"""
    prediction, _ = _call("read a prediction", lambda c: c.predictions.get(prediction_id))
    return _prediction_info(prediction)


def prediction_cancel(*, prediction_id: str) -> PredictionInfo:
    """https://replicate.com/docs/reference/http#predictions.cancel"""
    prediction, _ = _call("cancel a prediction", lambda c: c.predictions.cancel(prediction_id))
    return _prediction_info(prediction)


# --- Webhooks -------------------------------------------------------------------------------------
@sensitive_variables("secret")
def webhook_secret_get() -> str:
    """The account's signing secret ("whsec_..."): https://replicate.com/docs/reference/http#webhooks.default.secret.get"""
    secret, _ = _call("read the webhook secret", lambda c: c.webhooks.default.secret())
    return secret.key


def _invalid_webhook(reason: str) -> IntegrationError:
    return IntegrationError(
        service=SERVICE,
        category=Category.VALIDATION,
        message="The webhook signature is not valid.",
        detail=reason,
        status=None,
    )


@sensitive_variables("secret", "key", "expected")
def webhook_verify(
    *, headers: Mapping[str, str], body: bytes, secret: str | None = None, tolerance: int = 300
) -> None:
    """Check a Replicate webhook (Standard Webhooks); returns None when genuine, raises otherwise.

    key = base64-decode of the secret after "whsec_"; signed text = "{id}.{timestamp}.{raw body}";
    valid if any space-separated "v1,<base64>" equals base64(HMAC-SHA256(key, text)), compared in
    constant time; a timestamp more than `tolerance` seconds off is refused (replays).
    Raises IntegrationError(category=validation).
    """
    secret = secret if secret is not None else settings.REPLICATE_WEBHOOK_SECRET
    if not secret:
        raise ImproperlyConfigured("REPLICATE_WEBHOOK_SECRET is not set.")
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    timestamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not (msg_id and timestamp and signatures):
        raise _invalid_webhook("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise _invalid_webhook("webhook-timestamp is not an integer")
    if abs(time.time() - sent_at) > tolerance:
        raise _invalid_webhook("webhook-timestamp is outside the tolerance")
    try:
        key = base64.b64decode(
            secret.split("_", 1)[1] if secret.startswith("whsec_") else secret, validate=True
        )
    except (binascii.Error, IndexError):
        raise ImproperlyConfigured("REPLICATE_WEBHOOK_SECRET is not a valid whsec_ secret.")
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except binascii.Error:
            continue
        if hmac.compare_digest(given, expected):
            return None
    raise _invalid_webhook("no webhook-signature matches")


# --- Downloading Replicate's files -----------------------------------------------------------------
# Output files (a training's weights, a prediction's images) are served by replicate.delivery and
# its subdomains (https://replicate.com/docs/topics/predictions/output-files, "Output file domains");
# the Files API is on the API host and needs the token (https://replicate.com/docs/reference/http#files.get).
# Replicate's clients disagree on output files: replicate-python 1.0.x reads them through its API
# client, token included (replicate/helpers.py FileOutput.read uses client._client, whose default
# headers carry "Authorization: Bearer"), while replicate-javascript (lib/stream.js createFileOutput)
# and the OpenAPI-generated replicate-python-beta (lib/_files.py FileOutput.read, a bare httpx client)
# send none. So the token goes to Replicate's own hosts, where it is accepted either way, and never
# to anyone else.
REPLICATE_FILE_DOMAIN = "replicate.delivery"
REPLICATE_API_HOST = "api.replicate.com"


def _address(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path) of `url`, or None when it is not a plain address (credentials, bad port)."""
    from urllib.parse import urlsplit  # here, to leave the module's imports to their owner

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.password is not None:
        return None
    scheme = parts.scheme.lower()
    return scheme, parts.hostname.lower(), port or {"https": 443, "http": 80}.get(scheme, 0), parts.path


def replicate_serves(url: str) -> bool:
    """Whether `url` is Replicate's own: https on replicate.delivery, a subdomain of it or
    api.replicate.com, or under the configured REPLICATE_BASE_URL (the sandbox, in sandbox mode:
    same scheme, host and port, and under its path)."""
    address = _address(url)
    if address is None:
        return False
    scheme, host, port, path = address
    if (
        scheme == "https"
        and port == 443
        and (
            host in (REPLICATE_FILE_DOMAIN, REPLICATE_API_HOST) or host.endswith("." + REPLICATE_FILE_DOMAIN)
        )
    ):
        return True
    base = _address(settings.REPLICATE_BASE_URL.rstrip("/")) if settings.REPLICATE_BASE_URL else None
    if base is None or base[:3] != (scheme, host, port):
        return False
    prefix = base[3].rstrip("/")
    return not prefix or path == prefix or path.startswith(prefix + "/")


@sensitive_variables("token")
def download_headers(url: str) -> dict[str, str]:
    """Headers for GET `url`: our Bearer token when Replicate serves it, nothing for any other host.

    Ask again for every request, redirects included, so that a hop to another host never carries
    the token.
    """
    token = settings.REPLICATE_API_TOKEN
    return {"Authorization": f"Bearer {token}"} if token and replicate_serves(url) else {}
