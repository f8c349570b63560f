"""Writes of the models app. The pipeline and views import from here.

weights: fetching and checking a training's output; publishing: the LoraModel life cycle;
hf_accounts: users' own Hugging Face tokens; generation: images made with a model and the gallery; model_card: the README.md we publish.
"""

from models_app.services.generation import (
    GenerationError,
    effective_prompt,
    generated_image_delete,
    generation_apply_replicate,
    generation_cancel,
    generation_fail,
    generation_limits,
    generation_start,
    generation_submit,
    generation_sync,
    generation_target,
    generations_reconcile,
    lora_set_cover,
    prompt_suggestions,
)
from models_app.services.hf_accounts import hf_account_connect, hf_account_disconnect
from models_app.services.publishing import (
    LoraStateError,
    lora_delete,
    lora_model_create_from_training,
    lora_publish,
    lora_publish_retry,
    lora_rename,
    lora_set_visibility,
)
from models_app.services.weights import safetensors_check, weights_extract_lora, weights_fetch

__all__ = [
    "GenerationError",
    "effective_prompt",
    "generated_image_delete",
    "generation_apply_replicate",
    "generation_cancel",
    "generation_fail",
    "generation_limits",
    "generation_start",
    "generation_submit",
    "generation_sync",
    "generation_target",
    "generations_reconcile",
    "lora_set_cover",
    "prompt_suggestions",
    "LoraStateError",
    "hf_account_connect",
    "hf_account_disconnect",
    "lora_delete",
    "lora_model_create_from_training",
    "lora_publish",
    "lora_publish_retry",
    "lora_rename",
    "lora_set_visibility",
    "safetensors_check",
    "weights_extract_lora",
    "weights_fetch",
]
