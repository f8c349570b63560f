"""`{{ when|when }}` (or `|when:"seconds"` in logs) and `{{ seconds|duration }}`: one time format
and one duration format on every page (fluxsite/units.py); sizes use Django's `filesizeformat`."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils.safestring import SafeString

from fluxsite.units import duration_text, time_html

register = template.Library()


@register.filter
def when(value: datetime | None, precision: str = "") -> SafeString | str:
    return time_html(value, seconds=precision == "seconds")


@register.filter
def duration(seconds: float | int | None) -> str:
    return duration_text(seconds)
