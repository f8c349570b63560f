from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.core.validators import RegexValidator

from fluxsite.widgets import PlainTextarea
from training.models import CaptionBatch, DatasetImage, TrainingJob
from training.services.captions import FIND_MAX
from training.services.samples import SampleGridError, sample_prompts_parse
from training.trainers import flux_dev
from training.trainers.base import Setting
from training.trainers.registry import DEFAULT as DEFAULT_TRAINER
from training.trainers.registry import trainer_choices, trainer_get

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

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if not data.get("trigger_word") and data.get("name") and "trigger_word" not in self.errors:
            data["trigger_word"] = trigger_word_suggest(data["name"])
        return data


class CaptionForm(forms.Form):
    caption = forms.CharField(
        required=False,
        max_length=1000,
        # Rendered in Python (fluxsite.widgets): the dataset page shows up to 50 of them.
        widget=PlainTextarea(attrs={"rows": 2}),
        error_messages={"max_length": "Too long: at most %(limit_value)d characters"},
    )

    @classmethod
    def for_image(cls, image: DatasetImage, *, save_url: str) -> CaptionForm:
        """The caption editor of one photo in the grid: its own id, saved as it is typed
        (`input`, which paste and autocorrect fire too; `keyup` misses them)."""
        form = cls(initial={"caption": image.caption})
        form.fields["caption"].widget.attrs.update(
            {
                "id": f"caption-{image.pk}",
                "hx-post": save_url,
                "hx-trigger": "input changed delay:500ms",
                "hx-target": "next .caption-status",
                "hx-swap": "outerHTML",
            }
        )
        return form


class CaptionTemplateForm(forms.Form):
    template = forms.CharField(
        required=False,
        max_length=500,
        help_text="<code>[trigger]</code> stands for your trigger word.",
    )


class CaptionReplaceForm(forms.Form):
    """Find and replace across a dataset's captions: plain text, never a pattern."""

    find = forms.CharField(max_length=FIND_MAX, strip=False, label="Find")
    replace = forms.CharField(max_length=FIND_MAX, required=False, strip=False, label="Replace with")
    case_sensitive = forms.BooleanField(required=False, initial=True, label="Match case")
    expected = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)


class CaptionImportForm(forms.Form):
    file = forms.FileField(
        label="Captions file",
        help_text="A ZIP of <code>.txt</code> files or a CSV (<code>file,caption</code>), named like the photos, "
        "as the downloads are.",
        widget=forms.ClearableFileInput(attrs={"accept": ".zip,.csv,.txt,application/zip,text/csv"}),
    )


# --- Training parameters (the trainer's defaults and ranges, docs/vendors.md) -------------------------------
OPTIMIZERS = ["adamw8bit", "prodigy", "adam8bit", "lion8bit", "adam", "adamw", "lion", "adagrad", "adafactor"]
RESOLUTIONS = [
    ("512,768,1024", "Mixed 512, 768, 1024 (recommended)"),
    ("1024", "1024 only"),
    ("512", "512 only"),
    ("512,768", "512 and 768"),
]
PRESETS: dict[str, dict] = flux_dev.PRESETS  # the FLUX.1-dev trainer's (training/trainers/flux_dev.py)


# The trainer's bounds. Written once: the fields below hold them, and the page (its inputs, help
# texts and the cost estimate's hint) reads them from the fields.
STEPS_MIN, STEPS_MAX = 3, 6000
LORA_RANK_MIN, LORA_RANK_MAX = 1, 128


class _SamplePromptsMixin:
    """What every trainer's parameters form shares: the sample prompts, the live estimate's
    attributes, and `params()` (the cleaned data without the preset)."""

    fields: dict[str, forms.Field]
    cleaned_data: dict[str, Any]
    ESTIMATE_INCLUDE = "[name=steps], [name=sample_prompts]"

    def _sample_prompts_setup(self, estimate_url: str) -> None:
        prompts = self.fields["sample_prompts"]
        prompts.help_text = str(prompts.help_text).replace("SAMPLE_MAX", str(settings.SAMPLE_GRID_PROMPTS))
        if estimate_url:  # the cost beside the form follows the steps and the prompts as they are typed
            for name in ("steps", "sample_prompts"):
                self.fields[name].widget.attrs.update(
                    {
                        "hx-get": estimate_url,
                        "hx-trigger": "change, input changed delay:400ms",
                        "hx-target": "#estimate",
                        "hx-swap": "outerHTML",
                        "hx-include": self.ESTIMATE_INCLUDE,
                    }
                )

    def clean_sample_prompts(self) -> list[str]:
        try:
            return sample_prompts_parse(self.cleaned_data.get("sample_prompts") or "")
        except SampleGridError as exc:
            raise forms.ValidationError(str(exc)) from None

    def params(self) -> dict:
        data = dict(self.cleaned_data)
        data.pop("preset", None)
        return data


