"""Writes of the models app. The pipeline, the generations app and views import from here.

weights: fetching and checking a training's output; publishing: the LoraModel life cycle and its
showcase; hf_accounts: users' own Hugging Face tokens; model_card: the README.md we publish.
"""

from models_app.services.hf_accounts import hf_account_connect, hf_account_disconnect
from models_app.services.publishing import (
    LoraStateError,
    lora_card_publish,
    lora_cover_set,
    lora_delete,
    lora_model_create_from_training,
    lora_publish,
    lora_publish_retry,
    lora_rename,
    lora_set_visibility,
    lora_showcase_add,
    lora_showcase_remove,
)
from models_app.services.sample_grid import lora_sample_grid_set, lora_suggested_scale_set
from models_app.services.weights import (
    TarCaptions,
    safetensors_check,
    weights_extract_lora,
    weights_read_captions,
)

__all__ = [
    "LoraStateError",
    "hf_account_connect",
    "hf_account_disconnect",
    "lora_cover_set",
    "lora_delete",
    "lora_model_create_from_training",
    "lora_card_publish",
    "lora_publish",
    "lora_publish_retry",
    "lora_rename",
    "lora_set_visibility",
    "lora_showcase_add",
    "lora_showcase_remove",
    "lora_sample_grid_set",
    "lora_suggested_scale_set",
    "safetensors_check",
    "weights_extract_lora",
    "weights_read_captions",
    "TarCaptions",
]
