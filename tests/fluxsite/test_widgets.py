"""fluxsite.widgets: the same HTML as Django's widget templates, without the template engine."""

from __future__ import annotations

import pytest
from django import forms

from fluxsite.widgets import PlainTextarea
from training.forms import CaptionForm

VALUES = ["", None, "a photo of [trigger]", "<script>alert(\"x\")</script> & 'quotes'", "two\nlines", 42]
ATTRS = [
    None,
    {"rows": 2},
    {"id": "caption-7", "hx-post": "/t/1/?a=1&b=<2>", "hx-trigger": "input changed delay:500ms"},
    {"required": True, "disabled": False, "data-x": None, "placeholder": 'say "hi"'},
]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("attrs", ATTRS)
def test_the_textarea_renders_as_djangos_template_does(value, attrs):
    assert PlainTextarea(attrs).render("caption", value) == forms.Textarea(attrs).render("caption", value)


@pytest.mark.parametrize("data", [None, {"caption": "x" * 1001}, {"caption": "<b>fine</b>"}])
def test_a_bound_field_with_errors_and_field_attributes_renders_the_same(data):
    class Plain(forms.Form):
        caption = forms.CharField(required=True, max_length=1000, widget=PlainTextarea(attrs={"rows": 2}))

    class Templated(forms.Form):
        caption = forms.CharField(required=True, max_length=1000, widget=forms.Textarea(attrs={"rows": 2}))

    plain, templated = (
        Plain(data, initial={"caption": "start"}),
        Templated(data, initial={"caption": "start"}),
    )
    if data:
        plain.is_valid(), templated.is_valid()
    assert str(plain["caption"]) == str(templated["caption"])


def test_the_caption_box_uses_it():
    assert isinstance(CaptionForm.base_fields["caption"].widget, PlainTextarea)
