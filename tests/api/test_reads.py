"""The read endpoints: shapes, filters, cursors, scopes, owners, and a constant number of queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.services import credits_grant
from fluxsite.accounts.models import WebhookDelivery, WebhookEndpoint
from generations.models import GeneratedImage, Generation
from tests.api.conftest import Api, token_for, training
from tests.generations.generation_kit import finished_generation, lora_model, stored_image
from training.models import TrainingJob

pytestmark = pytest.mark.django_db


def test_a_training_reads_with_stage_progress_loss_and_cost(alice, alice_api):
    job = training(
        alice,
        status=TrainingJob.Status.REPLICATE_TRAINING,
        progress_step=250,
        progress_total=1000,
        current_loss=0.31,
        loss_history=[[100, 0.5], [200, 0.31]],
        cost_credits=120,
        params={"steps": 1000},
    )
    answer = alice_api.get(f"/api/v1/trainings/{job.pk}")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["stage"] == "replicate_training" and body["stage_label"] == "Training on Replicate"
    assert body["progress"] == {"step": 250, "total": 1000, "percent": 25, "eta_seconds": None}
    assert body["loss_history"] == [[100, 0.5], [200, 0.31]]
    assert body["cost_credits"] == 120 and body["steps"] == 1000
    assert body["error"] is None and body["model_id"] is None


def test_a_failed_training_says_why_with_the_dashboards_hint(alice, alice_api):
    job = training(
        alice,
        status=TrainingJob.Status.FAILED,
        failed_stage="replicate_training",
        error_category="validation",
        error_message="The trainer refused the input.",
        error_hint="Check the steps.",
    )
    error = alice_api.get(f"/api/v1/trainings/{job.pk}").json()["error"]
    assert error == {
        "stage": "replicate_training",
        "category": "validation",
        "message": "The trainer refused the input.",
        "hint": "Check the steps.",
    }


def test_the_training_list_filters_sorts_and_pages_like_the_dashboard(alice, bob, alice_api):
    for name in ("Beta", "Alpha", "Gamma"):
        training(alice, name=name)
    training(alice, name="Running", status=TrainingJob.Status.INITIALIZING)
    training(bob, name="Bob's")
    names = [t["name"] for t in alice_api.get("/api/v1/trainings", sort="name").json()["items"]]
    assert names == ["Alpha", "Beta", "Gamma", "Running"]
    assert [t["name"] for t in alice_api.get("/api/v1/trainings", status="active").json()["items"]] == [
        "Running"
    ]
    assert [t["name"] for t in alice_api.get("/api/v1/trainings", q="amm").json()["items"]] == ["Gamma"]
    first = alice_api.get("/api/v1/trainings", sort="name", limit=3).json()
    assert [t["name"] for t in first["items"]] == ["Alpha", "Beta", "Gamma"] and first["next_cursor"]
    rest = alice_api.get("/api/v1/trainings", sort="name", limit=3, after=first["next_cursor"]).json()
    assert [t["name"] for t in rest["items"]] == ["Running"] and rest["next_cursor"] == ""


def test_models_their_images_and_a_generation_read_with_absolute_urls(alice, alice_api):
    model = lora_model(alice, replicate_version="fluxsite/lora-x:" + "a" * 64)
    generation = finished_generation(alice, model, images=0)
    image = stored_image(generation)
    models = alice_api.get("/api/v1/models").json()
    assert [m["id"] for m in models["items"]] == [model.pk] and models["items"][0]["usable"] is True
    assert alice_api.get(f"/api/v1/models/{model.pk}").json()["trigger_word"] == "ALICEX"
    images = alice_api.get(f"/api/v1/models/{model.pk}/images").json()["items"]
    assert [i["id"] for i in images] == [image.pk]
    assert images[0]["url"].startswith("http://testserver/")
    body = alice_api.get(f"/api/v1/generations/{generation.pk}").json()
    assert body["status"] == "succeeded" and [i["id"] for i in body["images"]] == [image.pk]


def test_the_balance_and_the_ledger(alice, alice_api):
    credits_grant(user=alice, amount=7, reference="test:grant", note="a gift")
    balance = alice_api.get("/api/v1/balance").json()
    assert balance["credits"] > 7
    ledger = alice_api.get("/api/v1/ledger", limit=1).json()
    assert (
        ledger["items"][0]["amount"] == 7 and ledger["items"][0]["note"] == "a gift" and ledger["next_cursor"]
    )
    older = alice_api.get("/api/v1/ledger", after=ledger["next_cursor"]).json()["items"]
    assert (
        older
        and older[0]["kind"] != ""
        and sum(e["amount"] for e in [*ledger["items"], *older]) == balance["credits"]
    )


def _alices_objects(alice):
    model = lora_model(alice, replicate_version="fluxsite/lora-x:" + "a" * 64)
    generation = finished_generation(alice, model, images=0)
    job = training(alice, status=TrainingJob.Status.FAILED)
    return {"training": job.pk, "model": model.pk, "generation": generation.pk}


OWNED_READS = [
    "/api/v1/trainings/{training}",
    "/api/v1/models/{model}",
    "/api/v1/models/{model}/images",
    "/api/v1/generations/{generation}",
]


@pytest.mark.parametrize("path", OWNED_READS)
def test_another_tokens_objects_are_404_problems(alice, bob_api, path):
    answer = bob_api.get(path.format(**_alices_objects(alice)))
    assert answer.status_code == 404
    assert answer["Content-Type"] == "application/problem+json"
    assert answer.json()["type"].endswith("#problem-not-found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/trainings/{training}/cancel"),
        ("post", "/api/v1/trainings/{training}/retry"),
    ],
)
def test_another_tokens_trainings_cannot_be_acted_on(alice, bob_api, method, path):
    objects = _alices_objects(alice)
    assert bob_api.post(path.format(**objects)).status_code == 404
    assert TrainingJob.objects.get(pk=objects["training"]).status == TrainingJob.Status.FAILED


@pytest.mark.parametrize(
    "path",
    [*OWNED_READS, "/api/v1/trainings", "/api/v1/models", "/api/v1/balance", "/api/v1/ledger"],
)
def test_every_read_needs_the_read_scope(alice, client, path):
    objects = _alices_objects(alice)
    writer = Api(client, token_for(alice, scopes=("train", "generate"))[1])
    answer = writer.get(path.format(**objects))
    assert answer.status_code == 403 and answer.json()["detail"] == "This token lacks the “read” scope."
    reader = Api(client, token_for(alice, scopes=("read",), name="r")[1])
    assert reader.get(path.format(**objects)).status_code == 200


def test_a_bad_query_parameter_is_a_422_problem_naming_the_field(alice_api):
    answer = alice_api.get("/api/v1/trainings", limit="many")
    assert answer.status_code == 422
    assert answer["Content-Type"] == "application/problem+json"
    assert answer.json()["errors"][0]["field"] == "limit"


def test_an_unknown_path_id_type_is_not_a_500(alice_api):
    assert alice_api.get("/api/v1/trainings/abc").status_code in (404, 422)


def test_the_wrong_method_is_405(alice_api):
    answer = alice_api.post("/api/v1/balance")
    assert answer.status_code == 405


def _queries(api: Api, path: str, **params) -> int:
    with CaptureQueriesContext(connection) as captured:
        answer = api.get(path, **params)
    assert answer.status_code == 200, answer.content
    return len(captured)


def test_lists_cost_the_same_queries_for_one_row_and_for_two_hundred(alice, alice_api):
    model = lora_model(alice, replicate_version="fluxsite/lora-x:" + "a" * 64)
    generation = finished_generation(alice, model, images=0)
    training(alice)
    GeneratedImage.objects.create(
        generation=generation,
        owner=alice,
        index=0,
        file_name="a.webp",
        thumbnail_name="a-t.webp",
        width=1,
        height=1,
        byte_size=1,
    )
    credits_grant(user=alice, amount=1, reference="test:0")
    endpoint = WebhookEndpoint.objects.create(
        owner=alice, url="https://hooks.example.com/0", events=["training.failed"], secret="whsec_x"
    )
    WebhookDelivery.objects.create(endpoint=endpoint, event_id="msg_0", type="training.failed")
    paths: dict[str, dict] = {
        "/api/v1/trainings": {},
        "/api/v1/models": {},
        f"/api/v1/models/{model.pk}/images": {},
        "/api/v1/ledger": {},
        "/api/v1/webhooks": {},
        f"/api/v1/webhooks/{endpoint.pk}/deliveries": {},
    }
    alice_api.get("/api/v1/balance")  # the token's first use writes last_used_at: not a list's query
    one = {path: _queries(alice_api, path, limit=100, **params) for path, params in paths.items()}
    TrainingJob.objects.bulk_create(
        [TrainingJob(owner=alice, name=f"T{i}", trigger_word="X") for i in range(200)]
    )
    for i in range(1, 200):
        lora_model(alice, name=f"Model {i}")
    gens = Generation.objects.bulk_create(
        [
            Generation(
                owner=alice, lora_model=model, model_name="m", prompt="p", effective_prompt="p", params={}
            )
            for _ in range(200)
        ]
    )
    GeneratedImage.objects.bulk_create(
        [
            GeneratedImage(
                generation=g,
                owner=alice,
                index=0,
                file_name="b.webp",
                thumbnail_name="b-t.webp",
                width=1,
                height=1,
                byte_size=1,
            )
            for g in gens
        ]
    )
    for i in range(1, 200):
        credits_grant(user=alice, amount=1, reference=f"test:{i}")
    WebhookEndpoint.objects.bulk_create(
        [
            WebhookEndpoint(owner=alice, url=f"https://hooks.example.com/{i}", events=[], secret="whsec_x")
            for i in range(1, 10)  # ten endpoints, the most a person may have
        ]
    )
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(endpoint=endpoint, event_id=f"msg_{i}", type="training.failed")
            for i in range(1, 200)
        ]
    )
    many = {path: _queries(alice_api, path, limit=100, **params) for path, params in paths.items()}
    assert many == one
