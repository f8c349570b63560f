from __future__ import annotations

from decimal import Decimal

import pytest

from billing.pricing import (
    credits_to_dollars,
    generation_cost_credits,
    training_cost_credits,
    training_cost_dollars,
)


def test_training_cost_is_gpu_time_times_margin_rounded_up(settings):
    settings.TRAINER_SECONDS_PER_STEP = "1.1"
    settings.GPU_PRICE_PER_SECOND = "0.001525"
    settings.TRAINING_PRICE_MARGIN = "1.5"
    settings.CREDIT_VALUE_CENTS = 1
    assert training_cost_dollars(steps=1000) == Decimal("1.6775")
    # 1.6775 $ x 1.5 = 251.625 cents -> 252 credits (rounded up, never down)
    assert training_cost_credits(steps=1000) == 252
    settings.CREDIT_VALUE_CENTS = 10
    assert training_cost_credits(steps=1000) == 26


def test_generation_cost_is_per_image(settings):
    settings.GENERATION_CREDITS_PER_IMAGE = 4
    assert generation_cost_credits(num_images=3) == 12
    with pytest.raises(ValueError):
        generation_cost_credits(num_images=0)


def test_costs_are_integers_from_decimal_math():
    assert isinstance(training_cost_credits(steps=3), int)
    with pytest.raises(ValueError):
        training_cost_credits(steps=0)


def test_credits_are_worth_their_value_in_dollars_to_the_cent(settings):
    settings.CREDIT_VALUE_CENTS = 1
    assert credits_to_dollars(8) == Decimal("0.08")
    settings.CREDIT_VALUE_CENTS = 7
    assert credits_to_dollars(3) == Decimal("0.21")
    assert str(credits_to_dollars(0)) == "0.00"
