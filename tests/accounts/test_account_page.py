import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from billing.models import CreditEntry, Wallet
from tests.accounts.conftest import link_in
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_alice_sees_her_account_page(alice_client):
    response = alice_client.get("/account/")
    assert response.status_code == 200
    assert b"alice@example.com" in response.content


def test_alice_changes_her_email_once_she_opens_the_link_sent_to_the_new_address(
    alice_client, alice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(
            "/account/email/", {"email": "alice.new@example.com", "password": PASSWORD}
        )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.email == "alice@example.com"
    assert [m.to for m in mail.outbox] == [["alice.new@example.com"]]
    assert alice_client.post(link_in(mail.outbox[0])).status_code == 302
    alice.refresh_from_db()
    assert alice.email == "alice.new@example.com"
    assert alice.email_verified_at is not None


def test_an_email_taken_by_bob_changes_nothing_and_bob_is_told(
    alice_client, alice, bob, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(
            "/account/email/", {"email": "bob@example.com", "password": PASSWORD}, follow=True
        )
    assert response.status_code == 200
    assert b"Check your inbox at bob@example.com" in response.content
    alice.refresh_from_db()
    assert alice.email == "alice@example.com"
    assert [m.to for m in mail.outbox] == [["bob@example.com"]]
    assert "/account/verify/" not in mail.outbox[0].body


def test_a_wrong_current_password_changes_nothing(alice_client, alice):
    response = alice_client.post("/account/email/", {"email": "x@example.com", "password": "wrong"})
    assert response.status_code == 400
    alice.refresh_from_db()
    assert alice.email == "alice@example.com"


def test_alice_changes_her_password_and_stays_logged_in(alice_client, alice):
    new = "another-unusual-passphrase-77"
    response = alice_client.post(
        "/account/password/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password(new)
    assert alice_client.get("/account/").status_code == 200


def test_a_weak_new_password_is_refused(alice_client, alice):
    response = alice_client.post(
        "/account/password/", {"old_password": PASSWORD, "new_password1": "123", "new_password2": "123"}
    )
    assert response.status_code == 400
    assert b"too short" in response.content


def test_deleting_the_account_needs_the_confirmation_words(alice_client, alice):
    response = alice_client.post("/account/delete/", {"confirm": "yes", "password": PASSWORD})
    assert response.status_code == 400
    assert get_user_model().objects.filter(pk=alice.pk).exists()


def test_deleting_the_account_removes_it_and_its_data(
    alice_client, alice, bob, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(
            "/account/delete/", {"confirm": "delete my account", "password": PASSWORD}
        )
    assert response.status_code == 302
    assert not get_user_model().objects.filter(pk=alice.pk).exists()
    assert not Wallet.objects.filter(user_id=alice.pk).exists()
    assert not CreditEntry.objects.filter(wallet__user_id=alice.pk).exists()
    assert Wallet.objects.filter(user=bob).exists()
    assert alice_client.get("/account/").status_code == 302


def test_account_actions_refuse_get(alice_client):
    assert alice_client.get("/account/email/").status_code == 405
    assert alice_client.get("/account/password/").status_code == 405


def test_deleting_the_account_removes_its_stored_photos(
    alice_client, alice, django_capture_on_commit_callbacks
):
    from fluxsite.integrations import storage
    from tests.training.conftest import add_photos
    from training.selectors import owned_file_names
    from training.services import training_create

    job = training_create(owner=alice, name="Mine", trigger_word="ohwx_mine", subject_kind="subject")
    add_photos(alice_client, job, 2)
    files = owned_file_names(alice)
    assert len(files) >= 2 and all(storage.get_storage(a).exists(n) for a, n in files)
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post("/account/delete/", {"confirm": "delete my account", "password": PASSWORD})
    assert not any(storage.get_storage(a).exists(n) for a, n in files)


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("/account/email/", {"email": "x@example.com", "password": "wrong"}),
        ("/account/password/", {"old_password": "wrong", "new_password1": "a", "new_password2": "b"}),
    ],
)
def test_a_refused_form_keeps_the_whole_account_page(alice, alice_client, url, data):
    """The page around a form with errors still lists the tokens and the webhook endpoints."""
    from fluxsite.accounts.services import api_token_create

    api_token_create(user=alice, name="ci-bot", scopes=["read"])
    response = alice_client.post(url, data)
    assert response.status_code == 400
    body = response.content.decode()
    assert 'id="api-tokens"' in body and "ci-bot" in body and 'id="webhooks"' in body
