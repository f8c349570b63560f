"""The one rule for polled fragments (STYLE.md: live status is a small fragment polled by htmx)."""

from __future__ import annotations

from django.http import HttpResponse

HTMX_STOP_POLLING = 286  # htmx stops an `every` trigger on this status and still swaps the content


def polled(response: HttpResponse, *, finished: bool, credits_changed: bool = False) -> HttpResponse:
    """Stop the polling once the work is finished; optionally tell the page the balance moved,
    so the credit pill in the navigation refreshes itself (it listens for `credits-changed`)."""
    if finished:
        response.status_code = HTMX_STOP_POLLING
        if credits_changed:
            response["HX-Trigger"] = "credits-changed"
    return response
