"""The served OpenAPI document lists every route, and the answers match it; the reference page."""

from __future__ import annotations

import pytest
from openapi_schema_validator import OAS31Validator

from api.endpoints import api
from fluxsite.accounts.models import WebhookDelivery, WebhookEndpoint
from tests.api.conftest import training
from tests.generations.generation_kit import finished_generation, lora_model, stored_image
from tests.helpers import inline_scripts

pytestmark = pytest.mark.django_db


def _document(client) -> dict:
    answer = client.get("/api/v1/openapi.json")
    assert answer.status_code == 200
    return answer.json()


def test_the_document_lists_every_route_of_the_api(client):
    doc = _document(client)
    listed = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    routes = {
        (method, "/api/v1" + router_prefix + path)
        for router_prefix, router in api._routers
        for path, path_view in router.path_operations.items()
        for operation in path_view.operations
        for method in operation.methods
    }
    assert routes and routes == listed
    assert doc["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"
    for path, item in doc["paths"].items():
        if "post" in item:
            names = [p["name"] for p in item["post"]["parameters"]]
            assert "Idempotency-Key" in names, path
    cancel = doc["paths"]["/api/v1/trainings/{training_id}/cancel"]["post"]["parameters"]
    assert [p["name"] for p in cancel] == ["training_id", "Idempotency-Key"]


def _validate(doc: dict, path: str, method: str, status: int, body) -> None:
    content = doc["paths"][path][method]["responses"][str(status)]["content"]
    schema = next(iter(content.values()))["schema"]
    OAS31Validator({**schema, "components": doc["components"]}).validate(body)


def test_answers_validate_against_the_served_schemas(client, alice, alice_api):
    doc = _document(client)
    model = lora_model(alice, replicate_version="fluxsite/lora-x:" + "a" * 64)
    generation = finished_generation(alice, model, images=0)
    stored_image(generation)
    job = training(alice, loss_history=[[1, 0.9]], params={"steps": 10}, cost_credits=3)
    endpoint = WebhookEndpoint.objects.create(
        owner=alice, url="https://93.184.215.14/h", events=["training.failed"], secret="whsec_x"
    )
    WebhookDelivery.objects.create(
        endpoint=endpoint, event_id="msg_1", type="training.failed", payload={"type": "training.failed"}
    )
    cases = [
        ("/api/v1/trainings", "/api/v1/trainings"),
        ("/api/v1/trainings/{training_id}", f"/api/v1/trainings/{job.pk}"),
        ("/api/v1/models", "/api/v1/models"),
        ("/api/v1/models/{model_id}", f"/api/v1/models/{model.pk}"),
        ("/api/v1/models/{model_id}/images", f"/api/v1/models/{model.pk}/images"),
        ("/api/v1/generations/{generation_id}", f"/api/v1/generations/{generation.pk}"),
        ("/api/v1/balance", "/api/v1/balance"),
        ("/api/v1/ledger", "/api/v1/ledger"),
        ("/api/v1/webhooks", "/api/v1/webhooks"),
        ("/api/v1/webhooks/{endpoint_id}", f"/api/v1/webhooks/{endpoint.pk}"),
        ("/api/v1/webhooks/{endpoint_id}/deliveries", f"/api/v1/webhooks/{endpoint.pk}/deliveries"),
    ]
    for template, path in cases:
        answer = alice_api.get(path)
        assert answer.status_code == 200, (path, answer.content)
        _validate(doc, template, "get", 200, answer.json())
    missing = alice_api.get("/api/v1/trainings/999999")
    _validate(doc, "/api/v1/trainings/{training_id}", "get", 404, missing.json())
    # The validator is not a rubber stamp: a wrong shape fails.
    with pytest.raises(Exception, match="required"):
        _validate(doc, "/api/v1/balance", "get", 200, {"credit": 1})


def test_the_reference_page_is_rendered_on_our_origin_from_the_document(client):
    answer = client.get("/api/v1/docs")
    assert answer.status_code == 200
    html = answer.content.decode()
    for route in ("GET /api/v1/trainings", "POST /api/v1/generations", "GET /api/v1/ledger"):
        assert route in html
    assert 'id="schema-TrainingOut"' in html and 'id="problem-insufficient-credits"' in html
    assert "cdn" not in html.lower() and not inline_scripts(html)
