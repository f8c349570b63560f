"""The one paginator of the dashboards: a keyset cursor ("the rows after this one").

Every list (trainings, models, galleries, a training's events, the credit ledger) pages through
`cursor_page`, and every page shows its next rows with the same "more" link
(`templates/partials/_more.html`): htmx appends the next rows to the list and swaps the link out of
band; without JavaScript the link opens the next rows as a page.

Why a cursor and not page numbers: a page costs the same at row 20 as at row 20,000 (an index range,
no OFFSET to walk), and no COUNT(*) over all the user's rows is needed to draw the page. A cursor
names the last row shown by its ordering values; it is not signed because it only narrows a query
that is already scoped to the owner, and anything that does not decode is the first page.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from django.core.exceptions import ValidationError
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string

M = TypeVar("M", bound=Model)

CURSOR_PARAM = "after"


@dataclass
class CursorPage(Generic[M]):
    object_list: list[M]
    next_cursor: str = ""
    target: str = "rows"  # the id of the element the rows go into
    label: str = "More"
    swap: str = "beforeend"  # "afterbegin" for a list that grows upwards (older events above)
    query: dict[str, str] = field(default_factory=dict)  # the other parameters the "more" link keeps

    @property
    def has_next(self) -> bool:
        return bool(self.next_cursor)

    @property
    def next_query(self) -> str:
        return urlencode({**self.query, CURSOR_PARAM: self.next_cursor})

    def __iter__(self):
        return iter(self.object_list)

    def __len__(self) -> int:
        return len(self.object_list)

    def __bool__(self) -> bool:
        return bool(self.object_list)


def _fields(model: type[Model], ordering: tuple[str, ...]) -> list[tuple[str, bool, Any]]:
    """(name, descending, model field) for each ordering term; the terms must be concrete non-null
    columns of the model and end with a unique one (the primary key) so the order is total."""
    meta = model._meta
    terms = []
    for term in ordering:
        name = term.lstrip("-")
        model_field = meta.pk if name == "pk" else meta.get_field(name)
        terms.append((name, term.startswith("-"), model_field))
    return terms


def _encode(values: list[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode(cursor: str, count: int) -> list[str] | None:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        return None
    if not isinstance(values, list) or len(values) != count or not all(isinstance(v, str) for v in values):
        return None
    return values


def _after(terms: list[tuple[str, bool, Any]], raw: list[str]) -> Q | None:
    """The rows strictly after the cursor in this ordering: (a > x) | (a = x & b > y) | …"""
    try:
        values = [model_field.to_python(value) for (_, _, model_field), value in zip(terms, raw, strict=True)]
    except ValidationError:
        return None
    condition = Q()
    equal: dict[str, Any] = {}
    for (name, descending, _), value in zip(terms, values, strict=True):
        condition |= Q(**equal, **{f"{name}__{'lt' if descending else 'gt'}": value})
        equal[name] = value
    return condition


def cursor_page(
    queryset: QuerySet[M],
    *,
    ordering: tuple[str, ...],
    cursor: str | None,
    per_page: int,
    target: str,
    label: str = "More",
    swap: str = "beforeend",
    query: dict[str, str] | None = None,
) -> CursorPage[M]:
    """`per_page` rows of `queryset` in `ordering`, after `cursor` (the first page when it is empty
    or does not decode), and the cursor of the next page ("" for the last). One query."""
    terms = _fields(queryset.model, ordering)
    queryset = queryset.order_by(*ordering)
    raw = _decode(cursor, len(terms)) if cursor else None
    condition = _after(terms, raw) if raw is not None else None
    if condition is not None:
        queryset = queryset.filter(condition)
    return _page(
        list(queryset[: per_page + 1]),
        terms,
        per_page=per_page,
        target=target,
        label=label,
        swap=swap,
        query=query,
    )


def cursor_first_page(
    rows: list[M],
    *,
    ordering: tuple[str, ...],
    per_page: int,
    target: str,
    label: str = "More",
    swap: str = "beforeend",
    query: dict[str, str] | None = None,
) -> CursorPage[M]:
    """The first page from its rows read elsewhere: the first `per_page + 1` rows of the list's
    queryset in `ordering` (a `fluxsite.prepared.PreparedQuery` of it, for a page read often)."""
    if not rows:
        return CursorPage(object_list=[], target=target, label=label, swap=swap, query=query or {})
    terms = _fields(type(rows[0]), ordering)
    return _page(rows, terms, per_page=per_page, target=target, label=label, swap=swap, query=query)


def _page(
    rows: list[M],
    terms: list[tuple[str, bool, Any]],
    *,
    per_page: int,
    target: str,
    label: str,
    swap: str,
    query: dict[str, str] | None,
) -> CursorPage[M]:
    next_cursor = ""
    if len(rows) > per_page:
        rows = rows[:per_page]
        next_cursor = _encode([model_field.value_to_string(rows[-1]) for _, _, model_field in terms])
    return CursorPage(
        object_list=rows, next_cursor=next_cursor, target=target, label=label, swap=swap, query=query or {}
    )


def wants_more(request: HttpRequest) -> bool:
    """An htmx request for the next rows of a list (the "more" link), rather than the page."""
    return bool(getattr(request, "htmx", False)) and CURSOR_PARAM in request.GET


def render_list(
    request: HttpRequest, template: str, context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    """The page, or for the "more" link its next rows (the template's `rows` partial) followed by the
    new link, out of band. `context["page"]` is the CursorPage."""
    if not wants_more(request):
        return render(request, template, context, status=status)
    html = render_to_string(f"{template}#rows", context, request) + render_to_string(
        "partials/_more.html", {"page": context["page"], "oob": True}, request
    )
    return HttpResponse(html, status=status)
