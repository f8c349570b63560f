import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from billing.selectors import balance_for_user
from tests.accounts.conftest import link_in

pytestmark = pytest.mark.django_db

GOOD = "a-long-and-unusual-passphrase-42"


def signup(client, **overrides):
    data = {"email": "carol@example.com", "password1": GOOD, "password2": GOOD, **overrides}
    return client.post("/account/signup/", data)


def test_a_visitor_signs_up_and_is_asked_to_verify_with_no_credits_yet(
    anon_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = signup(anon_client)
    assert response.status_code == 302
    assert response["Location"] == "/account/signup/sent/"
    user = get_user_model().objects.get(email="carol@example.com")
    assert user.email_verified_at is None
    assert balance_for_user(user) == 0
    assert [m.to for m in mail.outbox] == [["carol@example.com"]]
    assert link_in(mail.outbox[0]).startswith("/account/verify/")
    assert b"Check your e-mail" in anon_client.get(response["Location"]).content


def test_an_unverified_account_can_log_in_and_use_the_site(anon_client):
    signup(anon_client)
    response = anon_client.post("/account/login/", {"username": "carol@example.com", "password": GOOD})
    assert response.status_code == 302
    page = anon_client.get("/trainings/")
    assert page.status_code == 200
    assert b"carol@example.com" in page.content


def test_the_email_is_stored_in_lower_case(anon_client):
    signup(anon_client, email="Carol@Example.COM")
    assert get_user_model().objects.filter(email="carol@example.com").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"password1": "short", "password2": "short"}, b"too short"),
        ({"password1": "password1234", "password2": "password1234"}, b"too common"),
        ({"password2": "something-else-entirely-99"}, b"two passwords differ"),
        ({"email": "x" * 250 + "@example.com"}, b"at most 254 characters"),
        ({"password1": "p" * 200, "password2": "p" * 200}, b"at most 128 characters"),
        ({"email": "not-an-email"}, b"valid email"),
        ({"email": ""}, b"This field is required"),
    ],
)
def test_bad_sign_ups_get_form_errors_not_a_500(anon_client, alice, overrides, message):
    before = get_user_model().objects.count()
    response = signup(anon_client, **overrides)
    assert response.status_code == 200
    assert message in response.content
    assert get_user_model().objects.count() == before


def test_a_logged_in_user_is_sent_away_from_the_sign_up_page(alice_client):
    assert alice_client.get("/account/signup/").status_code == 302


def test_sign_up_refuses_other_methods(anon_client):
    assert anon_client.put("/account/signup/").status_code == 405
    assert anon_client.post("/account/signup/sent/").status_code == 405
