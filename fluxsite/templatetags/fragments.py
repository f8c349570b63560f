"""`{% fragment_key_for rows "pk" "name" "generation.prompt" as key %}`: the key of a cached fragment
(fluxsite/fragments.py) computed from the values each row displays, named by template lookups
("0.pk" reads the first item of a tuple row). Use with Django's own tag:

    {% load cache fragments %}
    {% fragment_key_for images "pk" "thumbnail_name" as tiles_key %}
    {% cache FRAGMENT_SECONDS gallery_tiles tiles_key %} ... {% endcache %}

Every value the fragment shows must be named, or a change to it would be served stale.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template
from django.template.base import Variable

from fluxsite.fragments import fragment_key

register = template.Library()


@register.simple_tag
def fragment_key_for(rows: Iterable[object], *lookups: str) -> str:
    variables = [Variable(f"row.{lookup}") for lookup in lookups]
    contexts: list[dict[str, Any]] = [{"row": row} for row in rows]
    return fragment_key(tuple(v.resolve(context) for v in variables) for context in contexts)
