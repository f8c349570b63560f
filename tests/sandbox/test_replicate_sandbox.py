"""The Replicate stand-in, driven by the official `replicate` SDK over real HTTP."""

from __future__ import annotations

import io
import json
import re
import struct
import tarfile
from collections.abc import Iterator

import httpx
import pytest
import replicate
from django.conf import settings
from PIL import Image
from replicate.exceptions import ReplicateError
from replicate.webhook import Webhooks, WebhookSigningSecret

from fluxsite.integrations.errors import IntegrationError
from fluxsite.integrations.replicate_client import webhook_verify
from sandbox.faults import fault_inject
from tests.helpers import sandbox_runs_finished, wait_until
from tests.sandbox.replicate_kit import (
    WebhookReceiver,
    dataset_url,
    good_dataset,
    image_bytes,
    zip_bytes,
)

pytestmark = pytest.mark.django_db(transaction=True)

TQDM_LINE = re.compile(
    r"^flux_train_replicate: +\d+%\|.{10}\| \d+/\d+ \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(s/it|it/s), "
    r"lr: \d\.\de-\d\d loss: \d\.\d{3}e-\d\d\]$",
    re.MULTILINE,
)


@pytest.fixture
def sdk(sandbox) -> replicate.Client:
    return replicate.Client(api_token=settings.REPLICATE_API_TOKEN, base_url=settings.REPLICATE_BASE_URL)


@pytest.fixture
def api(sandbox) -> Iterator[httpx.Client]:
    """Raw HTTP, for what the SDK hides (status codes, headers, metrics, invalid_fields)."""
    with httpx.Client(
        base_url=settings.REPLICATE_BASE_URL,
        timeout=10,
        headers={"Authorization": f"Bearer {settings.REPLICATE_API_TOKEN}"},
    ) as client:
        yield client


@pytest.fixture
def receiver():
    hooks = WebhookReceiver().start()
    yield hooks
    hooks.stop()


@pytest.fixture(autouse=True)
def _fast_predictions(settings):
    settings.SANDBOX_PREDICTION_SECONDS = 0.4


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    assert member is not None, name
    return member.read()


def _trainer_version(sdk: replicate.Client) -> str:
    version = sdk.models.get("ostris/flux-dev-lora-trainer").latest_version
    assert version is not None
    return version.id


def _start_training(sdk: replicate.Client, zip_content: bytes, *, steps: int = 500, **extra):
    sdk.models.create(owner="fluxsite", name="lora-test", visibility="private", hardware="cpu")
    return sdk.trainings.create(
        model="ostris/flux-dev-lora-trainer",
        version=_trainer_version(sdk),
        destination="fluxsite/lora-test",
        input={"input_images": dataset_url(zip_content), "steps": steps, "trigger_word": "ZXQ"},
        **extra,
    )


def _finished(training) -> bool:
    return training.status in ("succeeded", "failed", "canceled")


