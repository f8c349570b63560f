"""The back office in Chromium: the overview's charts drawn without a CSP error, and a support action
taken through its form and its confirmation, as an operator would."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from billing.models import CreditKind
from billing.services import credits_grant
from tests.conftest import PASSWORD, _make_user
from tests.helpers import balance
from tests.training.test_dashboards import make_training
from training.models import TrainingJob

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots" / "backoffice"
S = TrainingJob.Status


def _log_in(page, live_server, user) -> None:
    client = Client()
    assert client.login(email=user.email, password=PASSWORD)
    page.context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )


def test_an_operator_reads_the_overview_and_grants_credits_from_a_users_support_page(
    browser_page, live_server
):
    page = browser_page
    staff = _make_user("staff@example.com", is_staff=True, is_superuser=True)
    alice = _make_user("alice@example.com")
    make_training(alice, status=S.SUCCEEDED, finished_at=timezone.now(), predict_time=1200.0)
    make_training(alice, status=S.FAILED, error_category="out_of_memory", finished_at=timezone.now())
    credits_grant(
        user=alice, amount=1000, reference="stripe:checkout:cs_b", kind=CreditKind.PURCHASE, amount_cents=1000
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    _log_in(page, live_server, staff)

    page.goto(f"{live_server.url}/admin/")
    charts = page.locator(".backoffice-overview svg")
    assert charts.count() == 4
    for i in range(4):
        box = charts.nth(i).bounding_box()
        assert box and box["width"] > 300 and box["height"] > 20
    assert page.locator(".backoffice-overview rect.succeeded").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)

    page.goto(f"{live_server.url}/admin/accounts/user/")
    page.locator(f'a[href="/admin/accounts/user/{alice.pk}/support/"]').click()
    before = balance(alice)
    page.fill('form[action$="/credits_adjust/"] input[name="amount"]', "150")
    page.fill('form[action$="/credits_adjust/"] input[name="reason"]', "Goodwill after an outage")
    page.click('form[action$="/credits_adjust/"] button')
    page.wait_for_selector("text=Adjust the balance by +150 credits")
    assert balance(alice) == before  # not before it is confirmed
    page.click('input[value="Yes, do it"]')
    page.wait_for_selector("text=Adjusted the balance by +150 credits")
    assert balance(alice) == before + 150
    assert page.locator("text=Reason: Goodwill after an outage").count() >= 1
    page.screenshot(path=str(SCREENSHOTS / "support.png"), full_page=True)
    assert page.errors == []
