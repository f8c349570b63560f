"""The admin index's overview: real rows in, the same few queries whatever their number, SVG out."""

from __future__ import annotations

import re
from datetime import timedelta
from xml.etree import ElementTree

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from backoffice.selectors import overview
from billing.models import CreditEntry, CreditKind, Plan, Subscription, SubscriptionStatus
from billing.services import credits_grant, credits_refund, credits_spend
from fluxsite.accounts.models import User
from tests.conftest import _client_for
from tests.training.test_dashboards import make_training
from training.models import TrainingJob

pytestmark = pytest.mark.django_db
S = TrainingJob.Status
OVERVIEW_QUERIES = 6


def _rows(owner, count: int) -> None:
    """`count` trainings of each outcome over the last days, with their ledger and money."""
    now = timezone.now()
    for i in range(count):
        day = now - timedelta(days=i % 5)
        ok = make_training(owner, name=f"ok{i}", status=S.SUCCEEDED, trainer="flux-dev", predict_time=1000.0)
        bad = make_training(owner, name=f"bad{i}", status=S.FAILED, error_category="out_of_memory")
        TrainingJob.objects.filter(pk__in=[ok.pk, bad.pk]).update(created_at=day, finished_at=day)
        credits_grant(
            user=owner,
            amount=1000,
            reference=f"stripe:checkout:cs_{i}",
            kind=CreditKind.PURCHASE,
            amount_cents=1000,
            currency="usd",
        )
        credits_spend(user=owner, amount=40, reference=f"training:x{i}", kind=CreditKind.SPEND_TRAINING)


def _overview(body: str) -> str:
    return body.split('class="backoffice-overview"')[1].split("</section>")[0]


def test_it_reads_everything_in_six_queries_at_one_row_and_at_many(alice, django_assert_num_queries):
    _rows(alice, 1)
    with django_assert_num_queries(OVERVIEW_QUERIES):
        small = overview()
    _rows(alice, 40)
    with django_assert_num_queries(OVERVIEW_QUERIES):
        large = overview()
    assert small.totals["trainings"] == 2 and large.totals["trainings"] == 82


def test_the_index_page_costs_the_same_queries_at_one_row_and_at_many(staff_client, alice):
    _rows(alice, 1)
    staff_client.get(reverse("admin:index"))  # warms the content types and the session
    with CaptureQueriesContext(connection) as few:
        assert staff_client.get(reverse("admin:index")).status_code == 200
    _rows(alice, 30)
    with CaptureQueriesContext(connection) as many:
        assert staff_client.get(reverse("admin:index")).status_code == 200
    assert len(few) == len(many)


