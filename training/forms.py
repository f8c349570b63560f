from __future__ import annotations

import re

from django import forms
from django.core.validators import RegexValidator

from training.models import TrainingJob

TRIGGER_RE = r"^[A-Za-z0-9_]{2,32}$"


def trigger_word_suggest(name: str) -> str:
    """`ohwx_<name>`: a rare token the base model has no meaning for, plus something memorable."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:27]
    return f"ohwx_{slug}" if slug else "ohwx_subject"


class TrainingCreateForm(forms.Form):
    name = forms.CharField(max_length=80, widget=forms.TextInput(attrs={"autofocus": True}))
    trigger_word = forms.CharField(
        required=False,
        max_length=32,
        validators=[
            RegexValidator(
                TRIGGER_RE,
                "Use a single word of 2-32 letters, digits or underscores (no spaces), like ohwx_anna.",
            )
        ],
        help_text="One word you will put in prompts to call up your subject, e.g. <code>ohwx_anna</code>. "
        "Leave empty to use <code>ohwx_</code> followed by the name.",
    )
    subject_kind = forms.ChoiceField(
        choices=TrainingJob.SubjectKind.choices,
        initial=TrainingJob.SubjectKind.SUBJECT,
        widget=forms.RadioSelect,
        label="What to train",
    )
    description = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))

    def clean(self) -> dict:
        data = super().clean()
        if not data.get("trigger_word") and data.get("name") and "trigger_word" not in self.errors:
            data["trigger_word"] = trigger_word_suggest(data["name"])
        return data


class CaptionForm(forms.Form):
    caption = forms.CharField(required=False, max_length=1000)


class CaptionTemplateForm(forms.Form):
    template = forms.CharField(
        required=False,
        max_length=500,
        help_text="<code>[trigger]</code> stands for your trigger word.",
    )
