"""Cached fragments (fluxsite/fragments.py): served from the cache while what they show is unchanged,
rendered again the moment any of it changes, however the change was written."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.cache.utils import make_template_fragment_key
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from fluxsite import fragments
from tests.helpers import cold_queries
from tests.training.conftest import add_photos
from training.models import TrainingEvent, TrainingJob
from training.services import training_create

pytestmark = pytest.mark.django_db


def _rows(client) -> str:
    return client.get(reverse("training:list")).content.decode()


def test_a_training_row_changed_by_a_bare_update_is_rendered_again(alice_client, alice):
    job = training_create(owner=alice, name="Rex", trigger_word="ohwx_rex", subject_kind="subject")
    TrainingJob.objects.filter(pk=job.pk).update(
        status=TrainingJob.Status.REPLICATE_TRAINING, progress_total=1000
    )
    assert "0%" in _rows(alice_client)

    # The pipeline writes progress with QuerySet.update(), which leaves updated_at alone.
    TrainingJob.objects.filter(pk=job.pk).update(progress_step=420)
    assert "42%" in _rows(alice_client)

    TrainingJob.objects.filter(pk=job.pk).update(name="Rex the dog")
    body = _rows(alice_client)
    assert "Rex the dog" in body and "42%" in body


def test_the_photo_count_of_a_row_follows_its_dataset(alice_client, alice):
    job = training_create(owner=alice, name="Rex", trigger_word="ohwx_rex", subject_kind="subject")
    assert "<td>0</td>" in _rows(alice_client)
    add_photos(alice_client, job, 2)
    assert "<td>2</td>" in _rows(alice_client)


def test_unchanged_rows_come_from_the_cache(alice_client, alice):
    for i in range(3):
        training_create(owner=alice, name=f"T{i}", trigger_word=f"ohwx_{i}", subject_kind="subject")
    response = alice_client.get(reverse("training:list"))
    key = make_template_fragment_key("training_rows", [response.context["rows_key"]])
    assert "T2" in cache.get(key)
    cache.set(key, "<tr><td>from the cache</td></tr>")  # what a second request shows is what is kept
    assert "from the cache" in _rows(alice_client)


def test_a_new_template_version_is_a_new_key(monkeypatch):
    rows = [(1, "a")]
    before = fragments.fragment_key(rows)
    monkeypatch.setattr(fragments, "templates_version", lambda: "another deploy")
    assert fragments.fragment_key(rows) != before
    assert fragments.fragment_key([(1, "b")]) != fragments.fragment_key(rows)


def test_the_event_log_shows_a_new_event_at_once(alice_client, alice):
    job = training_create(owner=alice, name="Rex", trigger_word="ohwx_rex", subject_kind="subject")
    TrainingJob.objects.filter(pk=job.pk).update(status=TrainingJob.Status.SUCCEEDED)
    url = reverse("training:detail", args=[job.pk])
    TrainingEvent.objects.create(job=job, stage="replicate_training", message="Step 1 of 10.")
    assert "Step 1 of 10." in alice_client.get(url).content.decode()
    TrainingEvent.objects.create(job=job, stage="replicate_training", message="Step 2 of 10.")
    body = alice_client.get(url).content.decode()
    assert "Step 1 of 10." in body and "Step 2 of 10." in body


def test_a_cached_page_costs_the_same_queries(alice_client, alice):
    job = training_create(owner=alice, name="Rex", trigger_word="ohwx_rex", subject_kind="subject")
    TrainingEvent.objects.create(job=job, stage="replicate_training", message="Step 1 of 10.")
    # Warm, the layout's balance comes from the cache (one query less) and, on the training page,
    # so do the events' rows: their ids are read, the events themselves only to render them.
    for url, saved in ((reverse("training:list"), 1), (reverse("training:detail", args=[job.pk]), 2)):
        _, cold = cold_queries(alice_client, url)
        with CaptureQueriesContext(connection) as warm:
            alice_client.get(url)
        # (On Redis the session is read from the cache too: one query more saved.)
        assert len(warm) <= cold - saved, url


def test_a_renamed_model_shows_its_new_name_in_the_list(alice_client, alice):
    from models_app.services.publishing import lora_rename
    from tests.generations.generation_kit import lora_model

    model = lora_model(alice, name="Portrait")
    url = reverse("models_app:list")
    assert "Portrait" in alice_client.get(url).content.decode()
    lora_rename(model=model, name="Headshots")
    body = alice_client.get(url).content.decode()
    assert "Headshots" in body and "Portrait" not in body


def test_a_deleted_image_leaves_the_gallery_at_once(alice_client, alice):
    from generations.services.generation import generated_image_delete
    from tests.generations.generation_kit import finished_generation, lora_model

    generation = finished_generation(alice, lora_model(alice), images=2)
    first, second = generation.images.order_by("index")
    url = reverse("generations:gallery")
    body = alice_client.get(url).content.decode()
    assert reverse("generations:image", args=[first.pk]) in body
    generated_image_delete(image=first)
    body = alice_client.get(url).content.decode()
    assert reverse("generations:image", args=[first.pk]) not in body
    assert reverse("generations:image", args=[second.pk]) in body


def test_a_new_ledger_entry_shows_on_the_billing_page(alice_client, alice):
    from billing.services.ledger import credits_grant

    url = reverse("billing:overview")
    alice_client.get(url)
    credits_grant(
        user=alice, amount=37, reference="test:fragments", kind="billing.credits.adjusted", note="a gift"
    )
    assert "+37" in alice_client.get(url).content.decode()


class _Row:
    name = "Model 1"
    items = {"a": 1}

    def label(self) -> str:
        return "called"

    def delete(self) -> None:  # a method that changes data: Django's templates never call it
        raise AssertionError("called")

    delete.alters_data = True  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "row, lookup",
    [
        ((_Row(), "https://x/t.webp"), "0.name"),
        ((_Row(), "https://x/t.webp"), "1"),
        ((_Row(), ""), "0.label"),
        ((_Row(), ""), "0.items.a"),
        ((_Row(), ""), "0.delete"),
        ((_Row(),), "1"),  # out of range: Django's empty string
        ({"0": "by key"}, "0"),
        ({0: "int key"}, "0"),
        ([["nested"]], "0.0"),
        (_Row(), "missing"),
    ],
)
def test_the_key_reads_each_value_as_the_template_would(row, lookup):
    from django.template.base import Variable

    from fluxsite.templatetags.fragments import _resolve

    def outcome(resolve):
        try:
            return resolve()
        except Exception as exc:  # the old tag raised what Variable raises: so must the new one
            return type(exc)

    expected = outcome(lambda: Variable(f"row.{lookup}").resolve({"row": row}))
    assert outcome(lambda: _resolve(row, lookup)) == expected


def test_rows_that_differ_in_a_named_value_have_different_keys():
    from fluxsite.templatetags.fragments import fragment_key_for

    one, other = _Row(), _Row()
    other.name = "Model 2"
    assert fragment_key_for([(one, "u")], "0.name", "1") != fragment_key_for([(other, "u")], "0.name", "1")
    assert fragment_key_for([(one, "u")], "0.name", "1") == fragment_key_for([(_Row(), "u")], "0.name", "1")


def _grid(client, job) -> str:
    return client.get(reverse("training:dataset", args=[job.pk])).content.decode()


def test_the_dataset_grid_shows_a_changed_caption_and_a_deleted_photo_at_once(alice_client, alice):
    from training.models import DatasetImage

    job = training_create(owner=alice, name="Rex", trigger_word="ohwx_rex", subject_kind="subject")
    add_photos(alice_client, job, 3)
    first, second, third = DatasetImage.objects.filter(dataset__training=job).order_by("position")
    assert f'id="image-{third.pk}"' in _grid(alice_client, job)

    DatasetImage.objects.filter(pk=first.pk).update(caption="a dog on a beach")  # a bare update
    DatasetImage.objects.filter(pk=second.pk).update(warnings=["Blurry: 12 (sharp photos score 100+)"])
    third.delete()
    body = _grid(alice_client, job)
    assert "a dog on a beach" in body and "Blurry: 12" in body
    assert f'id="image-{third.pk}"' not in body


def test_a_cached_dataset_grid_is_never_served_with_another_browsers_csrf_token(alice, alice_client):
    """Each card holds a form with {% csrf_token %}: a second browser of the same person (its own
    CSRF secret) must get tokens it can post with, not the first browser's cached ones."""
    import re

    from django.test import Client

    from training.models import DatasetImage

    job = training_create(owner=alice, name="Rex", trigger_word="ohwx_rex", subject_kind="subject")
    laptop, phone = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    for client in (laptop, phone):
        client.force_login(alice)
        client.get(reverse("training:list"))  # the browser's CSRF cookie, as a first page gives it
    add_photos(alice_client, job, 1)
    image = DatasetImage.objects.get(dataset__training=job)
    save = reverse("training:image_caption", args=[job.pk, image.pk])

    def card_token(client) -> str:
        body = _grid(client, job)
        card_form = body[body.index(f'action="{save}"') :]
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', card_form)
        assert found
        return found.group(1)

    # Both browsers see the same photos: the phone's grid would be the laptop's cached HTML.
    laptop_token, phone_token = card_token(laptop), card_token(phone)
    for n, (client, token) in enumerate([(phone, phone_token), (laptop, laptop_token)]):
        answer = client.post(save, {"caption": f"caption {n}", "csrfmiddlewaretoken": token})
        assert answer.status_code == 302, answer.status_code  # 403 if the token were not its own
        image.refresh_from_db()
        assert image.caption == f"caption {n}"
