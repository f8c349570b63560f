import re

import pytest
from django.core import mail

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_alice_logs_in_with_her_email_and_password(anon_client, alice):
    response = anon_client.post("/account/login/", {"username": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/trainings/"


def test_a_wrong_password_shows_an_error(anon_client, alice):
    response = anon_client.post("/account/login/", {"username": "alice@example.com", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct" in response.content


def test_logging_out_ends_the_session(alice_client):
    assert alice_client.post("/account/logout/").status_code == 302
    assert alice_client.get("/trainings/").status_code == 302


@pytest.mark.parametrize(
    "path", ["/trainings/", "/models/", "/models/generate/", "/billing/", "/account/", "/account/delete/"]
)
def test_every_dashboard_page_needs_a_login(anon_client, path):
    response = anon_client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/account/login/?next=")


def test_the_admin_is_for_staff_only(alice_client, staff_client):
    assert alice_client.get("/admin/").status_code == 302
    assert staff_client.get("/admin/").status_code == 200


def test_a_password_reset_mail_leads_to_a_new_password(anon_client, alice):
    response = anon_client.post("/account/password-reset/", {"email": "alice@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    found = re.search(r"https?://[^/\s]+(/account/reset/\S+)", str(mail.outbox[0].body))
    assert found
    link = found.group(1)
    form = anon_client.get(link, follow=True)
    assert b"Choose a new password" in form.content
    new = "a-brand-new-unusual-passphrase"
    done = anon_client.post(form.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert done.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password(new)


def test_a_password_reset_for_an_unknown_address_reveals_nothing(anon_client):
    response = anon_client.post("/account/password-reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert mail.outbox == []
