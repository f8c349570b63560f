"""The generate form (its ranges from the target model's own schema) and the image deletion confirm."""

from __future__ import annotations

from django import forms
from django.urls import reverse

from generations.services.generation import PROMPT_MAX_CHARS

# --- Generating images --------------------------------------------------------------------------------
SEED_MAX = 2_147_483_647


def _number(value: float) -> str:
    return f"{value:g}"


class GenerateForm(forms.Form):
    """A prompt and the settings of a generation; the model is chosen by the view.

    The ranges and choices come from the target's own input schema (`limits`, from
    services.generation_limits): a trained version bounds lora_scale at 2, the base model at 3.
    Without limits (Replicate could not be asked), the narrower of the two known targets applies
    and Replicate's own 422 stays the last word.
    """

    prompt = forms.CharField(
        max_length=PROMPT_MAX_CHARS,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "Describe the image…"}),
        error_messages={
            "required": "Write a prompt.",
            "max_length": "A prompt has at most %(limit_value)d characters (this one has %(show_value)d).",
        },
    )
    aspect_ratio = forms.ChoiceField(
        choices=[
            (r, r) for r in ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
        ],
        initial="1:1",
    )
    num_outputs = forms.IntegerField(min_value=1, max_value=4, initial=1, label="Images")
    lora_scale = forms.FloatField(
        min_value=-1,
        max_value=2,
        initial=1,
        label="LoRA strength",
        widget=forms.NumberInput(attrs={"step": "0.05"}),
    )
    num_inference_steps = forms.IntegerField(min_value=1, max_value=50, initial=28, label="Steps")
    guidance_scale = forms.FloatField(
        min_value=0,
        max_value=10,
        initial=3,
        label="Guidance",
        widget=forms.NumberInput(attrs={"step": "0.1"}),
    )
    seed = forms.IntegerField(
        min_value=0,
        max_value=SEED_MAX,
        required=False,
        help_text="Empty for a random one; the same seed and settings repeat an image.",
    )
    output_format = forms.ChoiceField(
        choices=[("webp", "WebP"), ("jpg", "JPEG"), ("png", "PNG")], initial="webp", label="Format"
    )

    PARAMS = (
        "aspect_ratio",
        "num_outputs",
        "lora_scale",
        "num_inference_steps",
        "guidance_scale",
        "seed",
        "output_format",
    )
    HELP = {
        "lora_scale": "how strongly your model shapes the image.",
        "num_inference_steps": "more is slower and more detailed.",
        "guidance_scale": "how closely to follow the prompt.",
    }

    def __init__(self, *args, limits: dict | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name, spec in (limits or {}).items():
            self._apply(name, spec)
        self._live_preview()
        for name, text in self.HELP.items():
            field = self.fields[name]
            if (
                isinstance(field, forms.IntegerField)
                and field.min_value is not None
                and field.max_value is not None
            ):
                field.help_text = f"{_number(field.min_value)} to {_number(field.max_value)}: {text}"

    def _live_preview(self) -> None:
        """The prompt and the image count refresh the preview (trigger word, cost) as they change:
        on `input`, so a paste or an autocorrection counts too; the limits stay the fields' own."""
        preview = {
            "hx-get": reverse("generations:generate_preview"),
            "hx-target": "#preview",
            "hx-swap": "outerHTML",
        }
        self.fields["prompt"].widget.attrs.update(
            {**preview, "hx-trigger": "input changed delay:300ms", "hx-include": "#id_model, #id_num_outputs"}
        )
        self.fields["num_outputs"].widget.attrs.update(
            {
                **preview,
                "hx-trigger": "change, input changed delay:300ms",
                "hx-include": "#id_model, #id_prompt",
            }
        )

    def _apply(self, name: str, spec) -> None:
        old = self.fields.get(name)
        if old is None:
            return
        if isinstance(old, forms.ChoiceField):
            labels = dict(old.choices)  # type: ignore[arg-type]  # the getter returns normalised (value, label) pairs
            choices = [
                c for c in (spec.choices or ()) if c != "custom"
            ]  # custom needs width/height we do not offer
            if choices:
                old.choices = [(c, labels.get(c, c)) for c in choices]
            return
        if not isinstance(old, forms.IntegerField):  # FloatField subclasses IntegerField
            return
        low = spec.minimum if spec.minimum is not None else old.min_value
        high = spec.maximum if spec.maximum is not None else old.max_value
        cls = (
            forms.FloatField if isinstance(old, forms.FloatField) else forms.IntegerField
        )  # FloatField subclasses IntegerField
        initial = (
            spec.default
            if isinstance(spec.default, int | float) and not isinstance(spec.default, bool)
            else old.initial
        )
        field = cls(
            min_value=low,
            max_value=high,
            initial=initial,
            label=old.label,
            required=old.required,
            widget=type(old.widget)(attrs=dict(old.widget.attrs)),
        )
        self.fields[name] = field

    def params(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.PARAMS}


class ImageDeleteForm(forms.Form):
    confirm = forms.BooleanField(required=True, label="Yes, delete this image")