def test_the_sdk_drives_a_training_to_success_and_the_weights_are_a_real_lora(sdk, api):
    training = _start_training(sdk, good_dataset())
    assert training.status == "starting"
    assert training.urls["get"].endswith(f"/v1/trainings/{training.id}")

    seen: set[str] = set()

    def fetch():
        current = sdk.trainings.get(training.id)
        seen.add(current.status)
        return current

    done = wait_until(fetch, _finished)
    assert done.status == "succeeded", done.error
    assert "processing" in seen
    assert TQDM_LINE.search(done.logs)
    assert "flux_train_replicate: 100%|██████████| 500/500" in done.logs
    # The trainer's own log lines (train.py extract_zip(), caption.py caption_images() @ 3dd14e3):
    # autocaption (on by default) captions only the image without a .txt.
    assert "Extracted 3 files from zip to input_images" in done.logs
    assert "img_001.jpg is already captioned" in done.logs
    assert re.search(r"^Caption for input_images/img_002\.png: Photo of .+ blue", done.logs, re.MULTILINE)
    assert re.fullmatch(r"fluxsite/lora-test:[0-9a-f]{64}", done.output["version"])
    raw = api.get(f"/v1/trainings/{training.id}").json()
    assert raw["metrics"]["predict_time"] > 0
    assert raw["completed_at"].endswith("Z")

    weights = httpx.get(done.output["weights"], timeout=10)
    assert weights.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(weights.content), mode="r:") as tar:  # "r:": uncompressed
        names = set(tar.getnames())
        lora = _member(tar, "output/flux_train_replicate/lora.safetensors")
        captions = {n.rsplit("/", 1)[-1]: _member(tar, n).decode() for n in names if "/captions/" in n}
        assert "output/flux_train_replicate/config.yaml" in names
        # `tar -cvf … output/flux_train_replicate` (train.py @ 3dd14e3) stores the folders too.
        assert tar.getmember("output/flux_train_replicate").isdir()
        assert tar.getmember("output/flux_train_replicate/captions").isdir()
    (header_length,) = struct.unpack("<Q", lora[:8])
    header = json.loads(lora[8 : 8 + header_length])
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    assert any(k.endswith("lora_A.weight") for k in tensors) and any(
        k.endswith("lora_B.weight") for k in tensors
    )
    data_size = len(lora) - 8 - header_length
    for spec in tensors.values():
        assert spec["dtype"] == "F32"
        start, end = spec["data_offsets"]
        assert end - start == 4 * spec["shape"][0] * spec["shape"][1]
        assert end <= data_size
    assert max(spec["data_offsets"][1] for spec in tensors.values()) == data_size
    # captions/ holds every .txt of the input folder: ours as sent ([trigger] is replaced in memory
    # by ai-toolkit, not in the file) and the one autocaption wrote.
    assert set(captions) == {"img_001.txt", "img_002.txt"}
    assert captions["img_001.txt"] == "a photo of [trigger] in a red room"
    assert captions["img_002.txt"].startswith("Photo of a person in a blue setting, square composition.")

    # The trained version is now runnable.
    prediction = sdk.predictions.create(
        version=done.output["version"], input={"prompt": "ZXQ on a beach"}, wait=10
    )
    assert prediction.status == "succeeded"
    image = Image.open(io.BytesIO(httpx.get(prediction.output[0], timeout=10).content))
    image.load()
    assert image.format == "WEBP"


def _tar_captions(url: str) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(httpx.get(url, timeout=10).content), mode="r:") as tar:
        return {n.rsplit("/", 1)[-1]: _member(tar, n).decode() for n in tar.getnames() if "/captions/" in n}


def test_with_autocaption_off_an_uncaptioned_image_gets_no_caption_file(sdk):
    sdk.models.create(owner="fluxsite", name="lora-test", visibility="private", hardware="cpu")
    training = sdk.trainings.create(
        model="ostris/flux-dev-lora-trainer",
        version=_trainer_version(sdk),
        destination="fluxsite/lora-test",
        input={"input_images": dataset_url(good_dataset()), "steps": 100, "autocaption": False},
    )
    done = wait_until(lambda: sdk.trainings.get(training.id), _finished)
    assert done.status == "succeeded", done.error
    assert _tar_captions(done.output["weights"]) == {"img_001.txt": "a photo of [trigger] in a red room"}
    assert "Caption for" not in done.logs and "already captioned" not in done.logs


def test_autocaption_is_told_the_prefix_and_suffix(sdk):
    sdk.models.create(owner="fluxsite", name="lora-test", visibility="private", hardware="cpu")
    training = sdk.trainings.create(
        model="ostris/flux-dev-lora-trainer",
        version=_trainer_version(sdk),
        destination="fluxsite/lora-test",
        input={
            "input_images": dataset_url(good_dataset()),
            "steps": 100,
            "autocaption_prefix": "a photo of ZXQ,",
            "autocaption_suffix": "in the style of ZXQ",
        },
    )
    done = wait_until(lambda: sdk.trainings.get(training.id), _finished)
    caption = _tar_captions(done.output["weights"])["img_002.txt"]
    assert caption.startswith("a photo of ZXQ, photo of a person") and caption.endswith(
        " in the style of ZXQ"
    )


