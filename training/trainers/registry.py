"""Every trainer Fluxsite can run, by key. Adding a trainer is adding its module here (and its
schema to the sandbox); the tests are parametrised over TRAINERS."""

from __future__ import annotations

from training.trainers import fast_flux, flux_dev, qwen_image
from training.trainers.base import Trainer

DEFAULT = flux_dev.KEY

TRAINERS: dict[str, Trainer] = {t.key: t for t in (flux_dev.TRAINER, fast_flux.TRAINER, qwen_image.TRAINER)}


class UnknownTrainer(KeyError):
    pass


def trainer_get(key: str) -> Trainer:
    """The trainer of `key` ("" is the default, as for a training made before the registry)."""
    try:
        return TRAINERS[key or DEFAULT]
    except KeyError:
        raise UnknownTrainer(key) from None


def trainer_choices() -> list[tuple[str, str]]:
    return [(t.key, t.label) for t in TRAINERS.values()]
