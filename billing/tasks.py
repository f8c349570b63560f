"""Thin django-q2 tasks: primary keys in, one service call, safe to run twice."""

from __future__ import annotations

from billing.services import stripe_event_process


def stripe_event_process_task(event_pk: int) -> str:
    return stripe_event_process(event_pk=event_pk)