def test_an_invalid_zip_ends_failed_with_the_trainers_error(sdk):
    training = _start_training(sdk, b"this is not a zip file")
    done = wait_until(lambda: sdk.trainings.get(training.id), _finished)
    assert done.status == "failed"
    # The trainer's own message: replicate/flux-fine-tuner train.py extract_zip() @ 3dd14e3.
    assert done.error == "input_images must be a zip file"
    assert "input_images must be a zip file" in done.logs


def test_a_zip_without_images_ends_failed(sdk):
    training = _start_training(sdk, zip_bytes({"notes.txt": b"hello", "photo.tiff": image_bytes()}))
    done = wait_until(lambda: sdk.trainings.get(training.id), _finished)
    assert done.status == "failed"
    assert done.error == "no images found in input_images"  # ai-toolkit's data loader


def test_a_dataset_url_that_404s_ends_failed(sdk, sandbox):
    sdk.models.create(owner="fluxsite", name="lora-test", visibility="private", hardware="cpu")
    training = sdk.trainings.create(
        model="ostris/flux-dev-lora-trainer",
        version=_trainer_version(sdk),
        destination="fluxsite/lora-test",
        input={"input_images": f"{sandbox}/files/not-a-token", "steps": 100},
    )
    done = wait_until(lambda: sdk.trainings.get(training.id), _finished)
    assert done.status == "failed"
    assert "HTTP 404" in done.error


@pytest.mark.parametrize(
    ("input_", "field"),
    [
        ({"steps": 2}, "input.steps"),
        ({"steps": 6001}, "input.steps"),
        ({"lora_rank": 0}, "input.lora_rank"),
        ({"lora_rank": 129}, "input.lora_rank"),
        ({"steps": "many"}, "input.steps"),
        # Replicate refuses null for a typed input ("Invalid type. Expected: integer, given: null" is recorded).
        ({"input_images": None}, "input.input_images"),
    ],
)
def test_bad_training_inputs_are_refused_with_invalid_fields(api, sdk, input_, field):
    sdk.models.create(owner="fluxsite", name="lora-test", visibility="private", hardware="cpu")
    body = {
        "destination": "fluxsite/lora-test",
        "input": {"input_images": "https://example.com/x.zip", **input_},
    }
    response = api.post(
        f"/v1/models/ostris/flux-dev-lora-trainer/versions/{_trainer_version(sdk)}/trainings", json=body
    )
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["title"] == "Input validation failed"
    assert [f["field"] for f in problem["invalid_fields"]] == [field]


def test_a_missing_destination_is_404_and_an_existing_model_is_409(sdk):
    with pytest.raises(ReplicateError) as missing:
        sdk.trainings.create(
            model="ostris/flux-dev-lora-trainer",
            version=_trainer_version(sdk),
            destination="fluxsite/nope",
            input={"input_images": "https://example.com/x.zip"},
        )
    assert missing.value.status == 404
    model = sdk.models.create(owner="fluxsite", name="twice", visibility="private", hardware="cpu")
    assert (model.owner, model.name, model.visibility) == ("fluxsite", "twice", "private")
    with pytest.raises(ReplicateError) as again:
        sdk.models.create(owner="fluxsite", name="twice", visibility="private", hardware="cpu")
    assert again.value.status == 409


def test_a_wrong_token_gets_401_problem_json(sandbox):
    response = httpx.get(
        f"{settings.REPLICATE_BASE_URL}/v1/models/ostris/flux-dev-lora-trainer",
        headers={"Authorization": "Bearer r8_wrong"},
    )
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json() == {
        "title": "Unauthenticated",
        "detail": "You did not pass a valid authentication token",
        "status": 401,
    }
    assert httpx.get(f"{settings.REPLICATE_BASE_URL}/v1/predictions/x").status_code == 401


def test_the_token_is_read_at_request_time(sdk, settings):
    settings.REPLICATE_API_TOKEN = "r8_rotated"
    with pytest.raises(ReplicateError) as refused:
        sdk.models.get("ostris/flux-dev-lora-trainer")
    assert refused.value.status == 401


