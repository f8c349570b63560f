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
        max_length=200, strip=True, label="Hugging Face access token",
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
        help_text="A token with write access, from your Hugging Face settings (Access Tokens).",
    )


# --- Generating images --------------------------------------------------------------------------------
SEED_MAX = 2_147_483_647


class GenerateForm(forms.Form):
    """A prompt and the real ranges of the FLUX LoRA inputs (API_CONTRACTS.md); the model is chosen by the view."""

    prompt = forms.CharField(
        max_length=1000, strip=True, widget=forms.Textarea(attrs={"rows": 4, "placeholder": "Describe the image…"}),
        error_messages={"required": "Write a prompt.",
                        "max_length": "A prompt has at most %(limit_value)d characters (this one has %(show_value)d)."})
    aspect_ratio = forms.ChoiceField(choices=[(r, r) for r in (
        "1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")], initial="1:1")
    num_outputs = forms.IntegerField(min_value=1, max_value=4, initial=1, label="Images")
    lora_scale = forms.FloatField(min_value=-1, max_value=3, initial=1, label="LoRA strength",
                                  widget=forms.NumberInput(attrs={"step": "0.05"}),
                                  help_text="-1 to 3: how strongly your model shapes the image.")
    num_inference_steps = forms.IntegerField(min_value=1, max_value=50, initial=28, label="Steps",
                                             help_text="1 to 50: more is slower and more detailed.")
    guidance_scale = forms.FloatField(min_value=0, max_value=10, initial=3, label="Guidance",
                                      widget=forms.NumberInput(attrs={"step": "0.1"}),
                                      help_text="0 to 10: how closely to follow the prompt.")
    seed = forms.IntegerField(min_value=0, max_value=SEED_MAX, required=False,
                              help_text="Empty for a random one; the same seed and settings repeat an image.")
    output_format = forms.ChoiceField(choices=[("webp", "WebP"), ("jpg", "JPEG"), ("png", "PNG")], initial="webp",
                                      label="Format")

    PARAMS = ("aspect_ratio", "num_outputs", "lora_scale", "num_inference_steps", "guidance_scale", "seed",
              "output_format")

    def params(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.PARAMS}


class ImageDeleteForm(forms.Form):
    confirm = forms.BooleanField(required=True, label="Yes, delete this image")
