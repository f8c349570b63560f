"""Security headers on every kind of page, session lifetimes, and password reset links."""

from __future__ import annotations

import re

import pytest
import time_machine
from django.core import mail

from training.services import training_create

SECURITY_HEADERS = (
    "Content-Security-Policy",
    "Permissions-Policy",
    "Cache-Control",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Cross-Origin-Opener-Policy",
)


def _pages(anon_client, alice_client, staff_client, alice):
    job = training_create(owner=alice, name="Anna", trigger_word="ohwx_anna", subject_kind="subject")
    return {
        "public page": (anon_client, "/account/login/", {}),
        "authenticated page": (alice_client, "/trainings/", {}),
        "htmx fragment": (alice_client, f"/trainings/{job.pk}/row-status/", {"HX-Request": "true"}),
        "admin": (staff_client, "/admin/", {}),
        "json endpoint (anonymous)": (anon_client, "/healthz", {}),
        "json endpoint (signed in)": (alice_client, "/healthz", {}),
        "404 (signed in)": (alice_client, "/no-such-page/", {}),
        "404 (anonymous)": (anon_client, "/no-such-page/", {}),
    }


@pytest.mark.django_db
def test_every_kind_of_page_carries_the_security_headers(anon_client, alice_client, staff_client, alice):
    seen = {}
    for kind, (client, url, headers) in _pages(anon_client, alice_client, staff_client, alice).items():
        response = client.get(url, headers=headers)
        seen[kind] = response
        print(f"\n{kind}: GET {url} -> {response.status_code}")
        for name in SECURITY_HEADERS:
            print(f"  {name}: {response.headers.get(name, '(none)')}")

    assert seen["htmx fragment"].status_code == 286  # a draft is not running: htmx stops polling
    assert seen["admin"].status_code == 200
    assert seen["404 (signed in)"].status_code == 404
    for kind, response in seen.items():
        csp = response.headers["Content-Security-Policy"]
        assert (
            "script-src 'self';" in csp and "'unsafe-eval'" not in csp and "frame-ancestors 'none'" in csp
        ), kind
        assert "microphone=()" in response.headers["Permissions-Policy"], kind
        assert "geolocation=()" in response.headers["Permissions-Policy"], kind
        assert response.headers["X-Frame-Options"] == "DENY", kind
        assert response.headers["X-Content-Type-Options"] == "nosniff", kind
        signed_in = "signed in" in kind or kind in ("authenticated page", "htmx fragment", "admin")
        if signed_in:
            assert "no-store" in response.headers["Cache-Control"], kind
        elif kind != "public page":  # Django's LoginView is never_cache of its own
            assert "no-store" not in response.headers.get("Cache-Control", ""), kind
    # The admin has its own policy: its scripts are ours, one changelist template has an inline style.
    assert "style-src 'self' 'unsafe-inline'" in seen["admin"].headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in seen["authenticated page"].headers["Content-Security-Policy"]


@pytest.mark.django_db
def test_a_private_thumbnail_keeps_the_caching_its_view_chose(alice_client, alice, settings):
    from django.http import HttpResponse

    from fluxsite.middleware import PrivateCacheControlMiddleware

    chosen = HttpResponse(b"jpeg")
    chosen["Cache-Control"] = "private, max-age=86400"
    request = alice_client.get("/trainings/").wsgi_request
    assert (
        PrivateCacheControlMiddleware(lambda r: chosen)(request)["Cache-Control"] == "private, max-age=86400"
    )
    request.path = "/static/site.css"
    assert "Cache-Control" not in PrivateCacheControlMiddleware(lambda r: HttpResponse())(request)


def test_sessions_are_bounded_by_settings(settings):
    assert settings.SESSION_COOKIE_AGE == 7 * 24 * 3600
    assert settings.SESSION_IDLE_TIMEOUT_SECONDS == 2 * 24 * 3600
    assert settings.PASSWORD_RESET_TIMEOUT == 3600


@pytest.mark.django_db
def test_an_idle_session_is_signed_out(client, alice):
    with time_machine.travel("2030-01-01 12:00", tick=False) as traveller:
        client.force_login(alice)
        alice_client = client
        assert alice_client.get("/trainings/").status_code == 200
        traveller.shift(24 * 3600)  # within the idle timeout: still signed in, and seen again
        assert alice_client.get("/trainings/").status_code == 200
        traveller.shift(47 * 3600)
        assert alice_client.get("/trainings/").status_code == 200
        traveller.shift(2 * 24 * 3600 + 1)  # idle for longer than the timeout
        response = alice_client.get("/trainings/")
    assert response.status_code == 302 and "/account/login/" in response["Location"]


@pytest.mark.django_db
def test_a_busy_session_still_ends_after_its_lifetime(client, alice):
    with time_machine.travel("2030-01-01 12:00", tick=False) as traveller:
        client.force_login(alice)
        alice_client = client
        for _day in range(7):
            assert alice_client.get("/trainings/").status_code == 200
            traveller.shift(24 * 3600)
        traveller.shift(60)
        response = alice_client.get("/trainings/")
    assert response.status_code == 302


@pytest.mark.django_db
def test_the_password_reset_link_is_built_on_site_url_not_the_host_header(anon_client, alice, settings):
    settings.SITE_URL = "https://fluxsite.example.com"
    settings.ALLOWED_HOSTS = ["*"]
    mail.outbox = []
    response = anon_client.post(
        "/account/password-reset/", {"email": alice.email}, headers={"Host": "attacker.example.net"}
    )

    assert response.status_code == 302
    assert len(mail.outbox) == 1
    links = re.findall(r"\S+://\S+", str(mail.outbox[0].body))
    assert links and all(link.startswith("https://fluxsite.example.com/account/reset/") for link in links), (
        links
    )
    assert "attacker.example.net" not in mail.outbox[0].body


@pytest.mark.redis
def test_with_redis_a_signed_in_page_reads_its_session_from_the_cache(alice_client):
    """cached_db: read from the shared cache, written through to the table (a flushed cache signs
    nobody out)."""
    from django.contrib.sessions.models import Session
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    alice_client.get("/trainings/")
    with CaptureQueriesContext(connection) as queries:
        assert alice_client.get("/trainings/").status_code == 200
    assert not [q for q in queries if "django_session" in q["sql"]]
    assert Session.objects.filter(session_key=alice_client.session.session_key).exists()
    from django.core.cache import cache

    cache.clear()
    assert alice_client.get("/trainings/").status_code == 200  # still signed in, from the table
    assert "Log out" in alice_client.get("/trainings/").content.decode()