def test_the_trainer_publishes_its_schema(sdk):
    model = sdk.models.get("ostris/flux-dev-lora-trainer")
    schema = model.latest_version.openapi_schema["components"]["schemas"]["TrainingInput"]
    assert schema["properties"]["steps"]["minimum"] == 3
    assert schema["properties"]["steps"]["maximum"] == 6000
    # train() gives input_images default=None, so Cog lists nothing as required (it fails at run time).
    assert "required" not in schema and schema["properties"]["input_images"]["format"] == "uri"
    # optimizer is a free string in train(): no enum (the trainer checks it when it runs).
    assert (
        "enum" not in schema["properties"]["optimizer"] and "allOf" not in schema["properties"]["optimizer"]
    )


def test_webhooks_start_and_completed_are_signed_like_replicate(sdk, api, receiver):
    training = _start_training(
        sdk, good_dataset(), steps=100, webhook=receiver.url, webhook_events_filter=["start", "completed"]
    )
    deliveries = receiver.wait_for(lambda d: len(d) >= 2)
    start, completed = (json.loads(d.body) for d in deliveries[:2])
    assert (start["status"], completed["status"]) == ("starting", "succeeded")
    assert start["id"] == completed["id"] == training.id
    assert completed == api.get(f"/v1/trainings/{training.id}").json()  # the same JSON as GET
    secret = api.get("/v1/webhooks/default/secret").json()["key"]
    assert secret == settings.REPLICATE_WEBHOOK_SECRET
    for delivery in deliveries:
        assert re.fullmatch(r"v1,[A-Za-z0-9+/]+=*", delivery.headers["webhook-signature"])
        webhook_verify(headers=delivery.headers, body=delivery.body)
        Webhooks.validate(
            headers=delivery.headers,
            body=delivery.body.decode(),
            secret=WebhookSigningSecret(key=secret),
            tolerance=300,
        )
    assert deliveries[0].headers["webhook-id"] != deliveries[1].headers["webhook-id"]
    assert len(receiver.deliveries) == 2  # no logs or output events: they were filtered out


def test_the_completed_webhook_is_retried_with_the_same_id(sdk, receiver):
    receiver.statuses = [200, 500, 503]  # start ok, then the completed one fails twice
    prediction = sdk.predictions.create(
        version=_generator_version(sdk),
        input={"prompt": "a cat"},
        webhook=receiver.url,
        webhook_events_filter=["start", "completed"],
    )
    deliveries = receiver.wait_for(lambda d: len(d) >= 4)
    completed = deliveries[1:]
    assert {json.loads(d.body)["status"] for d in completed} == {"succeeded"}
    assert len({d.headers["webhook-id"] for d in completed}) == 1
    assert json.loads(completed[0].body)["id"] == prediction.id


def test_an_intermediate_webhook_is_not_retried(sdk, receiver):
    receiver.statuses = [500]
    sdk.predictions.create(
        version=_generator_version(sdk),
        input={"prompt": "a cat"},
        webhook=receiver.url,
        webhook_events_filter=["start", "completed"],
    )
    deliveries = receiver.wait_for(lambda d: any(json.loads(x.body)["status"] == "succeeded" for x in d))
    assert [json.loads(d.body)["status"] for d in deliveries] == ["starting", "succeeded"]


def _generator_version(sdk: replicate.Client) -> str:
    version = sdk.models.get("black-forest-labs/flux-dev-lora").latest_version
    assert version is not None
    return version.id


def _statuses(deliveries) -> list[str]:
    return [json.loads(d.body)["status"] for d in deliveries]


def test_drop_webhook_fault_drops_the_completed_webhook(sdk, receiver):
    fault_inject(service="replicate", operation="webhook.completed", kind="drop_webhook")
    prediction = sdk.predictions.create(
        version=_generator_version(sdk),
        input={"prompt": "a cat"},
        webhook=receiver.url,
        webhook_events_filter=["start", "completed"],
    )
    wait_until(lambda: sdk.predictions.get(prediction.id), _finished)
    receiver.wait_for(lambda d: len(d) >= 1)
    assert sandbox_runs_finished(prediction.id)  # a wrongly delivered completed webhook has arrived by now
    assert _statuses(receiver.deliveries) == ["starting"]


