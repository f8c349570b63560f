"""A pytest plugin (loaded with `-p tests.parallel`, before Django's settings are read) that gives
each pytest-xdist worker its own Redis database, as pytest-django gives each its own test database.

Tests clear the cache before each test and the django-q2 broker keeps its queue in Redis: two
workers sharing one database would empty each other's cache and take each other's tasks.
"""

from __future__ import annotations

import os
import re

ORIGINAL_REDIS_URL = os.environ.get("REDIS_URL", "")
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # set by xdist before the worker reads its options
_url = ORIGINAL_REDIS_URL
if _worker.startswith("gw") and _url:
    _index = int(_worker[2:])
    _match = re.match(r"^(redis://[^/]+)(?:/(\d+))?$", _url)
    if not _match:
        raise RuntimeError(
            f"REDIS_URL {_url!r} is not redis://host:port/db; cannot give each worker a database"
        )
    _base = int(_match.group(2) or 0)
    os.environ["REDIS_URL"] = f"{_match.group(1)}/{_base + 1 + _index}"
