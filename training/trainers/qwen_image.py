"""qwen/qwen-image-lora-trainer: a Qwen-Image LoRA (ai-toolkit underneath), zip output.

Schema: sandbox/vendor/replicate/cog/qwen-image-lora-trainer.train.json, from the source,
github.com/replicate/qwen-image-lora-trainer train.py train() @ 09386ee7; the ranges and
defaults below are copied from it (tests/training/test_trainers.py compares them with the file).
Gap: a later README of that repository gives defaults rank 32 and lr 5e-4; main's are kept.

Our dataset onto its inputs: `dataset` = our zip (flat `img_001.jpg` + `img_001.txt`, which
extract_dataset() reads: top-level .jpg/.png/.webp). There is no trigger word and no
autocaption: a photo without a .txt gets `default_caption` verbatim, and the README asks for
descriptive words, not rare tokens. So our trigger word is the subject's name, and every caption
of ours and the default caption must contain it; a dataset that does not is refused on the start
page (a field error), never sent to a paid run.

Logs: ai-toolkit's bar labelled with the job name `qwen_lora_<unix time>`. Output: `{weights}`, a
zip with lora.safetensors, settings.txt and config.yaml (no captions). Generation: the trained
version running the repo's predict.py, given `replicate_weights` (models_app.bases, Qwen-Image).
"""

from __future__ import annotations

import re
from typing import Any

from models_app.bases import QWEN_IMAGE
from training.trainers.base import Setting, Trainer

KEY = "qwen-image"

DEFAULT_CAPTION = "A photo of [trigger]"

SETTINGS = (
    Setting("steps", "int", 1000, label="Steps", minimum=100, maximum=6000, help="100-6000. Default 1000."),
    Setting(
        "learning_rate",
        "float",
        0.0002,
        label="Learning rate",
        minimum=1e-05,
        maximum=0.001,
        help="0.00001-0.001. Default 0.0002.",
    ),
    Setting(
        "lora_rank",
        "int",
        64,
        label="LoRA rank",
        minimum=8,
        maximum=128,
        help="8-128 (alpha = rank). Default 64.",
    ),
    Setting("batch_size", "choice", 1, label="Batch size", choices=(1, 2, 4)),
    Setting(
        "optimizer",
        "choice",
        "adamw",
        label="Optimizer",
        choices=("adamw8bit", "adamw", "adam8bit", "prodigy"),
    ),
    Setting(
        "default_caption",
        "text",
        DEFAULT_CAPTION,
        label="Caption for photos without one",
        help="Written as is for every photo without a caption of yours; it must name your subject "
        "([trigger] stands for it). Qwen learns descriptive words, not rare tokens.",
    ),
)

PRESETS: dict[str, dict[str, Any]] = {
    "subject": {"label": "Portrait / subject", "steps": 1000, "learning_rate": 0.0002, "lora_rank": 64},
    "style": {"label": "Style", "steps": 1500, "learning_rate": 0.0002, "lora_rank": 64},
    "quick": {"label": "Quick test", "steps": 300, "learning_rate": 0.0003, "lora_rank": 16},
}

TRIGGER_TOKEN = "[trigger]"


def _names(text: str, name: str) -> bool:
    text = text.replace(TRIGGER_TOKEN, name)
    return bool(re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE))


def build_input(job: Any, zip_url: str, params: dict[str, Any]) -> dict[str, Any]:
    caption = str(params.get("default_caption") or DEFAULT_CAPTION).replace(TRIGGER_TOKEN, job.trigger_word)
    return {
        "dataset": zip_url,
        "steps": int(params["steps"]),
        "learning_rate": float(params["learning_rate"]),
        "lora_rank": int(params["lora_rank"]),
        "batch_size": int(params["batch_size"]),
        "optimizer": str(params["optimizer"]),
        "default_caption": caption,
    }


# Rare tokens the README warns against ("Do NOT use abstract tokens like 'TOK', 'sks'"), and our
# own suggestion's prefix: a Qwen model needs a real word or name.
ABSTRACT = re.compile(r"^(tok|sks|ohwx(_.*)?)$", re.IGNORECASE)


def dataset_problems(job: Any, params: dict[str, Any]) -> dict[str, list[str]]:
    from training.models import DatasetImage

    problems: dict[str, list[str]] = {}
    name = job.trigger_word
    if ABSTRACT.match(name):
        problems.setdefault("trainer", []).append(
            f"Qwen-Image learns descriptive words, not rare tokens like “{name}”: make a new training "
            "whose trigger word is your subject's name (e.g. Sabrina)."
        )
    captions = list(DatasetImage.objects.filter(dataset__training=job).values_list("caption", flat=True))
    missing = sum(1 for c in captions if c and not _names(c, name))
    if missing:
        problems.setdefault("trainer", []).append(
            f"{missing} caption{'s' if missing != 1 else ''} do not name “{name}”: the Qwen trainer has no "
            "trigger word, so every caption must contain it (or [trigger])."
        )
    caption = str(params.get("default_caption") or "")
    if any(not c for c in captions) and not _names(caption, name):
        problems.setdefault("default_caption", []).append(
            f"Photos without a caption get this one: it must contain “{name}” or [trigger]."
        )
    return problems


TRAINER = Trainer(
    key=KEY,
    label="Qwen-Image LoRA (qwen/qwen-image-lora-trainer)",
    summary="A LoRA for Qwen-Image: descriptive captions instead of a trigger token, 15-30 minutes.",
    replicate_model="qwen/qwen-image-lora-trainer",
    version_setting="REPLICATE_QWEN_TRAINER_VERSION",
    schema_source="replicate/qwen-image-lora-trainer train.py @ 09386ee7 "
    "(sandbox/vendor/replicate/cog/qwen-image-lora-trainer.train.json)",
    base_model=QWEN_IMAGE,
    dataset_input="dataset",
    output_format="zip",
    progress_label=r"qwen_lora_\d+",
    uses_trigger_word=False,
    hardware="gpu-h100",  # its README; a user reports gpu-h200 (no price known): a gap
    price_setting="QWEN_GPU_PRICE_PER_SECOND",
    seconds_per_step_setting="QWEN_SECONDS_PER_STEP",
    settings=SETTINGS,
    presets=PRESETS,
    build_input=build_input,
    dataset_problems=dataset_problems,
    trigger_help="For Qwen the trigger word is your subject's name, written in every caption.",
)