def test_duplicate_webhook_fault_delivers_twice_with_one_id(sdk, receiver):
    fault_inject(service="replicate", operation="webhook.completed", kind="duplicate_webhook")
    sdk.predictions.create(
        version=_generator_version(sdk),
        input={"prompt": "a cat"},
        webhook=receiver.url,
        webhook_events_filter=["start", "completed"],
    )
    deliveries = receiver.wait_for(lambda d: len(d) >= 3)
    assert _statuses(deliveries) == ["starting", "succeeded", "succeeded"]
    assert deliveries[1].headers["webhook-id"] == deliveries[2].headers["webhook-id"]
    assert deliveries[1].body == deliveries[2].body


def test_reorder_webhooks_fault_sends_completed_before_start(sdk, receiver):
    fault_inject(service="replicate", operation="webhook.start", kind="reorder_webhooks")
    sdk.predictions.create(
        version=_generator_version(sdk),
        input={"prompt": "a cat"},
        webhook=receiver.url,
        webhook_events_filter=["start", "completed"],
    )
    deliveries = receiver.wait_for(lambda d: len(d) >= 2)
    assert _statuses(deliveries) == ["succeeded", "starting"]
    for delivery in deliveries:
        webhook_verify(headers=delivery.headers, body=delivery.body)


def test_bad_signature_fault_signs_with_a_wrong_key(sdk, receiver):
    fault_inject(service="replicate", operation="*", kind="bad_signature", times=2)
    sdk.predictions.create(
        version=_generator_version(sdk),
        input={"prompt": "a cat"},
        webhook=receiver.url,
        webhook_events_filter=["start", "completed"],
    )
    deliveries = receiver.wait_for(lambda d: len(d) >= 2)
    for delivery in deliveries:
        with pytest.raises(IntegrationError) as refused:
            webhook_verify(headers=delivery.headers, body=delivery.body)
        assert refused.value.category == "validation"


def test_fail_training_fault_fails_the_training_midway(sdk, receiver):
    fault_inject(service="replicate", operation="trainings.create", kind="fail_training")
    # 2000 steps run 6 s here (SANDBOX_TRAINING_SECONDS=3 a thousand) and fail at half: a window of
    # about 3 s in which a poll sees "processing", wide enough on a loaded machine (at 100 steps it
    # was about 1 s, and CI missed it once while other suites shared the two cores).
    training = _start_training(
        sdk, good_dataset(), steps=2000, webhook=receiver.url, webhook_events_filter=["completed"]
    )
    seen: set[str] = set()

    def fetch():
        current = sdk.trainings.get(training.id)
        seen.add(current.status)
        return current

    done = wait_until(fetch, _finished, interval=0.1)
    assert done.status == "failed"
    assert "processing" in seen
    assert "CUDA error" in done.error
    assert "flux_train_replicate:  50%" in done.logs and "100%|██████████| 2000/2000" not in done.logs
    completed = receiver.wait_for(lambda d: len(d) >= 1)
    assert json.loads(completed[0].body)["status"] == "failed"


def test_a_canceled_training_ends_canceled(sdk, receiver):
    training = _start_training(
        sdk, good_dataset(), steps=3000, webhook=receiver.url, webhook_events_filter=["completed"]
    )
    canceled = sdk.trainings.cancel(training.id)
    assert canceled.status == "canceled"
    assert sdk.trainings.get(training.id).status == "canceled"
    assert _statuses(receiver.wait_for(lambda d: len(d) >= 1)) == ["canceled"]


