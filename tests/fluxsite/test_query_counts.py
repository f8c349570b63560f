"""Issue 15, item 2: no page's number of queries depends on the number of rows.

Every named URL of the dashboards (trainings, models, generations, billing, the account) that a
logged-in owner can GET is walked, as a page and as an htmx request (the fragments), with one row
of each kind and again with 200 (trainings, their events and photos, models, generations and their
images, ledger entries); the counts must be identical. The patterns are enumerated from the
resolver, so a new page is walked without being listed here. The upload answer and the start page
with its preset fragment are counted at 12 and at 49 photos.
"""

from __future__ import annotations

import uuid
from typing import TypeVar

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from billing.models import CreditEntry
from generations.models import GeneratedImage, Generation
from models_app.models import LoraModel
from tests.fluxsite.test_url_walk import _kwargs
from tests.fluxsite.test_url_walk import objects as objects  # noqa: F401  (the fixture)
from tests.helpers import cold_queries
from tests.training import images
from tests.training.conftest import post_files
from training.models import CaptionTask, Dataset, DatasetImage, TrainingEvent, TrainingJob

M = TypeVar("M", bound=Model)

pytestmark = pytest.mark.django_db

APPS = ("training", "models_app", "generations", "billing", "accounts")
# Not dashboard pages, each with why.
NOT_WALKED = {
    "accounts:logout": "POST only",
    "accounts:verify": "a signed link, not a page of the dashboard",
    "accounts:password_reset_confirm": "a signed link",
    "billing:checkout_pack": "starts a Stripe checkout (a vendor call)",
    "billing:checkout_plan": "starts a Stripe checkout (a vendor call)",
    "billing:portal": "a redirect to Stripe's portal (a vendor call)",
    "billing:stripe_webhook": "a webhook",
    "training:replicate_webhook": "a webhook",
    "training:caption_webhook": "a webhook",
    "models_app:public": "the public share page, walked with the model made public below",
}
N = 200


def _dashboard_names():
    def walk(patterns, namespace=None):
        for item in patterns:
            if isinstance(item, URLResolver):
                yield from walk(item.url_patterns, item.namespace or namespace)
            elif isinstance(item, URLPattern) and namespace in APPS and item.name:
                yield f"{namespace}:{item.name}", bool(item.pattern.converters)

    return sorted(item for item in set(walk(get_resolver().url_patterns)) if item[0] not in NOT_WALKED)


def _clone(obj: M, i: int, **overrides) -> M:
    """A copy of `obj` for bulk_create: unique columns made unique with `i`."""
    values = {}
    for field in obj._meta.concrete_fields:
        if field.primary_key:
            continue
        value = getattr(obj, field.attname)
        if field.unique and isinstance(value, uuid.UUID):
            value = uuid.uuid4()
        elif field.unique and isinstance(value, str):
            value = f"{value}-{i}"
        values[field.attname] = value
    values.update(overrides)
    return type(obj)(**values)


def _sample_grid(prompts: int, strengths: int) -> dict:
    cell = {"status": "succeeded", "file_name": "samples/w/i.webp", "thumbnail_name": "samples/w/t.webp"}
    return {
        "seed": 42,
        "strengths": [i / 2 for i in range(strengths)],
        "prompts": [f"prompt {row}" for row in range(prompts)],
        "cells": [[dict(cell) for _ in range(strengths)] for _ in range(prompts)],
    }


def _grow(objects, n: int) -> None:
    """From one row of each kind to `n`, with bulk_create (the walked objects keep their pks)."""
    training: TrainingJob = objects["training"]
    more = TrainingJob.objects.bulk_create([_clone(training, i, name=f"Training {i}") for i in range(1, n)])
    Dataset.objects.bulk_create([_clone(training.dataset, i, training_id=t.pk) for i, t in enumerate(more)])
    TrainingEvent.objects.bulk_create(
        [TrainingEvent(job=training, stage="replicate_training", message=f"event {i}") for i in range(n)]
    )
    photo: DatasetImage = objects["dataset_image"]
    DatasetImage.objects.bulk_create(
        [_clone(photo, i, pixel_sha256=f"{i:064x}", position=i) for i in range(1, n)]
    )
    task = CaptionTask.objects.get(batch=objects["caption_batch"])
    CaptionTask.objects.bulk_create([_clone(task, i, image_id=photo.pk) for i in range(1, n)])
    model: LoraModel = objects["model"]
    # Its sample grid from 1 × 1 to 4 × 4 (prompts × strengths): kept on the model's row.
    LoraModel.objects.filter(pk=model.pk).update(sample_grid=_sample_grid(4, 4))
    LoraModel.objects.bulk_create(
        [_clone(model, i, slug=f"{model.slug}-{i}", training_id=None) for i in range(1, n)]
    )
    generation: Generation = objects["generation"]
    image: GeneratedImage = objects["image"]
    generations = Generation.objects.bulk_create([_clone(generation, i) for i in range(1, n)])
    GeneratedImage.objects.bulk_create(
        [_clone(image, i, generation_id=g.pk) for i, g in enumerate(generations)]
    )
    from fluxsite.accounts.models import WebhookDelivery

    delivery = WebhookDelivery.objects.get(endpoint=objects["webhook_endpoint"])
    WebhookDelivery.objects.bulk_create([_clone(delivery, i, event_id=f"msg_walk_{i}") for i in range(1, n)])
    entry = CreditEntry.objects.filter(wallet__user=training.owner).first()
    assert entry is not None
    CreditEntry.objects.bulk_create([_clone(entry, i, reference=f"adjustment:walk-{i}") for i in range(1, n)])


