"""Form widgets rendered in Python rather than through the template engine, for pages that show many.

Django renders every widget through a template (`django/forms/widgets/textarea.html` and the
`attrs.html` it includes): about 0.2 ms a widget here, so the dataset page's 50 caption boxes cost
about 11 ms of a 20-25 ms page, and the grid is rendered again after every upload. These widgets
produce the same HTML as Django's templates, byte for byte (tests/fluxsite/test_widgets.py compares
them), from the same `get_context()`; validation and everything else stay Django's.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.html import format_html
from django.utils.safestring import SafeString


def _attrs_html(attrs: dict[str, Any]) -> SafeString:
    """What `django/forms/widgets/attrs.html` renders: False drops the attribute, True leaves its name."""
    html = SafeString()
    for name, value in attrs.items():
        if value is True:
            html += format_html(" {}", name)
        elif value is not False:
            html += format_html(' {}="{}"', name, str(value))
    return html


class PlainTextarea(forms.Textarea):
    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        widget = self.get_context(name, value, attrs)["widget"]
        return format_html(
            '<textarea name="{}"{}>\n{}</textarea>',
            widget["name"],
            _attrs_html(widget["attrs"]),
            widget["value"] or "",
        )