def _sample_prompts_field() -> forms.CharField:
    return forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Sample prompts",
        help_text="One a line, at most SAMPLE_MAX. After training, each is drawn at several LoRA "
        "strengths (0 is the base model, for comparison) with one seed; included in the price. "
        "Leave empty for no samples.",
    )


class TrainingParamsForm(_SamplePromptsMixin, forms.Form):
    """The FLUX.1-dev trainer's settings (training/trainers/flux_dev.py)."""

    preset = forms.ChoiceField(
        choices=[("", "Custom")] + [(k, v["label"]) for k, v in PRESETS.items()], required=False
    )
    steps = forms.IntegerField(
        min_value=STEPS_MIN,
        max_value=STEPS_MAX,
        initial=1000,
        help_text=f"{STEPS_MIN}-{STEPS_MAX}. About 1000 for a person, 1500+ for a style.",
    )
    learning_rate = forms.FloatField(
        min_value=1e-6, max_value=1e-2, initial=4e-4, help_text="Default 0.0004."
    )
    lora_rank = forms.IntegerField(
        min_value=LORA_RANK_MIN,
        max_value=LORA_RANK_MAX,
        initial=16,
        label="LoRA rank",
        help_text=f"{LORA_RANK_MIN}-{LORA_RANK_MAX}. Higher learns more detail and makes bigger files.",
    )
    batch_size = forms.IntegerField(min_value=1, max_value=8, initial=1)
    resolution = forms.ChoiceField(choices=RESOLUTIONS, initial="512,768,1024")
    optimizer = forms.ChoiceField(choices=[(o, o) for o in OPTIMIZERS], initial="adamw8bit")
    caption_dropout_rate = forms.FloatField(
        min_value=0, max_value=1, initial=0.05, help_text="Share of steps trained without captions (0-1)."
    )
    autocaption = forms.BooleanField(
        required=False,
        initial=True,
        help_text="Let the trainer caption the photos that have no caption of yours (it never "
        "touches the others).",
    )
    # The trainer gives these to its captioner (LLaVA) as instructions, not as text to add
    # (sandbox/vendor/replicate/flux-fine-tuner-captions.md).
    autocaption_prefix = forms.CharField(
        required=False,
        max_length=200,
        help_text="How the trainer's captions should start, e.g. “a photo of TOK,”.",
    )
    autocaption_suffix = forms.CharField(
        required=False, max_length=200, help_text="How the trainer's captions should end."
    )

    # The sample grid made after the training (training.services.samples): its prompts, each shown
    # at several strengths. Prefilled from the dataset's captions and the subject or style kind.
    sample_prompts = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Sample prompts",
        help_text="One a line, at most SAMPLE_MAX. After training, each is drawn at several LoRA "
        "strengths (0 is the base model, for comparison) with one seed; included in the price. "
        "Leave empty for no samples.",
    )

    def __init__(self, *args: Any, estimate_url: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sample_prompts_setup(estimate_url)


class TrainerParamsForm(_SamplePromptsMixin, forms.Form):
    """The base of the forms made from a trainer's registry entry (trainer_params_form)."""

    trainer_key = ""
    ESTIMATE_INCLUDE = "[name=steps], [name=sample_prompts], [name=trainer]"

    def __init__(self, *args: Any, estimate_url: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sample_prompts_setup(estimate_url)


def _setting_field(setting: Setting) -> forms.Field:
    common: dict[str, Any] = {
        "label": setting.label or setting.name.replace("_", " ").capitalize(),
        "help_text": setting.help,
        "initial": setting.default,
        "required": setting.required,
    }
    if setting.kind == "int":
        return forms.IntegerField(
            min_value=None if setting.minimum is None else int(setting.minimum),
            max_value=None if setting.maximum is None else int(setting.maximum),
            **common,
        )
    if setting.kind == "float":
        return forms.FloatField(min_value=setting.minimum, max_value=setting.maximum, **common)
    if setting.kind == "choice":
        coerce: Callable[[Any], Any] = int if isinstance(setting.default, int) else str
        return forms.TypedChoiceField(choices=[(c, str(c)) for c in setting.choices], coerce=coerce, **common)
    return forms.CharField(max_length=500, **common)


def trainer_params_form(key: str) -> type[TrainingParamsForm] | type[TrainerParamsForm]:
    """The start page's parameters form of trainer `key`: TrainingParamsForm for FLUX.1-dev (its
    page is unchanged), otherwise a form made from the registry entry's settings and presets,
    with the entry's bounds (so a setting out of that trainer's range is a field error)."""
    trainer = trainer_get(key)
    if trainer.key == flux_dev.KEY:
        return TrainingParamsForm
    fields: dict[str, Any] = {
        "preset": forms.ChoiceField(
            choices=[("", "Custom")] + [(k, v["label"]) for k, v in trainer.presets.items()], required=False
        )
    }
    fields.update({s.name: _setting_field(s) for s in trainer.settings})
    fields["sample_prompts"] = _sample_prompts_field()
    name = "".join(part.capitalize() for part in trainer.key.split("-")) + "ParamsForm"
    return type(name, (TrainerParamsForm,), {**fields, "trainer_key": trainer.key})


class TrainerChoiceForm(forms.Form):
    """The trainer picked on the start page (a hidden input beside the parameters)."""

    trainer = forms.ChoiceField(choices=trainer_choices, initial=DEFAULT_TRAINER)


def params_initial(
    *,
    preset: str = "",
    saved: dict | None = None,
    sample_prompts: list[str] | None = None,
    trainer: str = DEFAULT_TRAINER,
) -> dict:
    """The start form's first values: a chosen preset of `trainer`, else the training's saved
    settings, else defaults; the sample prompts are the saved ones, else `sample_prompts` (a preset
    keeps them)."""
    saved = dict(saved or {})
    prompts = saved.get("sample_prompts") if isinstance(saved.get("sample_prompts"), list) else sample_prompts
    extra = {"sample_prompts": "\n".join(prompts)} if prompts is not None else {}
    presets = trainer_get(trainer).presets
    if preset in presets:
        values = {k: v for k, v in presets[preset].items() if k != "label"}
        return {"preset": preset, **values, **extra}
    saved.pop("sample_prompts", None)
    return {**saved, **extra}


class TrainingFilterForm(forms.Form):
    """The history list's controls; anything unknown falls back to the default."""

    status = forms.ChoiceField(
        required=False,
        choices=[
            ("all", "All"),
            ("active", "Active"),
            ("succeeded", "Succeeded"),
            ("failed", "Failed"),
            ("canceled", "Canceled"),
            ("draft", "Draft"),
        ],
    )
    q = forms.CharField(
        required=False,
        max_length=80,
        label="Search",
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Name or trigger word"}),
    )
    sort = forms.ChoiceField(
        required=False,
        choices=[("newest", "Newest first"), ("oldest", "Oldest first"), ("name", "Name")],
        label="Sort",
    )

    DEFAULTS = {"status": "all", "query": "", "sort": "newest"}  # what values() gives for no filter

    def values(self) -> dict:
        data = self.cleaned_data if self.is_valid() else {}
        return {
            "status": data.get("status") or self.DEFAULTS["status"],
            "query": data.get("q") or self.DEFAULTS["query"],
            "sort": data.get("sort") or self.DEFAULTS["sort"],
        }


class CaptionBatchForm(forms.Form):
    """The "caption all photos" form: which photos, what to do with existing captions, how to write."""

    photos = forms.ChoiceField(
        choices=[("empty", "Only photos without a caption of their own"), ("all", "All photos")],
        initial="empty",
    )
    mode = forms.ChoiceField(
        label="Existing captions", choices=CaptionBatch.Mode.choices, initial=CaptionBatch.Mode.KEEP
    )
    style = forms.ChoiceField(choices=CaptionBatch.Style.choices, initial=CaptionBatch.Style.NATURAL)
    trigger_placement = forms.ChoiceField(
        label="Trigger word",
        choices=CaptionBatch.TriggerPlacement.choices,
        initial=CaptionBatch.TriggerPlacement.START,
    )
    trigger_template = forms.CharField(
        label="Template",
        required=False,
        max_length=200,
        help_text="With [trigger] and [caption], e.g. “a photo of [trigger], [caption]”.",
    )
    model = forms.ChoiceField(label="Captioning model", choices=())
    purpose = forms.ChoiceField(
        choices=CaptionBatch.Purpose.choices,
        initial=CaptionBatch.Purpose.CAPTION,
        required=False,
        widget=forms.HiddenInput,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from training.captioning_models import model_choices

        field = self.fields["model"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = model_choices()  # the pinned models, read when the form is made
        field.initial = settings.CAPTION_DEFAULT_MODEL
