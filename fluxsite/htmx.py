"""The one rule for polled fragments (docs/style.md: live status is a small fragment polled by htmx)."""

from __future__ import annotations

from django.http import HttpResponse
from django_htmx.http import HttpResponseStopPolling, trigger_client_event

CREDITS_CHANGED = "credits-changed"  # the credit pill in the navigation listens for it


def polled(response: HttpResponse, *, finished: bool, credits_changed: bool = False) -> HttpResponse:
    """The rendered fragment, as django-htmx's stop-polling response (286) once the work is finished;
    then, optionally, a `credits-changed` client event so the credit pill refreshes itself.

    Takes the response `render()` made, so the views keep rendering one way; its content and
    headers are carried over to the stop-polling response.
    """
    if not finished:
        return response
    stop = HttpResponseStopPolling(response.content, headers=dict(response.headers))
    if credits_changed:
        trigger_client_event(stop, CREDITS_CHANGED)
    return stop
