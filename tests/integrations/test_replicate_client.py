"""fluxsite.integrations.replicate_client against the sandbox over real HTTP, and webhook verification."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from fluxsite.integrations import replicate_client as rc
from fluxsite.integrations.errors import Category, IntegrationError
from sandbox.faults import fault_inject
from tests.helpers import wait_until
from tests.sandbox.replicate_kit import WebhookReceiver, dataset_url, good_dataset

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_HEADERS = {
    "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "webhook-timestamp": "1614265330",
    "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_TIME = 1614265330


def _sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


# --- Webhook verification (no server needed) -------------------------------------------------------
def test_the_published_test_vector_verifies(time_machine):
    time_machine.move_to(VECTOR_TIME + 10, tick=False)
    assert rc.webhook_verify(headers=VECTOR_HEADERS, body=VECTOR_BODY, secret=VECTOR_SECRET) is None


def test_a_tampered_body_is_refused(time_machine):
    time_machine.move_to(VECTOR_TIME, tick=False)
    with pytest.raises(IntegrationError) as refused:
        rc.webhook_verify(headers=VECTOR_HEADERS, body=b'{"test": 2432232315}', secret=VECTOR_SECRET)
    assert refused.value.category == Category.VALIDATION
    assert refused.value.retryable is False


def test_an_old_timestamp_is_refused(time_machine):
    time_machine.move_to(VECTOR_TIME + 301, tick=False)
    with pytest.raises(IntegrationError, match="signature"):
        rc.webhook_verify(headers=VECTOR_HEADERS, body=VECTOR_BODY, secret=VECTOR_SECRET)


def test_a_timestamp_from_the_future_is_refused(time_machine):
    time_machine.move_to(VECTOR_TIME - 301, tick=False)
    with pytest.raises(IntegrationError):
        rc.webhook_verify(headers=VECTOR_HEADERS, body=VECTOR_BODY, secret=VECTOR_SECRET)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused(time_machine, missing):
    time_machine.move_to(VECTOR_TIME, tick=False)
    headers = {k: v for k, v in VECTOR_HEADERS.items() if k != missing}
    with pytest.raises(IntegrationError):
        rc.webhook_verify(headers=headers, body=VECTOR_BODY, secret=VECTOR_SECRET)


def test_one_matching_signature_among_several_is_enough_and_headers_are_case_insensitive(time_machine):
    time_machine.move_to(VECTOR_TIME, tick=False)
    headers = {
        "Webhook-Id": VECTOR_HEADERS["webhook-id"],
        "Webhook-Timestamp": VECTOR_HEADERS["webhook-timestamp"],
        "Webhook-Signature": "v1,bm9wZQ== v2,abc " + VECTOR_HEADERS["webhook-signature"],
    }
    rc.webhook_verify(headers=headers, body=VECTOR_BODY, secret=VECTOR_SECRET)


def test_a_signature_made_with_another_secret_is_refused(settings):
    now = int(time.time())
    other = "whsec_" + base64.b64encode(b"another key entirely").decode()
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": _sign(other, "msg_1", now, b"{}"),
    }
    with pytest.raises(IntegrationError):
        rc.webhook_verify(headers=headers, body=b"{}")
    headers["webhook-signature"] = _sign(settings.REPLICATE_WEBHOOK_SECRET, "msg_1", now, b"{}")
    rc.webhook_verify(headers=headers, body=b"{}")  # the configured secret is the default


def test_webhook_bodies_become_typed_results():
    info = rc.training_from_payload(
        {
            "id": "t1",
            "status": "succeeded",
            "logs": "x",
            "error": None,
            "output": {"version": "o/n:" + "a" * 64, "weights": "https://replicate.delivery/w.tar"},
            "metrics": {"predict_time": 12.5},
            "created_at": "2025-01-01T00:00:00.000000Z",
            "started_at": None,
            "completed_at": "2025-01-01T00:01:00.000000Z",
        }
    )
    assert (info.status, info.output_version, info.weights_url, info.predict_time) == (
        "succeeded",
        "o/n:" + "a" * 64,
        "https://replicate.delivery/w.tar",
        12.5,
    )
    assert info.is_finished
    assert rc.training_from_payload({"id": "t2", "status": "queued-somehow"}).is_finished is False
    prediction = rc.prediction_from_payload(
        {"id": "p", "status": "succeeded", "output": ["https://a/1.webp"]}
    )
    assert prediction.output_urls == ("https://a/1.webp",)


def test_missing_settings_are_named(settings):
    settings.REPLICATE_API_TOKEN = ""
    settings.REPLICATE_BASE_URL = ""
    with pytest.raises(ImproperlyConfigured, match="REPLICATE_API_TOKEN, REPLICATE_BASE_URL"):
        rc.training_get(training_id="x")


# --- Against the sandbox ----------------------------------------------------------------------------
pytestmark_db = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver():
    hooks = WebhookReceiver().start()
    yield hooks
    hooks.stop()


@pytestmark_db
def test_a_training_runs_to_success_through_the_client(sandbox, settings, receiver):
    settings.SANDBOX_PREDICTION_SECONDS = 0.3
    first = rc.model_ensure(owner="fluxsite", name="alice-lora")
    again = rc.model_ensure(owner="fluxsite", name="alice-lora")  # 409 from the API: fine
    assert first.ref == again.ref == "fluxsite/alice-lora"
    version = rc.trainer_version_get()
    assert len(version) == 64

    started = rc.training_create(
        destination=first.ref,
        webhook_url=receiver.url,
        input={"input_images": dataset_url(good_dataset()), "steps": 200},
    )
    assert started.status == "starting" and not started.is_finished
    done = wait_until(lambda: rc.training_get(training_id=started.id), lambda t: t.is_finished)
    assert done.status == "succeeded"
    assert done.output_version and done.output_version.startswith("fluxsite/alice-lora:")
    assert done.weights_url and done.weights_url.endswith("/trained_model.tar")
    assert done.predict_time and done.predict_time > 0
    assert done.completed_at and "flux_train_replicate" in done.logs

    deliveries = receiver.wait_for(lambda d: len(d) >= 2)
    for delivery in deliveries:
        rc.webhook_verify(headers=delivery.headers, body=delivery.body, secret=rc.webhook_secret_get())
    from_hook = rc.training_from_payload(json.loads(deliveries[-1].body))
    assert from_hook == done

    prediction = rc.prediction_create(
        version=done.output_version, input={"prompt": "TOK smiling"}, wait_seconds=10
    )
    assert prediction.status == "succeeded"
    assert len(prediction.output_urls) == 1
    assert rc.prediction_get(prediction_id=prediction.id) == prediction


@pytestmark_db
def test_a_prediction_can_be_canceled_through_the_client(sandbox, settings):
    settings.SANDBOX_PREDICTION_SECONDS = 5
    prediction = rc.prediction_create(model=settings.REPLICATE_GENERATION_MODEL, input={"prompt": "x"})
    assert prediction.status == "starting"
    assert rc.prediction_cancel(prediction_id=prediction.id).status == "canceled"


@pytestmark_db
def test_a_training_can_be_canceled_through_the_client(sandbox):
    rc.model_ensure(owner="fluxsite", name="to-cancel")
    started = rc.training_create(
        destination="fluxsite/to-cancel", input={"input_images": dataset_url(good_dataset()), "steps": 3000}
    )
    assert rc.training_cancel(training_id=started.id).status == "canceled"


def _arm(operation: str, status: int, retry_after: int | None = None) -> None:
    fault_inject(service="replicate", operation=operation, status=status, retry_after=retry_after)


def _start_prediction() -> rc.PredictionInfo:
    return rc.prediction_create(model="black-forest-labs/flux-dev-lora", input={"prompt": "x"})


@pytestmark_db
@pytest.mark.parametrize(
    ("status", "category", "retryable"),
    [
        (401, Category.AUTHENTICATION, False),
        (402, Category.SERVICE_ERROR, False),
        (404, Category.VALIDATION, False),
        (409, Category.VALIDATION, False),
        (422, Category.VALIDATION, False),
        (429, Category.RATE_LIMIT, True),
        (500, Category.SERVICE_ERROR, True),
        (503, Category.SERVICE_ERROR, True),
    ],
)
def test_status_faults_reach_the_client_as_the_right_category(sandbox, status, category, retryable):
    _arm("predictions.create", status, retry_after=7 if status == 429 else None)
    with pytest.raises(IntegrationError) as failed:
        _start_prediction()
    error = failed.value
    assert (error.category, error.status, error.retryable) == (category, status, retryable)
    assert error.service == "replicate"
    if status == 429:
        assert error.retry_after == 7.0
    if status == 402:
        assert "out of credit" in error.message


@pytestmark_db
def test_a_real_422_carries_invalid_fields(sandbox):
    rc.model_ensure(owner="fluxsite", name="bad-input")
    with pytest.raises(IntegrationError) as refused:
        rc.training_create(
            destination="fluxsite/bad-input", input={"input_images": "https://x/y.zip", "steps": 7000}
        )
    assert refused.value.category == Category.VALIDATION
    assert refused.value.invalid_fields == [
        {"type": "number_lte", "field": "input.steps", "description": "Must be less than or equal to 6000"}
    ]


@pytestmark_db
def test_a_real_404_and_a_refused_token(sandbox, settings):
    with pytest.raises(IntegrationError) as missing:
        rc.training_get(training_id="doesnotexist")
    assert (missing.value.category, missing.value.status) == (Category.VALIDATION, 404)
    # The sandbox and the client read the same setting in-process, so a refused token is armed as a fault.
    _arm("predictions.get", 401)
    with pytest.raises(IntegrationError) as refused:
        rc.prediction_get(prediction_id="whatever")
    assert refused.value.category == Category.AUTHENTICATION
    shown = repr(refused.value) + refused.value.detail + refused.value.message
    assert settings.REPLICATE_API_TOKEN not in shown


@pytestmark_db
def test_the_sdk_retries_a_get_through_a_single_429(sandbox):
    prediction = _start_prediction()
    _arm("predictions.get", 429, retry_after=1)
    began = time.monotonic()
    assert rc.prediction_get(prediction_id=prediction.id).id == prediction.id
    assert time.monotonic() - began >= 1  # it waited as Retry-After said


@pytestmark_db
def test_a_timeout_fault_is_a_timeout(sandbox, settings):
    settings.REPLICATE_TIMEOUT_SECONDS = 1
    prediction = _start_prediction()
    fault_inject(service="replicate", operation="predictions.get", kind="timeout", delay_seconds=1.6)
    with pytest.raises(IntegrationError) as slow:
        rc.prediction_get(prediction_id=prediction.id)
    assert slow.value.category == Category.TIMEOUT
    assert slow.value.retryable is True


@pytestmark_db
def test_a_slow_fault_still_answers(sandbox):
    prediction = _start_prediction()
    fault_inject(service="replicate", operation="predictions.get", kind="slow", delay_seconds=0.5)
    began = time.monotonic()
    assert rc.prediction_get(prediction_id=prediction.id).id == prediction.id
    assert time.monotonic() - began >= 0.5


@pytestmark_db
def test_webhook_secret_comes_from_the_api(sandbox, settings):
    assert rc.webhook_secret_get() == settings.REPLICATE_WEBHOOK_SECRET


def test_an_unreachable_service_is_a_network_error(settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    settings.REPLICATE_BASE_URL = f"http://127.0.0.1:{port}"
    with pytest.raises(IntegrationError) as failed:
        rc.training_get(training_id="x")
    assert failed.value.category == Category.NETWORK


def test_prediction_create_needs_exactly_one_target():
    with pytest.raises(ValueError):
        rc.prediction_create(input={"prompt": "x"})
    with pytest.raises(ValueError):
        rc.prediction_create(input={"prompt": "x"}, version="v", model="o/n")
