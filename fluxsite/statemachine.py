"""The one state-machine mechanism: a compare-and-swap transition and one backoff function.

Trainings, generations and models move through statuses while workers, webhooks, pollers and
people race for the same row. A transition is one UPDATE ... WHERE pk = ? AND status IN (old):
whoever's UPDATE matches moved the row; everyone else gets False and reads the row again. There
is no read-then-write window, so no lock is needed and no move is ever made twice.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from django.db import models
from django.utils import timezone


def transition(instance: models.Model, old: str | Iterable[str], new: str, /, **fields: Any) -> bool:
    """Move `instance.status` from `old` (one status or several) to `new`, with `fields` set in the same
    UPDATE (and `updated_at`, when the model has one). True when this call moved it; the instance
    is read again either way, so the caller sees who won."""
    olds = (old,) if isinstance(old, str) else tuple(old)
    model = type(instance)
    if "updated_at" not in fields and any(f.name == "updated_at" for f in model._meta.concrete_fields):
        fields["updated_at"] = timezone.now()
    updated = model._default_manager.filter(pk=instance.pk, status__in=olds).update(status=new, **fields)
    instance.refresh_from_db()
    return updated == 1


def backoff_seconds(attempt: int, *, base: float, cap: float | None = None) -> float:
    """Exponential backoff with half jitter: attempt 1 waits between base/2 and base, each later
    attempt twice as long, never more than `cap`. Jitter keeps retries of many rows (after an
    outage) from arriving together."""
    delay = base * 2 ** max(attempt - 1, 0)
    if cap is not None:
        delay = min(delay, cap)
    return delay / 2 + random.random() * delay / 2
