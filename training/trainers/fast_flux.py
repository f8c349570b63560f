"""replicate/fast-flux-trainer: a FLUX.1-dev LoRA in about two minutes, few settings.

Schema: sandbox/vendor/replicate/cog/fast-flux-trainer.train.json, from Replicate's own pages only
(the model page's README and the fine-tune guide; no public source): the inputs `input_images`,
`trigger_word`, `lora_type` (subject | style) and `training_steps`. No defaults or bounds were
published: the steps' range below is OURS (conservative, around the guide's "leave it at 1000"),
marked `ours=True` so the page says so, until a pinned version's live `openapi_schema` is read.

Gaps kept as such: the logs' format (none recorded: we read them like flux-fine-tuner's, which
the sandbox imitates and says it invents), and the output's format (assumed a tar with
lora.safetensors like the other Replicate FLUX trainers; publishing reads a tar or a zip).
Generation: the trained version (flux-fine-tuner's predictor, as far as seen), or
black-forest-labs/flux-dev-lora with lora_weights: the FLUX.1-dev base (models_app.bases).
"""

from __future__ import annotations

from typing import Any

from models_app.bases import FLUX_DEV
from training.trainers.base import Setting, Trainer

KEY = "fast-flux"

SETTINGS = (
    Setting(
        "steps",
        "int",
        1000,
        label="Training steps",
        # Ours: no range was published (fast-flux-trainer.train.json has none).
        minimum=500,
        maximum=2000,
        ours=True,
        input_name="training_steps",
        help="500-2000 (our bounds: the trainer publishes none). Replicate's guide: leave it at 1000.",
    ),
)

PRESETS: dict[str, dict[str, Any]] = {
    "standard": {"label": "Standard (the guide's 1000 steps)", "steps": 1000},
    "quick": {"label": "Quick test", "steps": 500},
}


def build_input(job: Any, zip_url: str, params: dict[str, Any]) -> dict[str, Any]:
    # lora_type follows what is trained: the README's "subject" or "style".
    return {
        "input_images": zip_url,
        "trigger_word": job.trigger_word,
        "lora_type": "style" if job.subject_kind == "style" else "subject",
        "training_steps": int(params["steps"]),
    }


MIN_IMAGES = 2  # the guide: "at least 2" (10 a good minimum)


def dataset_problems(job: Any, params: dict[str, Any]) -> dict[str, list[str]]:
    from training.models import DatasetImage

    count = DatasetImage.objects.filter(dataset__training=job).count()
    if count < MIN_IMAGES:
        return {
            "trainer": [
                f"The fast FLUX trainer needs at least {MIN_IMAGES} photos; this dataset has {count}."
            ]
        }
    return {}


TRAINER = Trainer(
    key=KEY,
    label="Fast FLUX LoRA (replicate/fast-flux-trainer)",
    summary="A FLUX.1 [dev] LoRA in about two minutes on 8 H100s: steps only, subject or style.",
    replicate_model="replicate/fast-flux-trainer",
    version_setting="REPLICATE_FAST_FLUX_TRAINER_VERSION",
    schema_source="Replicate's model page and fine-tune guide (no public source): "
    "sandbox/vendor/replicate/cog/fast-flux-trainer.train.json; its ranges are not published",
    base_model=FLUX_DEV,
    dataset_input="input_images",
    output_format="tar",  # assumed (the vendor material does not say)
    progress_label=r"flux_train_replicate",  # assumed (no log of this trainer was recorded)
    uses_trigger_word=True,
    hardware="gpu-h100-8x",
    price_setting="FAST_FLUX_GPU_PRICE_PER_SECOND",
    seconds_per_step_setting="FAST_FLUX_SECONDS_PER_STEP",
    settings=SETTINGS,
    presets=PRESETS,
    build_input=build_input,
    dataset_problems=dataset_problems,
)
