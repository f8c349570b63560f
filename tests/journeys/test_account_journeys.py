"""A new person's first minutes, and the account page, in the browser at desktop and phone width."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from tests.conftest import catalog_load
from tests.helpers import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSPHRASE = "an-unusual-passphrase-for-erin"


def _sign_up_and_verify(journey, email: str) -> None:
    page = journey.page
    journey.goto("/", "landing")
    journey.goto("/account/signup/", "sign up")
    page.fill("#id_email", email)
    page.fill("#id_password1", PASSPHRASE)
    page.fill("#id_password2", PASSPHRASE)
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r"/account/signup/sent/$"))
    journey.visit("check your inbox")
    assert wait_for(lambda: any(email in m.to for m in mail.outbox))
    message = next(m for m in mail.outbox if email in m.to)
    found = re.search(r"https?://\S+/account/verify/\S+/", str(message.body))
    assert found, message.body
    link = found.group(0)
    page.goto(link)
    journey.visit("verify the address")
    if page.locator("main form button[type=submit]").count():  # a confirm button, not a GET side effect
        page.click("main form button[type=submit]")
        page.wait_for_load_state("load")
    if "/account/login/" in page.url:
        page.fill("#id_username", email)
        page.fill("#id_password", PASSPHRASE)
        page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r"/trainings/"))
    journey.visit("trainings, empty")


def test_sign_up_verify_get_the_welcome_credits_and_buy_a_pack(journey, sandbox, settings):
    from django.contrib.auth import get_user_model

    from billing.selectors import balance_for_user

    catalog_load()
    email = f"erin-{journey.width}@example.com"
    page = journey.page
    _sign_up_and_verify(journey, email)
    user = get_user_model().objects.get(email=email)
    welcome = balance_for_user(user)
    assert welcome == settings.SIGNUP_CREDITS > 0
    expect(page.locator("nav.mainnav")).to_contain_text(f"{welcome:,}".replace(",", ""))

    journey.goto("/billing/", "billing")
    page.locator("form[action*='/billing/checkout/pack/'] button[type=submit]").first.click()
    page.wait_for_url(re.compile(r"/sandbox/stripe/checkout/"))
    journey.visit("sandbox checkout")
    page.click("button[name=outcome][value=succeed]")
    page.wait_for_url(re.compile(r"/billing/checkout/success/"))
    journey.visit("checkout success")
    assert wait_for(lambda: balance_for_user(user) > welcome, timeout=20)
    bought = balance_for_user(user)
    page.goto(journey.url("/billing/"))
    expect(page.locator("nav.mainnav")).to_contain_text(str(bought))
    journey.visit("billing after the purchase")


def test_the_account_page_token_hugging_face_and_deletion(journey, sandbox, settings):
    from django.contrib.auth import get_user_model

    settings.HF_TOKEN = "hf_sandbox_journey_write_token"
    email = f"finn-{journey.width}@example.com"
    page = journey.page
    _sign_up_and_verify(journey, email)

    journey.goto("/account/", "account")
    page.fill("form[action$='/account/tokens/'] input[name=name]", "my headshot app")
    page.locator("form[action$='/account/tokens/'] button[type=submit]").click()
    secret = page.locator("#new-token-secret")
    expect(secret).to_be_visible()
    assert len(secret.inner_text().strip()) > 20
    journey.visit("token created")
    from fluxsite.accounts.models import ApiToken

    token = ApiToken.objects.get(owner__email=email)
    assert token.last4 == secret.inner_text().strip()[-4:]
    page.once("dialog", lambda dialog: dialog.accept())  # hx-confirm asks before revoking
    page.locator("a[href*='/account/tokens/'][href$='/revoke/']").first.click()
    expect(page.locator("#api-tokens")).to_contain_text("revoked")
    journey.visit("token revoked")
    token.refresh_from_db()
    assert token.revoked_at is not None

    journey.goto("/models/huggingface/", "hugging face, not connected")
    page.fill("main form input[name=token]", settings.HF_TOKEN)
    page.locator("main form[action$='/models/huggingface/'] button[type=submit]").click()
    expect(page.locator("main")).to_contain_text("Connected as")
    journey.visit("hugging face connected")
    page.locator("form[action$='/huggingface/disconnect/'] button").click()
    expect(page.locator("main")).not_to_contain_text("Connected as")
    journey.visit("hugging face disconnected")

    journey.goto("/account/delete/", "delete the account?")
    page.fill("#id_confirm", "delete my account")
    page.fill("#id_password", PASSPHRASE)
    page.locator("main form button.danger[type=submit]").click()
    page.wait_for_load_state("load")
    journey.visit("account deleted")
    assert not get_user_model().objects.filter(email=email).exists()
