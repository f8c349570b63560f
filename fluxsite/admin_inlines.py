"""An admin inline for a list that grows without bound (a training's events, a wallet's ledger): the
latest rows only, read-only, with a link to all of them in the model's own change list.

Django renders every row of an inline, so a wallet with 10,000 ledger entries would render 10,000
rows on its change page; the formset's queryset is sliced instead (a sliced queryset is what
Django's model formsets read their existing objects from, so nothing else changes).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils.html import format_html


class LatestRowsFormSet(BaseInlineFormSet):
    latest_rows = 50

    def get_queryset(self) -> Any:
        if not hasattr(self, "_latest_queryset"):
            self._latest_queryset = super().get_queryset()[: self.latest_rows]
        return self._latest_queryset


class LatestRowsInline(admin.TabularInline):
    """Read-only; `ordering` must put the latest first. The parent admin shows `all_rows_link`."""

    formset = LatestRowsFormSet
    latest_rows = 50
    extra = 0
    can_delete = False

    def get_formset(self, request: Any, obj: Any = None, **kwargs: Any) -> Any:
        formset: Any = super().get_formset(request, obj, **kwargs)
        formset.latest_rows = self.latest_rows
        return formset

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


def all_rows_link(parent: Model, model: type[Model], fk_name: str, latest: int = 50) -> str:
    """ "The latest 50 of N, all of them here": a link to `model`'s change list filtered on `parent`."""
    count = model._default_manager.filter(**{fk_name: parent}).count()
    meta = model._meta
    url = (
        reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist") + f"?{fk_name}__id__exact={parent.pk}"
    )
    shown = min(count, latest)
    return format_html('{} of {} shown below: <a href="{}">all of them</a>', shown, count, url)
