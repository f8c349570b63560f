"""Parallel test processes (tests/parallel.py): each xdist worker has its own Redis database."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from tests import parallel


@pytest.mark.redis
def test_each_parallel_worker_uses_a_redis_database_of_its_own():
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        pytest.skip("runs in one process: there is no other worker to share Redis with")
    given = parallel.ORIGINAL_REDIS_URL.rsplit("/", 1)
    base = int(given[1]) if len(given) == 2 and given[1].isdigit() else 0
    database = int(settings.REDIS_URL.rsplit("/", 1)[1])
    assert database == base + 1 + int(worker.removeprefix("gw"))
    assert settings.CACHES["default"]["LOCATION"] == settings.REDIS_URL
    assert settings.Q_CLUSTER["redis"] == settings.REDIS_URL