def test_it_counts_trainings_failures_money_subscriptions_and_credits_from_the_rows(alice, bob):
    today = timezone.localdate()
    yesterday = timezone.now() - timedelta(days=1)
    ok = make_training(alice, status=S.SUCCEEDED, trainer="flux-dev", predict_time=2000.0)
    TrainingJob.objects.filter(pk=ok.pk).update(finished_at=timezone.now())
    for category in ("out_of_memory", "out_of_memory", "file_error"):
        make_training(alice, status=S.FAILED, error_category=category, finished_at=yesterday)
    make_training(bob, status=S.REPLICATE_TRAINING)
    make_training(bob, status=S.DRAFT)  # never started: not a training of the chart
    old = make_training(bob, status=S.FAILED, error_category="validation")
    TrainingJob.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=45), finished_at=timezone.now() - timedelta(days=45)
    )
    credits_grant(
        user=alice, amount=500, reference="stripe:checkout:cs_1", kind=CreditKind.PURCHASE, amount_cents=1250
    )
    credits_grant(
        user=bob,
        amount=500,
        reference="stripe:checkout:cs_2",
        kind=CreditKind.PURCHASE,
        amount_cents=700,
        currency="eur",
    )
    credits_spend(user=alice, amount=300, reference="training:s1", kind=CreditKind.SPEND_TRAINING)
    credits_spend(user=alice, amount=100, reference="training:s2", kind=CreditKind.SPEND_TRAINING)
    credits_refund(spend_reference="training:s2")
    plan = Plan.objects.create(
        name="Creator", credits_per_period=1000, stripe_price_id="price_c", amount_cents=900
    )
    Subscription.objects.create(
        user=alice, stripe_subscription_id="sub_1", plan=plan, status=SubscriptionStatus.ACTIVE
    )
    Subscription.objects.create(
        user=bob, stripe_subscription_id="sub_2", plan=plan, status=SubscriptionStatus.CANCELED
    )

    ov = overview()

    assert ov.days[-1] == today and len(ov.days) == 30
    assert ov.trainings[S.SUCCEEDED][-1] == 1 and ov.trainings[S.FAILED][-1] == 3
    assert ov.trainings[S.REPLICATE_TRAINING][-1] == 1 and S.DRAFT not in ov.trainings
    assert ov.failures == [("out_of_memory", 2, 4), ("file_error", 1, 4)]  # the 45-day-old one is out
    assert ov.totals["failure_rate"] == 75.0
    assert str(ov.cost_dollars[-1]) == "3.05"  # 2000 s × $0.001525 of flux-dev's H100
    assert str(ov.revenue_dollars[-1]) == "12.5" and ov.other_currencies == {"eur": 700}
    assert ov.subscriptions == [("Creator", 1)]
    signups = sum(e.amount for e in CreditEntry.objects.filter(kind=CreditKind.SIGNUP))
    assert ov.granted[-1] == 1000 + signups
    assert ov.spent[-1] == 300  # 400 spent, 100 of it refunded


def test_the_index_draws_the_charts_from_the_rows(staff_client, alice):
    make_training(alice, status=S.SUCCEEDED, finished_at=timezone.now(), predict_time=1000.0)
    make_training(alice, status=S.FAILED, error_category="out_of_memory", finished_at=timezone.now())
    credits_grant(
        user=alice, amount=500, reference="stripe:checkout:cs_1", kind=CreditKind.PURCHASE, amount_cents=2000
    )
    today = timezone.localdate().isoformat()

    body = staff_client.get(reverse("admin:index")).content.decode()

    section = _overview(body)
    assert section.count("<svg") == 4 and "<script" not in section and "style=" not in section
    for svg in re.findall(r"<svg.*?</svg>", section, flags=re.S):
        ElementTree.fromstring(svg)  # each chart is well-formed XML
    assert f"<title>{today}: 1 Succeeded</title>" in body
    assert f"<title>{today}: 1 Failed</title>" in body
    assert "<title>out_of_memory: 1 of 2 (50.0%)</title>" in body
    assert f"<title>{today}: $20 revenue</title>" in body
    assert f"<title>{today}: $1.52 Replicate cost</title>" in body
    assert "css/backoffice.css" in body
    assert reverse("admin:training_trainingjob_changelist") in body


def test_an_empty_site_draws_empty_charts(staff_client):
    body = staff_client.get(reverse("admin:index")).content.decode()
    section = _overview(body)
    assert section.count("<svg") == 3 and "No training failed." in section


def test_the_overview_is_for_staff_only(alice_client, anon_client):
    for client in (alice_client, anon_client):
        response = client.get(reverse("admin:index"))
        assert response.status_code == 302 and reverse("admin:login") in response["Location"]


def test_staff_who_may_not_read_trainings_and_the_ledger_see_the_index_without_the_overview(alice):
    helper = User.objects.create_user(email="helper@example.com", password="x", is_staff=True)
    helper.user_permissions.add(Permission.objects.get(codename="view_user"))
    body = _client_for(helper).get(reverse("admin:index")).content.decode()
    assert "backoffice-overview" not in body and reverse("admin:accounts_user_changelist") in body
    helper.user_permissions.add(
        Permission.objects.get(codename="view_trainingjob"),
        Permission.objects.get(codename="view_creditentry"),
    )
    body = _client_for(User.objects.get(pk=helper.pk)).get(reverse("admin:index")).content.decode()
    assert "backoffice-overview" in body
