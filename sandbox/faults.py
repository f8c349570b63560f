"""Fault injection for the sandbox stand-ins.

Tests and demos arm a fault (`fault_inject(...)`, the admin, or POST /sandbox/faults/); the
next matching call of a stand-in consumes it with `fault_take(...)` and misbehaves as told.
Each stand-in renders the error body in its own vendor's shape.
"""

from __future__ import annotations

import time

from django.db import transaction
from django.db.models import F, Q

from sandbox.models import Fault, FaultKind


def fault_inject(
    *,
    service: str,
    operation: str = "*",
    kind: str = FaultKind.STATUS,
    status: int | None = None,
    retry_after: int | None = None,
    delay_seconds: float = 0,
    times: int | None = 1,
) -> Fault:
    return Fault.objects.create(
        service=service,
        operation=operation,
        kind=kind,
        status=status,
        retry_after=retry_after,
        delay_seconds=delay_seconds,
        remaining=times,
    )


def fault_clear(*, service: str | None = None) -> None:
    qs = Fault.objects.all()
    if service:
        qs = qs.filter(service=service)
    qs.delete()


def fault_take(*, service: str, operation: str, kinds: tuple[str, ...] | None = None) -> Fault | None:
    """Consume one armed fault matching this call, or return None."""
    with transaction.atomic():
        qs = (
            Fault.objects.select_for_update()
            .filter(service=service)
            .filter(Q(operation=operation) | Q(operation="*"))
        )
        if kinds:
            qs = qs.filter(kind__in=kinds)
        fault = qs.filter(Q(remaining__isnull=True) | Q(remaining__gt=0)).order_by("created_at", "id").first()
        if fault is None:
            return None
        if fault.remaining is not None:
            Fault.objects.filter(pk=fault.pk).update(remaining=F("remaining") - 1)
            if fault.remaining <= 1:
                Fault.objects.filter(pk=fault.pk, remaining__lte=0).delete()
    return fault


def fault_delay(fault: Fault | None) -> None:
    """Sleep for timeout/slow faults (a timeout sleeps past the client's own timeout)."""
    if fault is not None and fault.kind in (FaultKind.TIMEOUT, FaultKind.SLOW):
        time.sleep(fault.delay_seconds or (5.0 if fault.kind == FaultKind.TIMEOUT else 1.0))


HTTP_FAULT_KINDS = (FaultKind.STATUS, FaultKind.TIMEOUT, FaultKind.SLOW)