# --- Predictions --------------------------------------------------------------------------------------
def test_a_prediction_draws_real_images_of_the_prompt(sdk, api):
    response = api.post(
        "/v1/models/black-forest-labs/flux-dev-lora/predictions",
        headers={"Prefer": "wait=10"},
        json={
            "input": {
                "prompt": "a lighthouse",
                "aspect_ratio": "16:9",
                "num_outputs": 2,
                "output_format": "png",
                "lora_weights": "huggingface.co/a/b",
            }
        },
    )
    assert response.status_code == 201
    prediction = response.json()
    assert prediction["status"] == "succeeded"
    assert len(prediction["output"]) == 2
    assert prediction["metrics"]["predict_time"] > 0
    for url in prediction["output"]:
        image = Image.open(io.BytesIO(httpx.get(url, timeout=10).content))
        image.load()
        assert image.format == "PNG"
        assert image.width > image.height
    # The SDK parses the same object.
    assert sdk.predictions.get(prediction["id"]).output == prediction["output"]


def test_a_prediction_without_wait_is_created_then_finishes(sdk):
    prediction = sdk.models.predictions.create(
        model="black-forest-labs/flux-dev-lora", input={"prompt": "a dog", "output_format": "jpg"}
    )
    assert prediction.status == "starting"
    done = wait_until(lambda: sdk.predictions.get(prediction.id), _finished, interval=0.1)
    assert done.status == "succeeded"
    assert done.output[0].endswith(".jpg")
    assert Image.open(io.BytesIO(httpx.get(done.output[0]).content)).format == "JPEG"


def test_a_short_wait_answers_202_while_running(api, settings):
    settings.SANDBOX_PREDICTION_SECONDS = 3
    response = api.post(
        "/v1/models/black-forest-labs/flux-dev-lora/predictions",
        headers={"Prefer": "wait=1"},
        json={"input": {"prompt": "slow"}},
    )
    assert response.status_code == 202
    assert response.json()["status"] in ("starting", "processing")
    assert api.post(f"/v1/predictions/{response.json()['id']}/cancel").json()["status"] == "canceled"


def test_an_nsfw_prompt_fails_like_replicate(sdk):
    prediction = sdk.models.predictions.create(
        model="black-forest-labs/flux-dev-lora", input={"prompt": "something nsfw"}, wait=10
    )
    assert prediction.status == "failed"
    assert prediction.error == "NSFW content detected. Try running it again, or try a different prompt."
    assert prediction.output is None


@pytest.mark.parametrize(
    ("input_", "field"),
    [
        ({"prompt": "x", "num_outputs": 5}, "input.num_outputs"),
        ({"num_outputs": 1}, "input"),
        ({"prompt": "x", "output_format": "gif"}, "input.output_format"),
        ({"prompt": "x", "aspect_ratio": "2:1"}, "input.aspect_ratio"),
    ],
)
def test_bad_prediction_inputs_are_refused(api, input_, field):
    response = api.post("/v1/models/black-forest-labs/flux-dev-lora/predictions", json={"input": input_})
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["invalid_fields"]] == [field]


def test_an_unknown_version_is_refused(api):
    response = api.post("/v1/predictions", json={"version": "0" * 64, "input": {"prompt": "x"}})
    assert response.status_code == 422
    assert response.json()["title"] == "Invalid version or not permitted"


def test_status_faults_answer_problem_json_with_retry_after(api):
    fault_inject(service="replicate", operation="predictions.create", status=429, retry_after=7)
    response = api.post(
        "/v1/models/black-forest-labs/flux-dev-lora/predictions", json={"input": {"prompt": "x"}}
    )
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == "Request was throttled. Your rate limit resets in ~30s."
    # Consumed: the next call works.
    assert (
        api.post(
            "/v1/models/black-forest-labs/flux-dev-lora/predictions", json={"input": {"prompt": "x"}}
        ).status_code
        == 201
    )


def test_the_admin_lists_the_stand_ins_state(sdk, staff_client):
    sdk.models.predictions.create(model="black-forest-labs/flux-dev-lora", input={"prompt": "x"})
    for name in ("sandboxmodel", "sandboxversion", "sandboxtraining", "sandboxprediction"):
        response = staff_client.get(f"/admin/sandbox_replicate/{name}/")
        assert response.status_code == 200, name


def test_the_sandbox_signs_the_published_test_vector():
    from sandbox.replicate.simulation import webhook_signature

    assert (
        webhook_signature(
            secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp=1614265330,
            body=b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )
