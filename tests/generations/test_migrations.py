"""Data migrations of the generations app, run forward from the state before them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from generations.models import GeneratedImage

BEFORE = [("generations", "0002_schedule_contenttypes_showcase")]


@pytest.mark.django_db(transaction=True)
def test_every_existing_image_gets_its_generations_owner(alice, bob):
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    Generation = old.get_model("generations", "Generation")
    OldImage = old.get_model("generations", "GeneratedImage")
    for user, count in ((alice, 2), (bob, 1)):
        generation = Generation.objects.create(
            owner_id=user.pk, model_name="M", prompt="p", effective_prompt="p"
        )
        for index in range(count):
            OldImage.objects.create(
                generation=generation,
                index=index,
                file_name="f",
                thumbnail_name="t",
                width=1,
                height=1,
                byte_size=1,
            )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    owners = sorted(GeneratedImage.objects.values_list("owner_id", flat=True))
    assert owners == sorted([alice.pk, alice.pk, bob.pk])
