"""Queries whose SQL is compiled once per process and database, then run with new values.

Building and compiling a queryset with annotations costs more than running it: the training page's
one query (three annotations, a correlated subquery among them) took about 1 ms to build and
compile against 0.15 ms to execute on SQLite, the largest single cost of the page (issue 15,
`bench/bench_pages.py --profile training_detail`). A `PreparedQuery` builds its queryset once with
stand-in values for its parameters, keeps the SQL, and afterwards runs that SQL through
`Model.objects.raw()`, which builds the same model instances (database converters applied,
annotations as attributes, the fields the queryset deferred still deferred).

Only for queries of a fixed shape: every call must produce the same SQL with other values (filters
on ids, not `__in` lists whose length varies). Each parameter's stand-in must appear in the compiled
parameters, or building fails at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from django.db import models, router
from django.http import Http404

M = TypeVar("M", bound=models.Model)

# Stand-ins no real id takes (negative, near the bottom of a 64-bit integer).
_STAND_IN_BASE = -(2**62)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class PreparedQuery(Generic[M]):
    """`build(**values)` returns the queryset for those values; `get_or_404(**values)` runs its kept SQL.

    >>> page = PreparedQuery(Training, lambda user_id, pk: Training.objects.filter(owner_id=user_id, pk=pk),
    ...                      "user_id", "pk")
    >>> page.get_or_404(user_id=1, pk=7)
    """

    def __init__(self, model: type[M], build: Callable[..., models.QuerySet[M]], *names: str) -> None:
        self._model = model
        self._build = build
        self._names = names
        self._compiled: dict[str, tuple[str, tuple[str | _Constant, ...]]] = {}
        self._lock = threading.Lock()

    def _sql(self, alias: str) -> tuple[str, tuple[str | _Constant, ...]]:
        kept = self._compiled.get(alias)
        if kept is not None:
            return kept
        with self._lock:
            stand_ins = {name: _STAND_IN_BASE - i for i, name in enumerate(self._names)}
            queryset = self._build(**stand_ins)
            if queryset.model is not self._model:
                raise TypeError(
                    f"prepared query for {self._model.__name__} built a {queryset.model.__name__} query"
                )
            sql, params = queryset.using(alias).query.sql_with_params()
            by_value = {value: name for name, value in stand_ins.items()}
            template = tuple(
                by_value[p] if type(p) is int and p in by_value else _Constant(p) for p in params
            )
            missing = set(self._names) - {t for t in template if isinstance(t, str)}
            if missing:
                raise ValueError(f"prepared query: parameters {sorted(missing)} are not in its SQL")
            kept = (sql, template)
            self._compiled[alias] = kept
        return kept

    def list(self, *, using: str | None = None, **values: object) -> list[M]:
        """The rows for these values, as model instances (what the built queryset would give)."""
        if set(values) != set(self._names):
            raise TypeError(f"prepared query takes {self._names}, got {tuple(values)}")
        if any(type(v) is int and not _INT64_MIN <= v <= _INT64_MAX for v in values.values()):
            return []  # as the ORM answers an id no column can hold (a database would raise)
        alias = using or router.db_for_read(self._model)
        sql, template = self._sql(alias)
        params = [values[t] if isinstance(t, str) else t.value for t in template]
        return list(self._model._default_manager.db_manager(alias).raw(sql, params))

    def get_or_404(self, *, using: str | None = None, **values: object) -> M:
        rows = self.list(using=using, **values)
        if not rows:
            raise Http404(f"No {self._model._meta.verbose_name} matches the given query.")
        return rows[0]


class _Constant:
    """A parameter of the compiled SQL that is not one of the query's values (a literal)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value
