"""Both Replicate webhook endpoints, fed correctly signed bodies that are not the object they expect.

Issue 11: a signed JSON array made the training endpoint answer 500 while the prediction endpoint
answered 400. Both now go through one recording service: a signed body that is not a training or
prediction object is answered 4xx and stored as refused; a bad signature is 400 and not stored.
Bodies are signed here with Replicate's published scheme (checked against its test vector below),
not with the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from django.test import Client

from training.models import ReplicateWebhook

pytestmark = pytest.mark.django_db
SECRET = "whsec_" + base64.b64encode(b"fluxsite-test-webhook-key-000001").decode()
ENDPOINTS = [
    pytest.param("/trainings/webhooks/replicate/?job=7", "training", id="training"),
    pytest.param("/models/webhooks/replicate/?gen=7", "prediction", id="prediction"),
]
TRAINING = {
    "id": "r8t1abcdefghijklmnopqrstuv",
    "model": "ostris/flux-dev-lora-trainer",
    "version": "d995297071a4" + "0" * 52,
    "status": "processing",
    "input": {"input_images": "https://example.com/data.zip", "steps": 1000},
    "output": None,
    "logs": "",
    "error": None,
    "metrics": {},
    "created_at": "2025-01-01T00:00:00.000000Z",
    "started_at": None,
    "completed_at": None,
    "urls": {
        "get": "https://api.replicate.com/v1/trainings/r8t1abcdefghijklmnopqrstuv",
        "cancel": "https://api.replicate.com/v1/trainings/r8t1abcdefghijklmnopqrstuv/cancel",
    },
}
PREDICTION = {
    "id": "r8p1abcdefghijklmnopqrstuv",
    "model": "fluxsite/anna-1",
    "version": "a" * 64,
    "status": "starting",
    "input": {"prompt": "a photo of TOK"},
    "output": None,
    "logs": "",
    "error": None,
    "metrics": {},
    "created_at": "2025-01-01T00:00:00.000000Z",
    "started_at": None,
    "completed_at": None,
    "urls": {"get": "https://api.replicate.com/v1/predictions/r8p1abcdefghijklmnopqrstuv"},
}
GOOD: dict[str, dict[str, Any]] = {"training": TRAINING, "prediction": PREDICTION}


def _sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return (
        "v1,"
        + base64.b64encode(
            hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
        ).decode()
    )


def test_the_signing_helper_reproduces_replicates_published_test_vector():
    # https://replicate.com/docs/topics/webhooks/verify-webhook (the Standard Webhooks vector)
    assert (
        _sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


@pytest.fixture(autouse=True)
def _secret(settings):
    settings.REPLICATE_WEBHOOK_SECRET = SECRET


def post(url: str, body: bytes, *, msg_id: str = "msg_1", secret: str = SECRET):
    now = int(time.time())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": _sign(secret, msg_id, now, body),
    }
    # raise_request_exception=False: a crash must show up as the 500 Replicate would get.
    return Client(raise_request_exception=False).post(
        url, data=body, content_type="application/json", headers=headers
    )


def _object(kind: str, **changes) -> bytes:
    value = {**GOOD[kind], **changes}
    return json.dumps({k: v for k, v in value.items() if v is not ...}).encode()


NOT_OBJECTS = [
    pytest.param(b"[]", 422, id="empty-array"),
    pytest.param(json.dumps([TRAINING]).encode(), 422, id="array-of-the-object"),
    pytest.param(b"42", 422, id="number"),
    pytest.param(b'"succeeded"', 422, id="string"),
    pytest.param(b"null", 422, id="null"),
    pytest.param(b"true", 422, id="boolean"),
    pytest.param(b"{}", 422, id="empty-object"),
    pytest.param(b"not json at all", 400, id="not-json"),
    pytest.param(b"", 400, id="empty-body"),
    pytest.param(b'{"id": "r8x", "status": "succeeded", "metrics": {"predict_time": NaN}}', 400, id="nan"),
    pytest.param(b"[" * 100_000, 400, id="nested-too-deep"),
    pytest.param(b"\xff\xfe\x00garbage", 400, id="not-utf8"),
]


def ill_formed(kind: str) -> list:
    # A training must carry model, version and input; a prediction's are checked when present.
    missing = (
        [("no-model", _object(kind, model=...)), ("no-input", _object(kind, input=...))]
        if kind == "training"
        else []
    )
    return [
        *missing,
        ("no-id", _object(kind, id=...)),
        ("numeric-id", _object(kind, id=12345)),
        ("empty-id", _object(kind, id="")),
        ("id-too-long", _object(kind, id="r8" * 40)),
        ("no-status", _object(kind, status=...)),
        ("numeric-status", _object(kind, status=3)),
        ("null-status", _object(kind, status=None)),
        ("model-not-text", _object(kind, model=42)),
        ("version-not-text", _object(kind, version=["a"])),
        ("input-not-object", _object(kind, input=["input_images"])),
        ("nul-in-logs", _object(kind, logs="step 1\x00")),
    ]


@pytest.mark.parametrize(("url", "kind"), ENDPOINTS)
@pytest.mark.parametrize(("body", "expected"), NOT_OBJECTS)
def test_a_signed_body_that_is_not_an_object_is_refused_with_4xx_and_kept(
    url, kind, body, expected, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        response = post(url, body)
    assert response.status_code == expected, response.content
    assert response.content.startswith(b"refused: ")
    delivery = ReplicateWebhook.objects.get(webhook_id="msg_1")
    assert delivery.outcome == ReplicateWebhook.Outcome.REFUSED and delivery.refusal_reason
    assert delivery.kind == kind and delivery.job_hint == 7 and delivery.processed_at is None
    assert enqueued == []  # a refused delivery is never processed


@pytest.mark.parametrize(("url", "kind"), ENDPOINTS)
def test_a_signed_object_of_the_wrong_shape_is_refused_with_422_and_kept(
    url, kind, django_capture_on_commit_callbacks
):
    for index, (name, body) in enumerate(ill_formed(kind)):
        with django_capture_on_commit_callbacks(execute=False) as enqueued:
            response = post(url, body, msg_id=f"msg_{index}")
        assert response.status_code == 422, (name, response.content)
        delivery = ReplicateWebhook.objects.get(webhook_id=f"msg_{index}")
        assert delivery.outcome == ReplicateWebhook.Outcome.REFUSED, name
        assert delivery.refusal_reason and delivery.kind == kind, name
        assert enqueued == [], name


@pytest.mark.parametrize(("url", "kind"), ENDPOINTS)
def test_a_refused_delivery_sent_again_gets_the_same_answer_and_changes_nothing(url, kind):
    first = post(url, b"[]")
    again = post(url, b"[]")
    assert (
        (first.status_code, first.content)
        == (again.status_code, again.content)
        == (422, b"refused: the body is an array, not a JSON object")
    )
    assert ReplicateWebhook.objects.count() == 1


@pytest.mark.parametrize(("url", "kind"), ENDPOINTS)
def test_a_good_object_is_accepted_once_and_enqueued_once(url, kind, django_capture_on_commit_callbacks):
    body = _object(kind)
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        response = post(url, body)
    assert (response.status_code, response.content) == (200, b"ok")
    delivery = ReplicateWebhook.objects.get()
    assert delivery.outcome == ReplicateWebhook.Outcome.ACCEPTED and delivery.refusal_reason == ""
    assert (delivery.kind, delivery.replicate_id, delivery.status) == (
        kind,
        GOOD[kind]["id"],
        GOOD[kind]["status"],
    )
    assert delivery.payload == GOOD[kind]
    assert len(enqueued) == 1
    with django_capture_on_commit_callbacks(execute=False) as enqueued_again:
        duplicate = post(url, body)
    assert (duplicate.status_code, duplicate.content) == (200, b"duplicate")
    assert ReplicateWebhook.objects.count() == 1 and enqueued_again == []


def test_a_prediction_object_with_only_what_the_pipeline_reads_is_accepted():
    body = json.dumps({"id": "r8p2", "status": "failed", "error": "boom", "output": None}).encode()
    assert post("/models/webhooks/replicate/", body).status_code == 200


def test_a_training_object_without_model_version_and_input_is_refused():
    body = json.dumps({"id": "r8t2", "status": "failed", "error": "boom", "output": None}).encode()
    assert post("/trainings/webhooks/replicate/", body).status_code == 422
    assert (
        ReplicateWebhook.objects.get().refusal_reason == "the object's model is missing or not a JSON string"
    )


@pytest.mark.parametrize(("url", "kind"), ENDPOINTS)
def test_an_unknown_status_string_is_accepted(url, kind):
    response = post(url, _object(kind, status="aborted"))
    assert response.status_code == 200
    assert ReplicateWebhook.objects.get().status == "aborted"


@pytest.mark.parametrize(("url", "kind"), ENDPOINTS)
@pytest.mark.parametrize("body", [b"[]", b"not json", None], ids=["array", "not-json", "good-object"])
def test_a_bad_signature_is_400_and_nothing_is_stored(url, kind, body):
    other = "whsec_" + base64.b64encode(b"somebody else's key, not ours!!").decode()
    response = post(url, body if body is not None else _object(kind), secret=other)
    assert (response.status_code, response.content) == (400, b"invalid signature")
    assert ReplicateWebhook.objects.count() == 0


@pytest.mark.parametrize(("url", "kind"), ENDPOINTS)
def test_a_job_hint_that_is_not_plain_digits_is_ignored(url, kind):
    base = url.split("?")[0]
    name = "job" if kind == "training" else "gen"
    for index, hint in enumerate(["²", "99999999999999999999", "-1", "7x"]):
        response = post(f"{base}?{name}={hint}", _object(kind, id=f"r8hint{index}"), msg_id=f"msg_h{index}")
        assert response.status_code == 200, hint
    assert set(ReplicateWebhook.objects.values_list("job_hint", flat=True)) == {None}


@pytest.mark.parametrize(("url", "kind"), ENDPOINTS)
def test_a_lock_timeout_gets_503_with_retry_after(url, kind, monkeypatch):
    # A twin holding the unique-index lock cannot be produced with one test connection; SQLite and
    # PostgreSQL both report the lock wait as OperationalError, which is what is forced here.
    from django.db import OperationalError
    from django.db.models import QuerySet

    def locked(*args, **kwargs):
        raise OperationalError("canceling statement due to lock timeout")

    monkeypatch.setattr(QuerySet, "create", locked)
    response = post(url, _object(kind))
    assert response.status_code == 503 and response["Retry-After"] == "5"


@pytest.mark.parametrize(("url", "kind"), ENDPOINTS)
def test_the_endpoints_refuse_other_methods(url, kind):
    assert Client().get(url).status_code == 405
    assert Client().put(url, data=_object(kind), content_type="application/json").status_code == 405


def test_both_endpoints_are_one_view_with_its_kind():
    """Issue 14: one Replicate webhook path, so the two cannot drift apart again."""
    from django.urls import resolve

    training, prediction = resolve("/trainings/webhooks/replicate/"), resolve("/models/webhooks/replicate/")
    assert training.func is prediction.func
    assert (training.kwargs, prediction.kwargs) == ({"kind": "training"}, {"kind": "prediction"})
