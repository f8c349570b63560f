"""ostris/flux-dev-lora-trainer: today's FLUX.1-dev trainer, unchanged.

Schema: sandbox/vendor/replicate/cog/flux-dev-lora-trainer.train.json (replicate/flux-fine-tuner
train.py at 3dd14e37). Its settings, presets and the page's form are still training.forms'
TrainingParamsForm and PRESETS (the form is the one copy of its bounds); the estimate is
billing.pricing.training_cost_* (GPU_PRICE_PER_SECOND × TRAINER_SECONDS_PER_STEP), as before.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing.pricing import training_cost_credits, training_cost_dollars
from models_app.bases import FLUX_DEV
from training.selectors import dataset_caption_plan
from training.trainers.base import Setting, Trainer

KEY = "flux-dev"

# The settings are listed for the registry (what the trainer takes); the form of this trainer is
# TrainingParamsForm, whose fields hold the same bounds.
SETTINGS = (
    Setting("steps", "int", 1000, minimum=3, maximum=6000),
    Setting("learning_rate", "float", 4e-4),
    Setting("lora_rank", "int", 16, minimum=1, maximum=128),
    Setting("batch_size", "int", 1),
    Setting("resolution", "choice", "512,768,1024"),
    Setting("optimizer", "choice", "adamw8bit"),
    Setting("caption_dropout_rate", "float", 0.05, minimum=0, maximum=1),
)

ALLOWED = (
    "steps",
    "learning_rate",
    "lora_rank",
    "batch_size",
    "resolution",
    "optimizer",
    "autocaption",
    "autocaption_prefix",
    "autocaption_suffix",
    "caption_dropout_rate",
)


def build_input(job: Any, zip_url: str, params: dict[str, Any]) -> dict[str, Any]:
    data = {k: params[k] for k in ALLOWED if k in params and params[k] not in ("", None)}
    data.update(input_images=zip_url, trigger_word=job.trigger_word)
    # Our captions are in the ZIP; the trainer's autocaption skips every photo with a .txt and
    # captions the others (sandbox/vendor/replicate/flux-fine-tuner-captions.md). So it is on only
    # when some photo has no caption of ours, and the person has not turned it off.
    plan = dataset_caption_plan(job.dataset, autocaption=bool(params.get("autocaption", True)))
    data["autocaption"] = plan.autocaption_input
    return data


class _FluxDev(Trainer):
    """The estimate stays billing.pricing's training_cost_*, exactly as before the registry."""

    def cost_dollars(self, *, steps: int) -> Decimal:
        return training_cost_dollars(steps=steps)

    def cost_credits(self, *, steps: int) -> int:
        return training_cost_credits(steps=steps)


# The start page's presets of this trainer (training.forms re-exports them as PRESETS).
PRESETS: dict[str, dict[str, Any]] = {
    "subject": {
        "label": "Portrait / subject",
        "steps": 1000,
        "learning_rate": 0.0004,
        "lora_rank": 16,
        "caption_dropout_rate": 0.05,
    },
    "style": {
        "label": "Style",
        "steps": 1500,
        "learning_rate": 0.0003,
        "lora_rank": 32,
        "caption_dropout_rate": 0.1,
    },
    "quick": {
        "label": "Quick test",
        "steps": 300,
        "learning_rate": 0.0005,
        "lora_rank": 8,
        "caption_dropout_rate": 0.05,
    },
}


TRAINER = _FluxDev(
    key=KEY,
    label="FLUX.1-dev LoRA (ostris/flux-dev-lora-trainer)",
    summary="The full FLUX.1 [dev] trainer: every setting, about 20 minutes for 1000 steps.",
    replicate_model="ostris/flux-dev-lora-trainer",
    version_setting="REPLICATE_TRAINER_VERSION",
    schema_source="replicate/flux-fine-tuner train.py @ 3dd14e37 "
    "(sandbox/vendor/replicate/cog/flux-dev-lora-trainer.train.json)",
    base_model=FLUX_DEV,
    dataset_input="input_images",
    output_format="tar",
    progress_label=r"flux_train_replicate",
    uses_trigger_word=True,
    hardware="gpu-h100",
    price_setting="GPU_PRICE_PER_SECOND",
    seconds_per_step_setting="TRAINER_SECONDS_PER_STEP",
    settings=SETTINGS,
    presets=PRESETS,
    build_input=build_input,
    model_setting="REPLICATE_TRAINER_MODEL",
)
