"""fluxsite.cache.RedisCache: Django's Redis backend, one redis client per pool instead of one per call."""

from __future__ import annotations

import pytest

from fluxsite.cache import RedisCache
from tests.helpers import run_concurrently

pytestmark = pytest.mark.redis


@pytest.fixture
def backend(settings):
    cache = RedisCache(settings.REDIS_URL, {"KEY_PREFIX": "test-cache-backend"})
    yield cache
    cache.clear()


def test_operations_share_one_client(backend):
    backend.set("a", 1)
    client = backend._cache.get_client("a")
    assert backend.get("a") == 1
    assert backend._cache.get_client("b") is client
    assert backend._cache.get_client("a", write=True) is client  # one server: one pool, one client


def test_every_cache_operation_still_works(backend):
    assert backend.add("k", "v", 30) and not backend.add("k", "w", 30)
    assert backend.get("k") == "v"
    backend.set_many({"x": 1, "y": 2})
    assert backend.get_many(["x", "y", "z"]) == {"x": 1, "y": 2}
    assert backend.incr("x") == 2
    assert backend.delete("k") and backend.get("k") is None
    assert backend.touch("y", 10)


def test_threads_share_the_client_safely(backend):
    """gunicorn's gthread workers run requests in threads that share the process's cache objects."""

    def work(i: int) -> list:
        seen = []
        for n in range(50):
            backend.set(f"t{i}", n)
            seen.append(backend.get(f"t{i}"))
        return seen

    results = run_concurrently(work, 8)
    assert all(result == list(range(50)) for result in results), results


def test_production_settings_use_it(settings):
    assert settings.CACHES["default"]["BACKEND"] == "fluxsite.cache.RedisCache"
