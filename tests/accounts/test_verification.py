"""Welcome credits come with a verified address, once per mailbox; sign-up and e-mail change
do not tell who has an account."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command
from django.urls import reverse

from billing.models import CreditEntry, CreditKind
from billing.selectors import balance_for_user
from fluxsite.accounts.models import VerifiedAddress
from fluxsite.accounts.services import user_email_verify, user_sign_up
from fluxsite.accounts.verification import email_normalise, verification_token_make
from tests.accounts.conftest import link_in
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

User = get_user_model()
GOOD = "a-long-and-unusual-passphrase-42"


@pytest.fixture
def sign_up(anon_client, django_capture_on_commit_callbacks):
    """POST the sign-up form as a visitor; mails are sent (after commit) before it returns."""

    def post(email: str, password: str = GOOD):
        with django_capture_on_commit_callbacks(execute=True):
            return anon_client.post(
                "/account/signup/", {"email": email, "password1": password, "password2": password}
            )

    return post


def without_csrf(page: bytes) -> str:
    """A page with its CSRF tokens blanked: Django masks the token afresh on every render."""
    return re.sub(r'("X-CSRFToken": "|name="csrfmiddlewaretoken" value=")[^"]+', r"\1-", page.decode())


def signed_up(email: str):
    return user_sign_up(email=email, password=PASSWORD)


def link_for(user, email: str | None = None) -> str:
    return reverse("accounts:verify", args=[verification_token_make(user=user, email=email or user.email)])


# --- The link ----------------------------------------------------------------------------------------
def test_the_link_verifies_the_address_and_grants_the_welcome_credits(sign_up, anon_client, settings):
    sign_up("carol@example.com")
    carol = User.objects.get(email="carol@example.com")
    assert balance_for_user(carol) == 0

    response = anon_client.post(link_in(mail.outbox[0]), follow=True)

    assert response.redirect_chain[-1][0] == "/account/login/"
    assert f"{settings.SIGNUP_CREDITS} welcome credits are in your balance".encode() in response.content
    carol.refresh_from_db()
    assert carol.email_verified_at is not None
    assert balance_for_user(carol) == settings.SIGNUP_CREDITS
    entry = CreditEntry.objects.get(wallet__user=carol, kind=CreditKind.SIGNUP)
    assert entry.reference.startswith("signup:") and "carol" not in entry.reference


def test_the_link_works_once(sign_up, anon_client, settings):
    sign_up("carol@example.com")
    link = link_in(mail.outbox[0])
    assert anon_client.post(link).status_code == 302

    again = anon_client.post(link)

    assert again.status_code == 400
    assert b"already verified" in again.content
    assert balance_for_user(User.objects.get(email="carol@example.com")) == settings.SIGNUP_CREDITS


def test_opening_the_link_only_shows_a_button_so_mail_scanners_verify_nothing(sign_up, anon_client):
    sign_up("carol@example.com")

    page = anon_client.get(link_in(mail.outbox[0]))

    assert page.status_code == 200
    assert b"Verify carol@example.com" in page.content and b'method="post"' in page.content
    assert User.objects.get(email="carol@example.com").email_verified_at is None


def test_an_expired_link_is_refused_with_a_clear_message(settings):
    carol = signed_up("carol@example.com")
    with time_machine.travel(
        dt.datetime.now(dt.UTC) - dt.timedelta(seconds=settings.ACCOUNT_VERIFY_MAX_AGE_SECONDS + 60)
    ):
        link = link_for(carol)
    from django.test import Client

    for response in (Client().get(link), Client().post(link)):
        assert response.status_code == 400
        assert b"This verification link has expired" in response.content
        assert b"ask for a new one" in response.content
    carol.refresh_from_db()
    assert carol.email_verified_at is None and balance_for_user(carol) == 0


def test_a_tampered_link_is_refused(anon_client):
    carol = signed_up("carol@example.com")
    link = link_for(carol)
    token = link.removeprefix("/account/verify/").removesuffix("/")
    tampered = reverse("accounts:verify", args=[token[:-3] + ("aaa" if token[-3:] != "aaa" else "bbb")])
    forged = reverse("accounts:verify", args=["eyJ1IjoxLCJlIjoiZXZlQGV4YW1wbGUuY29tIiwicyI6IiJ9:1abcde:xyz"])

    for path in (tampered, forged):
        response = anon_client.post(path)
        assert response.status_code == 400
        assert b"This verification link is not valid" in response.content
    assert balance_for_user(carol) == 0


def test_a_link_for_another_users_account_cannot_be_forged_by_editing_it(anon_client):
    """The payload is signed: changing the user id inside it breaks the signature."""
    import base64

    carol = signed_up("carol@example.com")
    dave = signed_up("dave@example.com")
    token = link_for(carol).removeprefix("/account/verify/").removesuffix("/")
    payload, _, rest = token.partition(":")
    assert not payload.startswith(".")  # short payloads are not compressed: the JSON is right there
    data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).replace(
        f'"u":{carol.pk}'.encode(), f'"u":{dave.pk}'.encode()
    )
    forged = base64.urlsafe_b64encode(data).decode().rstrip("=") + ":" + rest

    response = anon_client.post(reverse("accounts:verify", args=[forged]))

    assert response.status_code == 400
    dave.refresh_from_db()
    assert dave.email_verified_at is None


def test_the_verify_page_refuses_other_methods(anon_client):
    carol = signed_up("carol@example.com")
    assert anon_client.put(link_for(carol)).status_code == 405


# --- Once per mailbox ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "normalised"),
    [
        ("Jane.Doe+x@Gmail.com", "janedoe@gmail.com"),
        ("janedoe@googlemail.com", "janedoe@gmail.com"),
        ("j.a.n.e.d.o.e+a+b@googlemail.com", "janedoe@gmail.com"),
        ("jane.doe+news@example.com", "jane.doe@example.com"),
        ("JANE.DOE@Example.COM", "jane.doe@example.com"),
    ],
)
def test_addresses_are_normalised_to_the_mailbox_they_reach(address, normalised):
    assert email_normalise(address) == normalised


def test_the_same_mailbox_never_brings_welcome_credits_twice(settings):
    first = signed_up("jane.doe+x@gmail.com")
    second = signed_up("janedoe@googlemail.com")

    assert (
        user_email_verify(token=verification_token_make(user=first, email=first.email)).credits_granted == 500
    )
    outcome = user_email_verify(token=verification_token_make(user=second, email=second.email))

    assert outcome.credits_granted == 0
    assert balance_for_user(first) == settings.SIGNUP_CREDITS
    assert balance_for_user(second) == 0
    second.refresh_from_db()
    assert second.email_verified_at is not None  # verified all the same, just without the bonus
    assert CreditEntry.objects.filter(kind=CreditKind.SIGNUP).count() == 1
    assert VerifiedAddress.objects.get().normalised == "janedoe@gmail.com"


def test_deleting_the_account_and_signing_up_again_brings_no_second_grant(
    alice_client, alice, sign_up, anon_client
):
    alice_client.post("/account/delete/", {"confirm": "delete my account", "password": PASSWORD})
    assert not User.objects.filter(email="alice@example.com").exists()
    mail.outbox.clear()

    sign_up("Alice+again@example.com")
    anon_client.post(link_in(mail.outbox[0]))

    again = User.objects.get(email="alice+again@example.com")
    assert again.email_verified_at is not None and balance_for_user(again) == 0


def test_moving_a_verified_account_to_a_new_address_brings_no_second_grant(alice, settings):
    outcome = user_email_verify(token=verification_token_make(user=alice, email="alice.new@example.com"))

    assert outcome.email_changed and outcome.credits_granted == 0
    assert balance_for_user(alice) == settings.SIGNUP_CREDITS
    # The new mailbox is spent too: an account signing up with it later gets nothing.
    assert VerifiedAddress.objects.filter(normalised="alice.new@example.com", credits_granted=0).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_accounts_verifying_the_same_mailbox_at_once_get_one_grant(settings):
    from tests.helpers import run_concurrently

    users = [signed_up("jane.doe+x@gmail.com"), signed_up("janedoe@googlemail.com")]
    tokens = [verification_token_make(user=u, email=u.email) for u in users]

    for _ in range(3):  # a few rounds: the interleaving differs from run to run
        results = run_concurrently(lambda i: user_email_verify(token=tokens[i]), 2)
        assert not [r for r in results if isinstance(r, Exception) and "already" not in str(r)], results

    assert CreditEntry.objects.filter(kind=CreditKind.SIGNUP).count() == 1
    assert sorted(balance_for_user(u) for u in users) == [0, settings.SIGNUP_CREDITS]
    assert VerifiedAddress.objects.count() == 1
    assert User.objects.filter(email_verified_at__isnull=False).count() == 2


# --- Nothing reveals who has an account -----------------------------------------------------------------
def test_signing_up_with_a_taken_address_answers_like_a_new_sign_up(alice, sign_up, anon_client):
    taken = sign_up("ALICE@example.com", "a-different-passphrase-for-taken")
    free = sign_up("carol@example.com", "a-different-passphrase-for-taken")

    assert (taken.status_code, taken["Location"]) == (free.status_code, free["Location"])
    assert taken.content == free.content
    assert taken.cookies.keys() == free.cookies.keys()
    taken_page, free_page = (without_csrf(anon_client.get(r["Location"]).content) for r in (taken, free))
    assert "Check your e-mail" in taken_page and taken_page == free_page
    assert User.objects.filter(email__iexact="alice@example.com").count() == 1
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)  # the stranger's password changed nothing


def test_the_owner_of_a_taken_address_gets_an_e_mail_instead(alice, sign_up):
    sign_up("alice@example.com")

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["alice@example.com"]
    assert "Someone tried to sign up" in message.subject
    assert "/account/login/" in message.body and "/account/password-reset/" in message.body
    assert "/account/verify/" not in message.body


def test_changing_to_a_taken_address_answers_like_a_free_one(
    alice_client, alice, bob, django_capture_on_commit_callbacks
):
    def change(email: str):
        with django_capture_on_commit_callbacks(execute=True):
            response = alice_client.post("/account/email/", {"email": email, "password": PASSWORD})
        page = without_csrf(alice_client.get(response["Location"]).content)
        return response.status_code, response["Location"], page.replace(email, "<address>")

    taken, free = change("bob@example.com"), change("alice.new@example.com")
    assert "Check your inbox at &lt;address&gt;" in taken[2] or "Check your inbox at <address>" in taken[2]
    assert taken == free
    assert [m.to for m in mail.outbox] == [["bob@example.com"], ["alice.new@example.com"]]
    assert "another Fluxsite account" in mail.outbox[0].subject
    alice.refresh_from_db()
    bob.refresh_from_db()
    assert (alice.email, bob.email) == ("alice@example.com", "bob@example.com")


def test_a_pending_change_is_refused_if_the_address_was_taken_meanwhile(alice, anon_client):
    link = link_for(alice, "carol@example.com")
    signed_up("carol@example.com")

    response = anon_client.post(link)

    assert response.status_code == 400
    assert b"now used by another account" in response.content
    alice.refresh_from_db()
    assert alice.email == "alice@example.com"


# --- Using the site before verifying ---------------------------------------------------------------------
def test_a_training_start_before_verification_is_refused_for_lack_of_credits(sign_up, anon_client):
    from tests.training.test_dashboards import PARAMS, make_training

    sign_up("carol@example.com")
    anon_client.post("/account/login/", {"username": "carol@example.com", "password": GOOD})
    draft = make_training(User.objects.get(email="carol@example.com"), photos=10)

    response = anon_client.post(reverse("training:start", args=[draft.pk]), PARAMS)

    assert response.status_code == 402
    assert "your balance is 0" in response.content.decode()
    assert not CreditEntry.objects.filter(reference=f"training:{draft.pk}").exists()


def test_the_account_page_asks_an_unverified_user_to_verify_with_a_resend_button(
    sign_up, anon_client, settings
):
    sign_up("carol@example.com")
    anon_client.post("/account/login/", {"username": "carol@example.com", "password": GOOD})

    page = anon_client.get("/account/").content.decode()

    assert f"Verify your address to receive {settings.SIGNUP_CREDITS} welcome credits" in page
    assert reverse("accounts:verify_resend") in page


def test_a_verified_user_sees_no_banner(alice_client):
    assert b"Verify your address" not in alice_client.get("/account/").content


def test_resend_sends_at_most_one_link_a_minute(sign_up, anon_client, django_capture_on_commit_callbacks):
    sign_up("carol@example.com")
    anon_client.post("/account/login/", {"username": "carol@example.com", "password": GOOD})
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        first = anon_client.post("/account/verify/resend/", follow=True)
        second = anon_client.post("/account/verify/resend/", follow=True)
    assert b"We sent a new verification link" in first.content
    assert b"less than a minute ago" in second.content
    assert len(mail.outbox) == 1

    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=61)
    with time_machine.travel(later), django_capture_on_commit_callbacks(execute=True):
        anon_client.post("/account/verify/resend/")
    assert len(mail.outbox) == 2
    # Either unused link still works (the first one used retires the other).
    assert anon_client.post(link_in(mail.outbox[0])).status_code == 302
    assert anon_client.post(link_in(mail.outbox[1])).status_code == 400


def test_resend_for_a_verified_user_sends_nothing(alice_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post("/account/verify/resend/", follow=True)
    assert b"already verified" in response.content
    assert mail.outbox == []


def test_resend_needs_a_login_and_a_post(anon_client, alice_client):
    assert anon_client.post("/account/verify/resend/")["Location"].startswith("/account/login/")
    assert alice_client.get("/account/verify/resend/").status_code == 405


# --- Admin and the demo account -----------------------------------------------------------------------------
def test_staff_see_verified_addresses_in_the_admin(staff_client, alice):
    response = staff_client.get("/admin/accounts/verifiedaddress/")
    assert response.status_code == 200
    assert b"alice@example.com" in response.content


def test_the_demo_account_is_verified_and_has_its_welcome_credits(settings):
    from fluxsite.management.commands.ensure_demo_account import DEMO_EMAIL

    settings.DEBUG = True
    call_command("ensure_demo_account", stdout=io.StringIO())
    call_command("ensure_demo_account", stdout=io.StringIO())  # twice: the second changes nothing

    demo = User.objects.get(email=DEMO_EMAIL)
    assert demo.email_verified_at is not None
    assert balance_for_user(demo) == settings.SIGNUP_CREDITS
