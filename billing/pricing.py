"""What things cost, in credits. Decimal arithmetic from decimal strings only: never a float."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from django.conf import settings


def training_cost_dollars(*, steps: int) -> Decimal:
    """The GPU cost of a training of `steps` steps in US dollars, before our margin (unrounded)."""
    if steps <= 0:
        raise ValueError("a training has a positive number of steps")
    return (
        Decimal(steps) * Decimal(settings.TRAINER_SECONDS_PER_STEP) * Decimal(settings.GPU_PRICE_PER_SECOND)
    )


def training_cost_credits(*, steps: int) -> int:
    """The credits a training of `steps` steps costs: GPU cost × TRAINING_PRICE_MARGIN, rounded up."""
    cents = training_cost_dollars(steps=steps) * Decimal(settings.TRAINING_PRICE_MARGIN) * 100
    credits = (cents / Decimal(settings.CREDIT_VALUE_CENTS)).to_integral_value(rounding=ROUND_CEILING)
    return max(int(credits), 1)


def gpu_cost_dollars(*, seconds: Decimal, price_per_second: Decimal) -> Decimal:
    """The GPU cost of `seconds` on hardware priced `price_per_second` dollars (unrounded): the
    estimate of a trainer whose time and price are not the default trainer's."""
    if seconds <= 0:
        raise ValueError("a run takes a positive time")
    return Decimal(seconds) * Decimal(price_per_second)


def dollars_to_credits(dollars: Decimal) -> int:
    """Dollars of GPU time as credits: × TRAINING_PRICE_MARGIN, rounded up, at least one
    (training_cost_credits' rule, for any trainer)."""
    cents = Decimal(dollars) * Decimal(settings.TRAINING_PRICE_MARGIN) * 100
    credits = (cents / Decimal(settings.CREDIT_VALUE_CENTS)).to_integral_value(rounding=ROUND_CEILING)
    return max(int(credits), 1)


def credits_to_dollars(credits: int) -> Decimal:
    """What `credits` are worth in US dollars at CREDIT_VALUE_CENTS, to the cent (a quote's price)."""
    return (Decimal(credits) * Decimal(settings.CREDIT_VALUE_CENTS) / 100).quantize(Decimal("0.01"))


def generation_cost_credits(*, num_images: int) -> int:
    if num_images <= 0:
        raise ValueError("a generation makes at least one image")
    return num_images * settings.GENERATION_CREDITS_PER_IMAGE


def sample_grid_cost_credits(*, num_images: int) -> int:
    """The credits a training's sample grid of `num_images` images adds to the training's price
    (it is spent with the training, in one entry: never a separate charge)."""
    if num_images < 0:
        raise ValueError("a sample grid has no negative size")
    return num_images * settings.SAMPLE_GRID_CREDITS_PER_IMAGE


def upscale_cost_credits(*, num_images: int) -> int:
    """The credits of upscaling `num_images` generated images (one prediction each)."""
    if num_images <= 0:
        raise ValueError("an upscale makes at least one image")
    return num_images * settings.UPSCALE_CREDITS_PER_IMAGE
