"""What a trainer of the registry is (training/trainers/registry.py has the entries).

One `Trainer` describes a Replicate trainer once: its model and pinned version, the settings it
takes (names, types, ranges and defaults copied from the trainer's own schema, with the vendor file
they came from cited in its module), how a training of ours becomes its input, its presets, its
price model and so its estimate, how to read progress from its logs, what its output is, and on
which base model its LoRA generates (models_app.bases).

Why the numbers are copied and not loaded: the vendor files live under sandbox/vendor/, and app
code never imports or reads the sandbox (import-linter, docs/architecture.md). The copy is checked
against the vendor file by tests/training/test_trainers.py, so it cannot drift unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings

from billing.pricing import dollars_to_credits, gpu_cost_dollars

if TYPE_CHECKING:
    from training.models import TrainingJob


@dataclass(frozen=True)
class Setting:
    """One setting of a trainer as the start page offers it (and, mostly, the input it fills)."""

    name: str  # our form field
    kind: str  # "int", "float", "choice", "text"
    default: Any
    label: str = ""
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    # True when the bounds are ours, not the vendor's (none were published): say so on the page.
    ours: bool = False
    required: bool = True
    input_name: str = ""  # the trainer's input it fills, when not `name`

    @property
    def input(self) -> str:
        return self.input_name or self.name


@dataclass(frozen=True)
class Trainer:
    key: str
    label: str
    summary: str
    replicate_model: str  # "owner/name"
    version_setting: str  # the settings name of the pinned version ("" there: the model's latest)
    schema_source: str  # where its schema came from (shown in the admin and the docs)
    base_model: str  # models_app.bases key: the Hugging Face id of the base
    dataset_input: str  # the input that takes our zip's URL
    output_format: str  # "tar" or "zip": where lora.safetensors is (publishing reads both)
    progress_label: str  # a regex for the training bar's label in its logs (training.progress)
    uses_trigger_word: bool  # False: the captions must carry a descriptive name instead
    hardware: str
    # Settings names of the price per second of its hardware and of the seconds a step takes.
    price_setting: str
    seconds_per_step_setting: str
    settings: tuple[Setting, ...]
    presets: dict[str, dict[str, Any]]
    # (job, zip URL, validated params) -> the trainer's input
    build_input: Callable[[TrainingJob, str, dict[str, Any]], dict[str, Any]]
    # (job, validated params) -> {our field name or "trainer": [message]}: what it cannot take
    dataset_problems: Callable[[TrainingJob, dict[str, Any]], dict[str, list[str]]] = field(
        default=lambda job, params: {}
    )
    trigger_help: str = ""
    model_setting: str = ""  # a setting that overrides replicate_model (the FLUX trainer's)

    def model(self) -> str:
        return str(getattr(settings, self.model_setting, "") or self.replicate_model)

    def version(self) -> str:
        return str(getattr(settings, self.version_setting, "") or "")

    def setting(self, name: str) -> Setting:
        return next(s for s in self.settings if s.name == name)

    @property
    def steps_bounds(self) -> tuple[int, int]:
        steps = self.setting("steps")
        return int(steps.minimum or 1), int(steps.maximum or 1)

    def seconds(self, *, steps: int) -> Decimal:
        return Decimal(steps) * Decimal(getattr(settings, self.seconds_per_step_setting))

    def cost_dollars(self, *, steps: int) -> Decimal:
        """GPU dollars of a run of `steps` (unrounded): seconds × its hardware's price."""
        if steps <= 0:
            raise ValueError("a training has a positive number of steps")
        return gpu_cost_dollars(
            seconds=self.seconds(steps=steps), price_per_second=Decimal(getattr(settings, self.price_setting))
        )

    def cost_credits(self, *, steps: int) -> int:
        return dollars_to_credits(self.cost_dollars(steps=steps))

    def defaults(self) -> dict[str, Any]:
        return {s.name: s.default for s in self.settings}
