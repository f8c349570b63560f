"""Issue 13, item 2: rate limits in the shared cache.

Logins (site and admin) lock on account and address together (django-axes), so an attacker can
neither keep guessing one account nor, from one address, lock out everyone else behind it. The
other expensive actions are limited per user or client (fluxsite/ratelimits.py). A limited request
gets 429 with Retry-After and a clear message, as a page, an HTMX fragment or JSON.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from tests.conftest import PASSWORD
from tests.training import images
from tests.training.conftest import post_files

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counters(settings):
    settings.RATELIMIT_ENABLE = True
    settings.AXES_ENABLED = True
    cache.clear()
    yield
    cache.clear()


def _login(client: Client, email: str, password: str, ip: str = "203.0.113.7", path: str = "accounts:login"):
    return client.post(reverse(path), {"username": email, "password": password}, REMOTE_ADDR=ip)


def test_wrong_passwords_lock_the_account_from_that_address_and_the_right_one_then_fails(alice, settings):
    client = Client()
    answers = [
        _login(client, alice.email, "wrong-password").status_code for _ in range(settings.AXES_FAILURE_LIMIT)
    ]
    assert all(a == 200 for a in answers[:-1])  # the form again, with its error
    locked = _login(client, alice.email, PASSWORD)
    assert locked.status_code == 429 and "Too many failed logins" in locked.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_lockout_from_one_address_does_not_lock_the_account_elsewhere_or_others_there(alice, bob, settings):
    attacker = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(attacker, alice.email, "wrong-password", ip="198.51.100.9")
    # Alice at home logs in; bob behind the attacker's address (same office NAT) logs in too.
    assert _login(Client(), alice.email, PASSWORD, ip="203.0.113.50").status_code == 302
    assert _login(Client(), bob.email, PASSWORD, ip="198.51.100.9").status_code == 302


def test_the_admin_login_is_locked_the_same_way(staff, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": staff.email, "password": "nope"}, REMOTE_ADDR="192.0.2.1")
    response = client.post(
        "/admin/login/", {"username": staff.email, "password": PASSWORD}, REMOTE_ADDR="192.0.2.1"
    )
    assert response.status_code == 429


def test_sign_ups_from_one_address_stop_at_the_limit(settings):
    settings.RATELIMITS = {**settings.RATELIMITS, "signup": "3/h"}
    client = Client()
    answers = [
        client.post(
            reverse("accounts:signup"),
            {"email": f"new{i}@example.com", "password1": PASSWORD, "password2": PASSWORD},
            REMOTE_ADDR="198.51.100.20",
        )
        for i in range(5)
    ]
    assert all(a.status_code != 429 for a in answers[:3])
    assert answers[3].status_code == 429 and answers[3]["Retry-After"].isdigit()
    assert "Too many sign-ups from your network" in answers[3].content.decode()


def test_password_resets_are_limited_per_address_typed_whatever_the_client(settings, alice):
    settings.RATELIMITS = {**settings.RATELIMITS, "password_reset": "2/h"}
    answers = [
        Client()
        .post(reverse("accounts:password_reset"), {"email": alice.email}, REMOTE_ADDR=f"198.51.100.{i}")
        .status_code
        for i in range(3)
    ]
    assert answers[:2] == [302, 302] and answers[2] == 429


def test_uploads_over_the_limit_get_429_as_json(alice, alice_client, settings):
    from training.services import training_create

    settings.RATELIMITS = {**settings.RATELIMITS, "upload": "2/m"}
    training = training_create(owner=alice, name="R", trigger_word="ohwx_r", subject_kind="subject")
    codes = [
        post_files(alice_client, training, [(f"{i}.jpg", images.photo(seed=300 + i))]).status_code
        for i in range(3)
    ]
    assert codes == [200, 200, 429]
    refused = post_files(alice_client, training, [("x.jpg", images.photo(seed=310))])
    assert "Too many uploads" in refused.json()["error"]


def test_captioning_runs_over_the_limit_get_429_before_anything_is_spent(alice, alice_client, settings):
    """At the limit and past it: the refused start never reaches the batch service (no spend)."""
    from billing.selectors import balance_for_user
    from training.services import training_create

    settings.RATELIMITS = {**settings.RATELIMITS, "caption_start": "1/m"}
    training = training_create(owner=alice, name="R", trigger_word="ohwx_r", subject_kind="subject")
    url = reverse("training:caption_start", args=[training.pk])
    first = alice_client.post(url, {}, headers={"hx-request": "true"})
    assert first.status_code != 429  # the first start is judged by the batch service (no photos here)
    before = balance_for_user(alice)
    second = alice_client.post(url, {}, headers={"hx-request": "true"})
    assert second.status_code == 429 and "Too many captioning runs" in second.content.decode()
    assert second["Retry-After"]
    assert balance_for_user(alice) == before


def test_a_limited_htmx_request_gets_a_fragment(alice_client, settings):
    settings.RATELIMITS = {**settings.RATELIMITS, "generate": "1/m"}
    url = reverse("generations:generate")
    alice_client.post(url, {"prompt": "x"})
    response = alice_client.post(url, {"prompt": "x"}, headers={"hx-request": "true"})
    assert response.status_code == 429 and response.content.decode().startswith('<p class="error"')


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_parallel_sign_ups_share_one_counter_in_redis(settings):
    """With the Redis cache (the production one), parallel requests count atomically."""
    from tests.helpers import run_concurrently

    settings.RATELIMITS = {**settings.RATELIMITS, "signup": "4/h"}

    def sign_up(i: int) -> int:
        return (
            Client()
            .post(
                reverse("accounts:signup"),
                {"email": f"p{i}@example.com", "password1": PASSWORD, "password2": PASSWORD},
                REMOTE_ADDR="198.51.100.77",
            )
            .status_code
        )

    codes = run_concurrently(sign_up, 10)
    assert codes.count(429) == 6, codes
