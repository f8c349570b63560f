"""A model's sample grid (prompts × LoRA strengths), written by the training app, and the strength
its owner suggests from it.

The training app makes the grid's images (training.services.samples) and keeps a copy of the grid
here, on the model (LoraModel.sample_grid), like the showcase: the model page, the cover and the
Hugging Face card read it without this app reading the training's tables.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from models_app.models import LoraModel
from models_app.selectors import grid_cover_cell
from models_app.services.publishing import LoraStateError

logger = logging.getLogger(__name__)


def lora_sample_grid_set(*, model_id: int, grid: dict[str, Any]) -> None:
    """Keep the grid on the model; its image becomes the cover when the model has none."""
    with transaction.atomic():
        model = LoraModel.objects.select_for_update().filter(pk=model_id).first()
        if model is None:
            return
        model.sample_grid = grid
        fields = ["sample_grid", "updated_at"]
        if not model.cover_image_name:
            cell = grid_cover_cell(grid, lora_scale=model.suggested_lora_scale)
            if cell is not None:
                model.cover_image_name = cell["file_name"]
                fields.append("cover_image_name")
        model.save(update_fields=fields)


def lora_suggested_scale_set(*, model: LoraModel, lora_scale: float) -> LoraModel:
    """Store the owner's pick among the grid's strengths (the generate page's default strength).

    Raises LoraStateError for a strength the grid does not show. A published model's card is
    committed again (a task, after commit), its example images now at this strength.
    """
    strengths = [float(s) for s in (model.sample_grid or {}).get("strengths") or []]
    if float(lora_scale) not in strengths:
        raise LoraStateError("Pick one of the strengths the sample grid shows.")
    with transaction.atomic():
        LoraModel.objects.filter(pk=model.pk).update(
            suggested_lora_scale=float(lora_scale), updated_at=timezone.now()
        )
        # The card's example images are the grid's at this strength: commit it again, in a task.
        if model.status == LoraModel.Status.READY and model.hf_repo_id:
            transaction.on_commit(lambda: _enqueue_card(model.pk))
    model.refresh_from_db()
    return model


def _enqueue_card(model_id: int) -> None:
    from django_q.tasks import async_task

    async_task("models_app.tasks.lora_card_publish_task", model_id, task_name=f"lora-card-{model_id}")
