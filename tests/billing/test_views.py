from __future__ import annotations

import json

import pytest
from django.urls import reverse

from billing.models import CheckoutRecord, CreditKind, CreditPack, Plan
from billing.services import credits_spend

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("catalog")]

PRIVATE_GETS = ["billing:overview"]
PRIVATE_POSTS = [("billing:checkout_pack", True), ("billing:checkout_plan", True), ("billing:portal", False)]


def url_for(name: str, needs_pk: bool) -> str:
    if not needs_pk:
        return reverse(name)
    model = CreditPack if "pack" in name else Plan
    first = model.objects.first()
    assert first is not None
    return reverse(name, args=[first.pk])


@pytest.mark.parametrize("name", PRIVATE_GETS + ["billing:checkout_success"])
def test_private_pages_send_the_anonymous_visitor_to_log_in(anon_client, name):
    response = anon_client.get(reverse(name))
    assert response.status_code == 302 and reverse("accounts:login") in response["Location"]


@pytest.mark.parametrize("name,needs_pk", PRIVATE_POSTS)
def test_posts_refuse_the_wrong_method_and_the_anonymous_visitor(anon_client, alice_client, name, needs_pk):
    url = url_for(name, needs_pk)
    assert alice_client.get(url).status_code == 405
    response = anon_client.post(url)
    assert response.status_code == 302 and reverse("accounts:login") in response["Location"]


@pytest.mark.parametrize("name", ["billing:overview", "billing:pricing"])
def test_pages_refuse_post(alice_client, name):
    assert alice_client.post(reverse(name)).status_code == 405


def test_pricing_is_public_and_shows_packs_and_costs(anon_client, settings):
    response = anon_client.get(reverse("billing:pricing"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "$27.00" in body and "Pro" in body and "252" in body  # 3000-credit pack, plan, 1000-step training


def test_the_billing_page_shows_balance_ledger_chart_and_totals(alice, alice_client):
    credits_spend(user=alice, amount=12, reference="generation:5", kind=CreditKind.SPEND_GENERATION)
    response = alice_client.get(reverse("billing:overview"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "488 credits" in body
    assert 'class="bar"' in body and "<svg" in body and "style=" not in body
    assert "Generation #5" in body and "Welcome credits" in body
    assert "Buy for $10.00" in body


def test_the_ledger_fragment_pages_for_htmx(alice, alice_client):
    for i in range(30):
        credits_spend(user=alice, amount=1, reference=f"generation:{i}", kind=CreditKind.SPEND_GENERATION)
    first = alice_client.get(reverse("billing:overview"))
    assert "Older entries" in first.content.decode()
    response = alice_client.get(
        reverse("billing:overview") + "?" + first.context["page"].next_query, HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    # 31 entries (the welcome credits and 30 spends): 25, then the last 6 and no further link.
    assert response.status_code == 200 and "<html" not in body and body.count("<tr>") == 6
    assert 'id="ledger-rows-more"' in body and "Older entries" not in body


def test_bob_never_sees_alices_ledger_or_checkout(alice, bob, bob_client):
    credits_spend(user=alice, amount=3, reference="generation:alice-secret", kind=CreditKind.SPEND_GENERATION)
    CheckoutRecord.objects.create(user=alice, session_id="cs_alice", mode="payment", credits=1000)
    body = bob_client.get(reverse("billing:overview")).content.decode()
    assert "alice-secret" not in body
    response = bob_client.get(reverse("billing:checkout_success") + "?session_id=cs_alice")
    assert response.status_code == 404


def test_the_success_page_grants_nothing_and_polls_until_paid(alice, alice_client):
    record = CheckoutRecord.objects.create(user=alice, session_id="cs_wait", mode="payment", credits=1000)
    url = reverse("billing:checkout_success") + "?session_id=cs_wait"
    page = alice_client.get(url)
    assert page.status_code == 200 and 'hx-trigger="every 2s"' in page.content.decode()
    assert alice_client.get(url, HTTP_HX_REQUEST="true").status_code == 200  # still waiting: keep polling
    assert alice.wallet.entries.filter(kind=CreditKind.PURCHASE).count() == 0
    CheckoutRecord.objects.filter(pk=record.pk).update(status="paid")
    done = alice_client.get(url, HTTP_HX_REQUEST="true")
    assert done.status_code == 286 and "1000 credits" in done.content.decode()
    assert json.loads(done["HX-Trigger"]) == {"credits-changed": {}}  # django-htmx's trigger_client_event


def test_the_portal_without_a_customer_explains_instead_of_failing(alice_client):
    response = alice_client.post(reverse("billing:portal"), follow=True)
    assert "nothing to manage" in response.content.decode() or "no subscription" in response.content.decode()


def test_admin_adjusts_credits_through_the_service(staff_client, alice):
    wallet = alice.wallet
    url = reverse("admin:billing_wallet_adjust", args=[wallet.pk])
    assert staff_client.get(url).status_code == 200
    response = staff_client.post(url, {"amount": "25", "note": "Support ticket 12"})
    assert response.status_code == 302
    entry = wallet.entries.get(kind=CreditKind.ADJUSTMENT)
    assert entry.amount == 25 and "staff@example.com" in entry.note
    for model in (
        "wallet",
        "creditentry",
        "creditpack",
        "plan",
        "stripecustomer",
        "subscription",
        "checkoutrecord",
        "stripeevent",
    ):
        assert staff_client.get(reverse(f"admin:billing_{model}_changelist")).status_code == 200


def test_the_navigation_balance_refreshes_itself_when_credits_change(alice_client, alice):
    from billing.services import credits_grant

    page = alice_client.get("/billing/").content.decode()
    assert 'hx-trigger="credits-changed from:body"' in page
    credits_grant(user=alice, amount=250, reference="test:pill")
    pill = alice_client.get("/billing/balance/")
    assert pill.status_code == 200 and "750 credits" in pill.content.decode()
    assert alice_client.post("/billing/balance/").status_code == 405


def test_a_retried_training_spend_links_to_its_training():
    from billing.models import CreditEntry
    from billing.selectors import entry_source

    assert entry_source(CreditEntry(reference="training:5:2")) == ("Training #5", "/trainings/5/")
    assert entry_source(CreditEntry(reference="refund:training:5:2")) == (
        "Refund of Training #5",
        "/trainings/5/",
    )
