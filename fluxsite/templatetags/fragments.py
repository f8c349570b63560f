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
from functools import lru_cache
from typing import Any

from django import template
from django.template.base import Variable

from fluxsite.fragments import fragment_key

register = template.Library()

_MISSING = object()


@lru_cache(maxsize=256)
def _bits(lookup: str) -> tuple[int | str, ...]:
    return tuple(int(bit) if bit.isdigit() else bit for bit in lookup.split("."))


def _resolve(row: object, lookup: str) -> Any:
    """What `{{ row.<lookup> }}` gives, the way Django's `Variable` resolves it for the rows these
    keys are made of (tuples indexed by position, attributes, dict keys, callables called), without
    its slow path: on a tuple, Django tries `row["0"]`, then `getattr(row, "0")`, then
    `"0" in dir(row)` before indexing, and that `dir()` was most of the models list's key (issue 15).
    Anything else (a lookup that fails, a dict with integer-like keys) goes to `Variable` itself."""
    current: Any = row
    context: dict[str, Any] = {"row": row}
    for bit in _bits(lookup):
        if isinstance(bit, int) and isinstance(current, (tuple, list)):
            current = current[bit] if -len(current) <= bit < len(current) else _MISSING
        elif isinstance(current, dict):
            current = current.get(bit, _MISSING) if isinstance(bit, str) else _MISSING
        else:
            current = getattr(current, str(bit), _MISSING)
        if current is _MISSING:
            return Variable(f"row.{lookup}").resolve(context)
        if callable(current) and not getattr(current, "do_not_call_in_templates", False):
            if getattr(current, "alters_data", False):
                return Variable(f"row.{lookup}").resolve(context)
            current = current()
    return current


@register.simple_tag
def fragment_key_for(rows: Iterable[object], *lookups: str) -> str:
    return fragment_key(tuple(_resolve(row, lookup) for lookup in lookups) for row in rows)
