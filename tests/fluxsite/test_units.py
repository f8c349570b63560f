"""Times in the person's time zone, in one format; durations in human units (fluxsite/units.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.template import Context, Template
from django.utils import timezone

from fluxsite.middleware import TIME_ZONE_COOKIE
from fluxsite.units import duration_text, time_html

pytestmark = pytest.mark.django_db

NOON_UTC = datetime(2026, 7, 1, 12, 0, 5, tzinfo=UTC)


def _alice_training_made_at_noon_utc(alice):
    from training.models import TrainingJob
    from training.services import training_create

    job = training_create(owner=alice, name="Sea", trigger_word="ohwx_sea", subject_kind="subject")
    TrainingJob.objects.filter(pk=job.pk).update(created_at=NOON_UTC)
    return job


def test_a_time_is_one_element_with_the_utc_instant_and_the_local_text():
    with timezone.override("Europe/Paris"):
        html = time_html(NOON_UTC)
        log = time_html(NOON_UTC, seconds=True)
    assert html == '<time datetime="2026-07-01T12:00:05+00:00">1 Jul 2026, 14:00</time>'
    assert log == '<time datetime="2026-07-01T12:00:05+00:00">1 Jul 2026, 14:00:05</time>'
    assert time_html(None) == ""


def test_the_filters_are_the_same_functions():
    rendered = Template('{% load units %}{{ t|when }} · {{ t|when:"seconds" }} · {{ s|duration }}').render(
        Context({"t": NOON_UTC, "s": 3725})
    )
    assert rendered == f"{time_html(NOON_UTC)} · {time_html(NOON_UTC, seconds=True)} · 1 h 02 min"


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, ""), (-3, "0 s"), (45, "45 s"), (200, "3 min 20 s"), (3900, "1 h 05 min")]
)
def test_durations_read_in_seconds_minutes_and_hours(seconds, text):
    assert duration_text(seconds) == text


def test_the_trainings_list_shows_times_in_the_zone_of_the_browsers_cookie(alice, alice_client):
    _alice_training_made_at_noon_utc(alice)
    alice_client.cookies[TIME_ZONE_COOKIE] = "Asia/Tokyo"
    html = alice_client.get("/trainings/").content.decode()
    assert '<time datetime="2026-07-01T12:00:05+00:00">1 Jul 2026, 21:00</time>' in html


@pytest.mark.parametrize("cookie", ["", "Mars/Olympus_Mons", "../../etc/passwd", "x" * 200])
def test_an_unknown_zone_leaves_the_times_in_utc(alice, alice_client, cookie):
    _alice_training_made_at_noon_utc(alice)
    alice_client.cookies[TIME_ZONE_COOKIE] = cookie
    response = alice_client.get("/trainings/")
    assert response.status_code == 200
    assert ">1 Jul 2026, 12:00</time>" in response.content.decode()


def test_the_zone_of_one_request_does_not_leak_into_the_next(alice, alice_client, anon_client):
    alice_client.cookies[TIME_ZONE_COOKIE] = "Asia/Tokyo"
    alice_client.get("/trainings/")
    assert timezone.get_current_timezone_name() == "UTC"
