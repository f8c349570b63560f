"""The sample grid on the model page: its best strength (owner only), the generate page's default,
the cover and the card's images, and a page whose queries do not grow with the grid."""

from __future__ import annotations

import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import Image

from fluxsite.integrations import storage
from models_app.models import LoraModel
from models_app.selectors import model_sample_images
from models_app.services import lora_sample_grid_set
from tests.generations.generation_kit import lora_model

pytestmark = pytest.mark.django_db
STRENGTHS = [0.0, 0.6, 0.8, 1.0, 1.2]


def _stored(name: str) -> str:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 20, 30)).save(out, format="WEBP")
    return storage.file_save(alias=storage.PUBLIC, name=name, content=io.BytesIO(out.getvalue()))


def grid(prompts: int, strengths: list[float], *, status: str = "succeeded") -> dict:
    cells = []
    for row in range(prompts):
        cells.append(
            [
                {
                    "status": status,
                    "file_name": f"samples/t/{row}-{col}.webp" if status == "succeeded" else "",
                    "thumbnail_name": f"samples/t/{row}-{col}-thumb.webp" if status == "succeeded" else "",
                }
                for col in range(len(strengths))
            ]
        )
    return {
        "seed": 42,
        "strengths": strengths,
        "prompts": [f"ALICEX prompt {row}" for row in range(prompts)],
        "cells": cells,
    }


@pytest.fixture
def model(alice):
    model = lora_model(alice, replicate_version="fluxsite/lora-grid:" + "a" * 64)
    lora_sample_grid_set(model_id=model.pk, grid=grid(2, STRENGTHS))
    model.refresh_from_db()
    return model


def test_the_grid_becomes_the_cover_only_of_a_model_without_one(alice):
    bare = lora_model(alice, name="Bare")
    lora_sample_grid_set(model_id=bare.pk, grid=grid(2, STRENGTHS))
    bare.refresh_from_db()
    assert bare.cover_image_name == "samples/t/0-3.webp"  # the first prompt at strength 1.0
    covered = lora_model(alice, name="Covered", cover_image_name="generations/mine.webp")
    lora_sample_grid_set(model_id=covered.pk, grid=grid(2, STRENGTHS))
    covered.refresh_from_db()
    assert covered.cover_image_name == "generations/mine.webp"


def test_the_cards_images_are_the_cover_then_one_grid_image_a_prompt_at_the_best_strength(model):
    samples = model_sample_images(model, limit=6)
    assert [(s.name, s.prompt) for s in samples] == [
        ("samples/t/0-3.webp", "ALICEX prompt 0"),
        ("samples/t/1-3.webp", "ALICEX prompt 1"),
    ]
    LoraModel.objects.filter(pk=model.pk).update(suggested_lora_scale=0.8)
    model.refresh_from_db()
    # The cover stays what it was; the prompts follow the chosen strength.
    assert [s.name for s in model_sample_images(model, limit=6)] == [
        "samples/t/0-3.webp",
        "samples/t/0-2.webp",
        "samples/t/1-2.webp",
    ]


def test_the_owner_marks_the_best_strength_and_the_generate_page_starts_from_it(
    model, alice_client, bob_client, anon_client, monkeypatch
):
    url = f"/models/{model.pk}/strength/"
    page = alice_client.get(f"/models/{model.pk}/")
    assert (
        page.status_code == 200
        and b"Sample grid" in page.content
        and f'action="{url}"'.encode() in page.content
    )

    assert bob_client.post(url, {"lora_scale": "0.8"}).status_code == 404
    assert alice_client.get(url).status_code == 405
    assert anon_client.post(url, {"lora_scale": "0.8"}).status_code == 302  # to the login page
    response = alice_client.post(url, {"lora_scale": "0.7"}, follow=True)
    assert b"Pick one of the strengths the sample grid shows." in response.content
    response = alice_client.post(url, {"lora_scale": "nonsense"}, follow=True)
    assert response.status_code == 200 and b"Pick one of the strengths" in response.content
    model.refresh_from_db()
    assert model.suggested_lora_scale is None

    assert alice_client.post(url, {"lora_scale": "0.8"}).status_code == 302
    model.refresh_from_db()
    assert model.suggested_lora_scale == 0.8

    from generations import views as generation_views

    monkeypatch.setattr(generation_views, "_limits", lambda model: {})  # no schema read from Replicate here
    generate = alice_client.get(f"/models/generate/?model={model.pk}").content.decode()
    assert 'name="lora_scale" value="0.8"' in generate


def test_the_model_page_costs_the_same_queries_with_a_1x1_and_a_4x4_grid(alice, alice_client):
    model = lora_model(alice, replicate_version="fluxsite/lora-grid:" + "a" * 64)

    def count(prompts: int, strengths: list[float]) -> int:
        LoraModel.objects.filter(pk=model.pk).update(sample_grid=grid(prompts, strengths))
        with CaptureQueriesContext(connection) as queries:
            response = alice_client.get(f"/models/{model.pk}/")
        assert response.status_code == 200
        assert response.content.count(b'<td class="sample succeeded">') == prompts * len(strengths)
        return len(queries)

    count(1, [1.0])  # warm the session and content types
    assert count(1, [1.0]) == count(4, [0.0, 0.6, 1.0, 1.2])


def test_a_grid_still_being_made_shows_its_queued_images(model, alice_client):
    LoraModel.objects.filter(pk=model.pk).update(sample_grid=grid(2, STRENGTHS, status="queued"))
    page = alice_client.get(f"/models/{model.pk}/").content.decode()
    assert page.count('<td class="sample queued">') == 10 and "Queued…" in page


def test_a_grid_still_being_made_refreshes_itself_on_the_model_page_until_done(
    alice, alice_client, bob_client
):
    """Found by the browser journey: the model page showed "Queued" for good, with no poll."""
    model = lora_model(alice, name="Coming")
    lora_sample_grid_set(model_id=model.pk, grid=grid(1, STRENGTHS, status="queued"))
    page = alice_client.get(f"/models/{model.pk}/")
    poll = f"/models/{model.pk}/samples/"
    assert f'hx-get="{poll}"' in page.content.decode()
    pending = alice_client.get(poll, HTTP_HX_REQUEST="true")
    assert pending.status_code == 200 and f'hx-get="{poll}"' in pending.content.decode()
    assert bob_client.get(poll, HTTP_HX_REQUEST="true").status_code == 404  # only the owner's
    lora_sample_grid_set(model_id=model.pk, grid=grid(1, STRENGTHS))
    done = alice_client.get(poll, HTTP_HX_REQUEST="true")
    assert done.status_code == 286  # htmx stops polling
    assert "hx-get" not in done.content.decode() and "<img" in done.content.decode()
