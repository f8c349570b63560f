"""Rendered HTML fragments kept in the cache, keyed on exactly what they show.

Rendering a list's rows costs more than reading them (Django's template engine spends about 0.1-0.2 ms
a row on variable lookups, URL reversing and escaping). A fragment wrapped in Django's own
`{% cache FRAGMENT_SECONDS name key %}` tag, with `key = fragment_key(...)` computed from the values
the fragment displays, is rendered once and read back with one cache get until one of those values
changes. The key also covers the templates themselves (a deploy that changes a template never serves
the old HTML), the active time zone and the language, since both change what a date renders as.

Only for fragments whose every displayed value is in the key: a row showing "3 minutes ago" would go
stale, so cached rows show absolute times.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import cast

from django.conf import settings
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.utils import timezone, translation

FRAGMENT_SECONDS = 600


def templates_version() -> str:
    """A digest of every template file's path, size and modification time, read once per process:
    the same on every process of one deployment, different after a deploy that changes a template.
    With DEBUG on it is read every time, so an edited template shows at once in development."""
    return _templates_digest() if not settings.DEBUG else _templates_digest.__wrapped__()


@cache
def _templates_digest() -> str:
    digest = hashlib.blake2b(digest_size=16)
    for folder in cast("list[str | Path]", settings.TEMPLATES[0]["DIRS"]):
        for path in sorted(Path(folder).rglob("*.html")):
            stat = path.stat()
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def fragment_key(rows: Iterable[Iterable[object]]) -> str:
    """The cache key of a fragment that shows `rows` (each the tuple of values one row displays)."""
    digest = hashlib.blake2b(templates_version().encode(), digest_size=20)
    digest.update(f"|{timezone.get_current_timezone_name()}|{translation.get_language()}|".encode())
    for row in rows:
        digest.update(repr(tuple(row)).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def csrf_scope(request: HttpRequest) -> str:
    """The part of a fragment's key that makes it one browser's own, for a fragment holding
    `{% csrf_token %}`: a digest of the request's CSRF secret (made now if it has none yet, as the
    tag would). The cached HTML carries a token valid for that secret only, so it is served back
    only to the browser holding it; another person (or the same one after signing in again, which
    rotates the secret) gets its own rendering."""
    get_token(request)  # sets request.META["CSRF_COOKIE"] when the request brought no secret
    secret = str(request.META.get("CSRF_COOKIE", ""))
    return hashlib.blake2b(secret.encode(), digest_size=16, person=b"fluxsite-csrf").hexdigest()
