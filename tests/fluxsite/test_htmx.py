"""The polled-fragment rule: django-htmx's stop-polling response once the work is finished."""

from __future__ import annotations

import json

from django.http import HttpResponse
from django_htmx.http import HttpResponseStopPolling

from fluxsite.htmx import polled


def _fragment() -> HttpResponse:
    response = HttpResponse("<p>Succeeded</p>", content_type="text/html; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


def test_a_running_job_keeps_polling_and_the_fragment_is_unchanged():
    fragment = _fragment()
    response = polled(fragment, finished=False, credits_changed=True)
    assert response is fragment and response.status_code == 200 and "HX-Trigger" not in response


def test_a_finished_job_gets_the_stop_polling_response_with_the_same_content_and_headers():
    response = polled(_fragment(), finished=True)
    assert isinstance(response, HttpResponseStopPolling)
    assert response.status_code == 286 and response.reason_phrase == "Stop Polling"
    assert response.content == b"<p>Succeeded</p>"
    assert response["Content-Type"] == "text/html; charset=utf-8" and response["Cache-Control"] == "no-store"
    assert "HX-Trigger" not in response


def test_a_finished_job_that_moved_credits_tells_the_page_with_a_client_event():
    response = polled(_fragment(), finished=True, credits_changed=True)
    assert json.loads(response["HX-Trigger"]) == {"credits-changed": {}}
