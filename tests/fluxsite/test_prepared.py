"""fluxsite.prepared: a query compiled once gives what the queryset it was built from gives."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import Http404

from fluxsite.prepared import PreparedQuery
from tests.training.conftest import add_photos


def _page_fields(job: Any) -> dict:
    names = [f.attname for f in job._meta.concrete_fields if f.attname not in job.get_deferred_fields()]
    return {
        **{name: getattr(job, name) for name in names},
        "photo_count": job.photo_count,
        "model_pk": job.model_pk,
        "duplicated_from_name": job.duplicated_from_name,
        "deferred": job.get_deferred_fields(),
    }


@pytest.fixture
def trainings(alice, alice_client):
    from models_app.models import LoraModel
    from training.services import training_create

    original = training_create(owner=alice, name="Original", trigger_word="ohwx_orig", subject_kind="subject")
    add_photos(alice_client, original, 3)
    copy = training_create(owner=alice, name="Copy", trigger_word="ohwx_copy", subject_kind="style")
    type(copy).objects.filter(pk=copy.pk).update(
        duplicated_from=original, params={"steps": 1200}, loss_history=[[0, 0.5], [10, 0.25]]
    )
    LoraModel.objects.create(
        owner=alice,
        training=copy,
        name="Copy",
        slug="copy",
        trigger_word="ohwx_copy",
        weights_file_name="w.safetensors",
        weights_size=1,
        weights_sha256="0" * 64,
    )
    return original, copy


def test_the_training_page_row_is_the_one_the_queryset_builds(alice, trainings):
    from training.selectors import _training_page, get_training_page_for_user

    for job in trainings:
        built = _training_page(alice.pk, job.pk).get()
        prepared = get_training_page_for_user(alice, job.pk)
        assert type(prepared) is type(built)
        assert _page_fields(prepared) == _page_fields(built)
    original, copy = (_page_fields(get_training_page_for_user(alice, job.pk)) for job in trainings)
    assert (original["photo_count"], original["model_pk"], original["duplicated_from_name"]) == (
        3,
        None,
        None,
    )
    assert copy["photo_count"] == 0 and copy["model_pk"] is not None
    assert copy["duplicated_from_name"] == "Original"
    assert copy["params"] == {"steps": 1200} and copy["loss_history"] == [[0, 0.5], [10, 0.25]]
    assert "logs_tail" in copy["deferred"]


def test_the_training_page_row_is_one_query_and_another_users_is_a_404(
    alice, bob, trainings, django_assert_num_queries
):
    from training.selectors import get_training_page_for_user

    job = trainings[0]
    get_training_page_for_user(alice, job.pk)  # compiled here, or by an earlier test
    with django_assert_num_queries(1):
        assert get_training_page_for_user(alice, job.pk).pk == job.pk
    with pytest.raises(Http404):
        get_training_page_for_user(bob, job.pk)
    with pytest.raises(Http404):
        get_training_page_for_user(alice, 10**30)  # no column holds it: a 404, as the ORM answers


def test_a_prepared_query_refuses_a_value_its_sql_does_not_use(db):
    from training.models import TrainingJob

    ignores_pk = PreparedQuery(
        TrainingJob, lambda owner_id, pk: TrainingJob.objects.filter(owner_id=owner_id), "owner_id", "pk"
    )
    with pytest.raises(ValueError, match="pk"):
        ignores_pk.list(owner_id=1, pk=2)
    with pytest.raises(TypeError):
        ignores_pk.list(owner_id=1)


def test_a_prepared_query_keeps_the_querysets_literals(alice, trainings):
    from training.models import TrainingJob

    named = PreparedQuery(
        TrainingJob,
        lambda owner_id: TrainingJob.objects.filter(owner_id=owner_id, name="Copy", progress_step__gte=0),
        "owner_id",
    )
    assert [job.name for job in named.list(owner_id=alice.pk)] == ["Copy"]


def test_the_history_first_page_is_the_one_the_paginated_queryset_gives(alice, alice_client, bob):
    from fluxsite.pagination import cursor_first_page, cursor_page
    from training import selectors
    from training.services import training_create

    ordering = selectors.training_ordering("newest")
    link: dict[str, Any] = {"ordering": ordering, "per_page": selectors.TRAININGS_PER_PAGE, "target": "t"}
    assert cursor_first_page(selectors.trainings_first_page(alice), **link).object_list == []
    for i in range(selectors.TRAININGS_PER_PAGE + 2):
        training_create(owner=alice, name=f"T{i}", trigger_word=f"ohwx_t{i}", subject_kind="subject")
    training_create(owner=bob, name="Bob's", trigger_word="ohwx_bob", subject_kind="subject")
    first = selectors.trainings_first_page(alice)[0]
    add_photos(alice_client, first, 2)

    prepared = cursor_first_page(selectors.trainings_first_page(alice), **link)
    built = cursor_page(selectors.trainings_search(alice), cursor=None, **link)
    shown = lambda page: [(t.pk, t.name, t.status, t.image_count, t.model_pk) for t in page]  # noqa: E731
    assert shown(prepared) == shown(built) and len(prepared) == selectors.TRAININGS_PER_PAGE
    assert getattr(prepared.object_list[0], "image_count") == 2  # noqa: B009  (an annotation)
    assert prepared.next_cursor and prepared.next_cursor == built.next_cursor
    second = cursor_page(selectors.trainings_search(alice), cursor=prepared.next_cursor, **link)
    assert [t.name for t in second] == ["T1", "T0"]
    assert {t.get_deferred_fields() == built.object_list[0].get_deferred_fields() for t in prepared} == {True}


def test_the_history_page_reads_its_first_page_and_a_filtered_one_alike(alice, alice_client):
    from training.services import training_create

    for i in range(3):
        training_create(owner=alice, name=f"Portrait {i}", trigger_word=f"ohwx_p{i}", subject_kind="subject")
    training_create(owner=alice, name="Landscape", trigger_word="ohwx_land", subject_kind="style")
    plain = alice_client.get("/trainings/").content.decode()
    assert all(f"Portrait {i}" in plain for i in range(3)) and "Landscape" in plain
    searched = alice_client.get("/trainings/?q=portrait").content.decode()
    assert "Portrait 0" in searched and "Landscape" not in searched
