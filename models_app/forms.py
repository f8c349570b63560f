from __future__ import annotations

from django import forms

from models_app.models import LoraModel


class RenameForm(forms.Form):
    name = forms.CharField(max_length=80, strip=True)


class VisibilityForm(forms.Form):
    visibility = forms.ChoiceField(choices=LoraModel.Visibility.choices)


class DeleteForm(forms.Form):
    delete_hf_repo = forms.BooleanField(required=False, label="Also delete the Hugging Face repository")


class HfAccountForm(forms.Form):
    token = forms.CharField(
        max_length=200,
        strip=True,
        label="Hugging Face access token",
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
        help_text="A token with write access, from your Hugging Face settings (Access Tokens).",
    )


class SuggestedScaleForm(forms.Form):
    """The owner's best strength, one of the sample grid's (checked by lora_suggested_scale_set)."""

    lora_scale = forms.FloatField(min_value=-10, max_value=10)