def _requests(objects):
    """(label, url, headers) for every page and fragment walked."""
    htmx = {"HTTP_HX_REQUEST": "true"}
    for name, has_arguments in _dashboard_names():
        url = reverse(name, kwargs=_kwargs(name, objects)) if has_arguments else reverse(name)
        yield name, url, {}
        yield f"{name} (htmx)", url, htmx
    training = objects["training"]
    model = objects["model"]
    yield "estimate", reverse("training:estimate", args=[training.pk]) + "?steps=1000", htmx
    yield (
        "caption estimate",
        reverse("training:caption_estimate", args=[training.pk])
        + "?photos=all&mode=replace&style=natural&trigger_placement=start&model=lucataco/florence-2-large",
        htmx,
    )
    yield "start preset", reverse("training:start", args=[training.pk]) + "?preset=fast", htmx
    yield "preview", reverse("generations:generate_preview") + f"?model={model.pk}&prompt=a+cat", htmx
    yield "model search", reverse("generations:generate") + "?model_q=walk", htmx
    yield "captions as csv", reverse("training:captions_export", args=[training.pk]) + "?format=csv", {}
    yield "public", reverse("models_app:public", args=[model.public_id]), {}


def _counts(client, objects) -> dict[str, tuple[int, int]]:
    counts = {}
    for label, url, headers in _requests(objects):
        response, queries = cold_queries(client, url, **headers)
        counts[label] = (response.status_code, queries)
    return counts


def test_every_dashboard_page_and_fragment_costs_the_same_queries_at_1_and_200_rows(
    objects, alice_client, monkeypatch
):
    from generations import views as generation_views

    # The generate page reads the model's input schema from Replicate: not a query, not this test.
    monkeypatch.setattr(generation_views, "_limits", lambda model: {})
    LoraModel.objects.filter(pk=objects["model"].pk).update(
        visibility=LoraModel.Visibility.PUBLIC, sample_grid=_sample_grid(1, 1)
    )
    objects["model"].refresh_from_db()
    # The training page lists the trainer's captions with their photos.
    TrainingJob.objects.filter(pk=objects["training"].pk).update(trainer_captions={"img_001": "a photo"})
    # One row of each kind to start from: the training's log has one event.
    TrainingEvent.objects.create(job=objects["training"], stage="replicate_training", message="event")
    _counts(alice_client, objects)  # warm caches (content types, the session) out of the count
    one = _counts(alice_client, objects)
    _grow(objects, N)
    many = _counts(alice_client, objects)

    assert len(one) >= 60, sorted(one)  # the walk found the apps' patterns
    grew = {label: (one[label], many[label]) for label in one if one[label] != many[label]}
    assert not grew, grew
    assert sum(status == 200 for status, _ in one.values()) >= 40, one  # pages, not refusals


def _photo_rows(training, count: int) -> None:
    photo = training.dataset.images.get()
    DatasetImage.objects.bulk_create(
        [_clone(photo, i, pixel_sha256=f"{i:064x}", position=i) for i in range(1, count)]
    )


@pytest.mark.parametrize("page", ["upload", "upload grid", "start", "start preset"])
def test_the_upload_answer_and_the_start_page_cost_the_same_at_12_and_49_photos(objects, alice_client, page):
    training = objects["training"]

    def count() -> int:
        if page.startswith("upload"):
            url = reverse("training:dataset_upload", args=[training.pk])
            photo = images.photo(seed=DatasetImage.objects.count() + 100)
            with CaptureQueriesContext(connection) as queries:
                if page == "upload":  # the JSON verdicts the upload script reads
                    response = post_files(alice_client, training, [("p.jpg", photo)])
                else:  # the grid, for htmx
                    response = alice_client.post(
                        url, {"files": [SimpleUploadedFile("p.jpg", photo)]}, HTTP_HX_REQUEST="true"
                    )
            assert response.status_code == 200
            DatasetImage.objects.filter(original_name="p.jpg").delete()
            return len(queries)
        url = reverse("training:start", args=[training.pk]) + (
            "?preset=fast" if page == "start preset" else ""
        )
        headers = {"HTTP_HX_REQUEST": "true"} if page == "start preset" else {}
        with CaptureQueriesContext(connection) as queries:
            assert alice_client.get(url, **headers).status_code == 200
        return len(queries)

    count()  # warm
    _photo_rows(training, 11)
    at_12 = count()
    DatasetImage.objects.bulk_create(
        [
            _clone(training.dataset.images.first(), i, pixel_sha256=f"{i + 100:064x}", position=i)
            for i in range(11, 48)
        ]
    )
    at_49 = count()
    assert at_12 == at_49
