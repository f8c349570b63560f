import pytest
from django.contrib.auth import get_user_model

from billing.selectors import balance_for_user

pytestmark = pytest.mark.django_db

GOOD = "a-long-and-unusual-passphrase-42"


def signup(client, **overrides):
    data = {"email": "carol@example.com", "password1": GOOD, "password2": GOOD, **overrides}
    return client.post("/account/signup/", data)


def test_a_visitor_signs_up_and_is_logged_in_with_welcome_credits(anon_client, settings):
    response = signup(anon_client)
    assert response.status_code == 302
    user = get_user_model().objects.get(email="carol@example.com")
    assert balance_for_user(user) == settings.SIGNUP_CREDITS
    page = anon_client.get("/trainings/")
    assert page.status_code == 200
    assert b"carol@example.com" in page.content


def test_the_email_is_stored_in_lower_case(anon_client):
    signup(anon_client, email="Carol@Example.COM")
    assert get_user_model().objects.filter(email="carol@example.com").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"email": "alice@example.com"}, b"already exists"),
        ({"email": "ALICE@example.com"}, b"already exists"),
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
