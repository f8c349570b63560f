"""The generate form (its ranges from the target model's own schema) and the image deletion confirm."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from generations.services.generation import PROMPT_MAX_CHARS, UPSCALE_SCALES

# --- Generating images --------------------------------------------------------------------------------
SEED_MAX = 2_147_483_647


def _number(value: float) -> str:
    return f"{value:g}"


class RangeInput(forms.NumberInput):
    """A slider (kept as its own class: the limits rebuild a field with the same widget class)."""

    input_type = "range"


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
    # Starting from an image: uploaded, or one of the person's own gallery images (`source_image`), a
    # photo of one of their datasets (`staged`), or the stored input of an earlier generation
    # (`reuse`, "again with this seed").
    input_image = forms.FileField(
        required=False,
        label="Start from an image",
        help_text="JPEG, PNG or WebP. Leave empty to make an image from the prompt alone.",
        widget=forms.ClearableFileInput(attrs={"accept": "image/jpeg,image/png,image/webp"}),
    )
    source_image = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    # An InputImage: a photo of the person's dataset, handed over by the training app.
    staged = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    reuse = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    # The mask tool (static/js/mask-canvas.js) writes its PNG here: white is repainted, black kept.
    mask = forms.FileField(
        required=False,
        label="Mask",
        widget=forms.FileInput(attrs={"accept": "image/png", "data-mask-input": ""}),
    )
    prompt_strength = forms.FloatField(
        min_value=0,
        max_value=1,
        initial=0.8,
        required=False,
        label="How much to change it",
        widget=RangeInput(attrs={"step": "0.05"}),
    )
    # A second LoRA of the person's own (the view 404s anyone else's id before the form runs).
    extra_model = forms.IntegerField(required=False, label="Second LoRA", widget=forms.Select)
    extra_lora_scale = forms.FloatField(
        min_value=-1,
        max_value=2,
        initial=1,
        required=False,
        label="Second LoRA strength",
        widget=forms.NumberInput(attrs={"step": "0.05"}),
    )

    PARAMS = (
        "aspect_ratio",
        "num_outputs",
        "lora_scale",
        "num_inference_steps",
        "guidance_scale",
        "seed",
        "output_format",
        "prompt_strength",
        "extra_lora_scale",
    )
    SETTINGS = (  # shown under Settings; the image and the second LoRA have their own sections
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

    def __init__(
        self, *args, limits: dict | None = None, extra_choices: list[tuple[str, str]] | None = None, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        for name, spec in (limits or {}).items():
            self._apply(name, spec)
        # What the target takes, from its schema: without the knowledge (Replicate not asked) all
        # is offered and the service or Replicate's own 422 refuses.
        self.takes_image = not limits or "input_image" in limits
        self.takes_mask = not limits or "mask" in limits
        self.takes_extra = not limits or "extra_model" in limits
        self.fields["extra_model"].widget.choices = [("", "None"), *(extra_choices or [])]
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

    @property
    def settings_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.SETTINGS]

    def _file_within_limit(self, name: str, what: str):
        upload = self.cleaned_data.get(name)
        limit = int(settings.GENERATION_INPUT_MAX_BYTES)
        if upload and upload.size > limit:
            raise forms.ValidationError(
                f"{what} is {filesizeformat(upload.size)}; the most we take is {filesizeformat(limit)}."
            )
        return upload

    def clean_input_image(self):
        return self._file_within_limit("input_image", "The image")

    def clean_mask(self):
        return self._file_within_limit("mask", "The mask")

    def clean(self):
        data = super().clean() or {}
        starts_from_image = bool(
            data.get("input_image") or data.get("source_image") or data.get("staged") or data.get("reuse")
        )
        if data.get("mask") and not self.takes_mask:
            self.add_error(
                "mask",
                "This model cannot inpaint: the model it runs on has no mask input. Clear the mask, "
                "or use a model with its own trained version.",
            )
        if starts_from_image and not self.takes_image:
            self.add_error("input_image", "This model cannot start from an image.")
        if data.get("extra_model") and not self.takes_extra:
            self.add_error("extra_model", "This model cannot take a second LoRA.")
        if starts_from_image and data.get("prompt_strength") is None and "prompt_strength" not in self.errors:
            data["prompt_strength"] = self.fields["prompt_strength"].initial
        if (
            data.get("extra_model")
            and data.get("extra_lora_scale") is None
            and "extra_lora_scale" not in self.errors
        ):
            data["extra_lora_scale"] = self.fields["extra_lora_scale"].initial
        return data

    def params(self) -> dict:
        return {name: self.cleaned_data.get(name) for name in self.PARAMS}

    @staticmethod
    def read(upload) -> bytes | None:
        """An uploaded file's bytes (None when none was sent)."""
        if not upload:
            return None
        upload.seek(0)
        return upload.read()


class UpscaleForm(forms.Form):
    scale = forms.TypedChoiceField(
        coerce=int,
        choices=[(s, f"{s}×") for s in UPSCALE_SCALES],
        initial=UPSCALE_SCALES[0],
        label="Upscale by",
    )
    face_enhance = forms.BooleanField(required=False, label="Also enhance faces (GFPGAN)")


class CompareForm(forms.Form):
    """Two to four of the person's own gallery images (the view 404s anyone else's)."""

    images = forms.TypedMultipleChoiceField(coerce=int, choices=(), required=True)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        values = self.data.getlist("images") if hasattr(self.data, "getlist") else self.data.get("images", [])
        field = self.fields["images"]
        assert isinstance(field, forms.TypedMultipleChoiceField)
        field.choices = [(v, v) for v in values if str(v).isdigit()]
        self.fields["images"].error_messages["required"] = "Pick two to four images to compare."

    def clean_images(self) -> list[int]:
        ids = list(dict.fromkeys(self.cleaned_data["images"]))
        if not 2 <= len(ids) <= 4:
            raise forms.ValidationError(f"Pick two to four images to compare ({len(ids)} picked).")
        return ids


class ImageDeleteForm(forms.Form):
    confirm = forms.BooleanField(required=True, label="Yes, delete this image")
