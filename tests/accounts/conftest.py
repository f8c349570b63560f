from __future__ import annotations

import re

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _clear_cache():
    """The resend limit lives in the cache, and primary keys repeat from test to test."""
    cache.clear()
    yield
    cache.clear()


def link_in(message) -> str:
    """The path of the verification link in a mail."""
    found = re.search(r"https?://[^/\s]+(/account/verify/\S+/)", message.body)
    assert found, message.body
    return found.group(1)
