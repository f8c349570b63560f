"""Writes of the generations app: generation.py holds the life of a generation and its images."""

from generations.services.generation import (
    GenerationError,
    effective_prompt,
    generated_image_delete,
    generated_image_upscale,
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
    prediction_request,
    prompt_suggestions,
)

__all__ = [
    "GenerationError",
    "effective_prompt",
    "generated_image_delete",
    "generated_image_upscale",
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
    "prediction_request",
    "prompt_suggestions",
]
