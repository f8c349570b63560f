"""The admin of the account's records: tokens, webhook endpoints and deliveries are read and acted
on by staff (revoke, retry now), never added."""

from __future__ import annotations

import pytest

from fluxsite.accounts.models import ApiToken, WebhookDelivery, WebhookEndpoint
from fluxsite.accounts.services import api_token_create

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["apitoken", "webhookendpoint", "webhookdelivery", "verifiedaddress"])
def test_staff_read_the_records_but_cannot_add_one(staff_client, alice, model):
    assert staff_client.get(f"/admin/accounts/{model}/").status_code == 200
    assert staff_client.get(f"/admin/accounts/{model}/add/").status_code == 403


def test_the_revoke_action_revokes_the_active_tokens_and_leaves_revoked_ones_as_they_were(
    staff_client, alice
):
    active, _ = api_token_create(user=alice, name="active", scopes=["read"])
    old, _ = api_token_create(user=alice, name="old", scopes=["read"])
    ApiToken.objects.filter(pk=old.pk).update(revoked_at="2026-01-01T00:00:00Z")
    response = staff_client.post(
        "/admin/accounts/apitoken/",
        {"action": "revoke", "_selected_action": [active.pk, old.pk]},
        follow=True,
    )
    assert "1 token(s) revoked." in response.content.decode()
    active.refresh_from_db()
    old.refresh_from_db()
    assert active.revoked_at is not None
    assert old.revoked_at is not None and (old.revoked_at.year, old.revoked_at.month) == (2026, 1)


def test_retry_now_makes_failed_deliveries_due_and_leaves_delivered_ones(staff_client, alice):
    endpoint = WebhookEndpoint.objects.create(
        owner=alice, url="https://example.com/h", events=["training.failed"], secret="whsec_x"
    )
    S = WebhookDelivery.Status
    failed = WebhookDelivery.objects.create(endpoint=endpoint, event_id="msg_1", status=S.FAILED, attempts=6)
    done = WebhookDelivery.objects.create(endpoint=endpoint, event_id="msg_2", status=S.SUCCEEDED, attempts=1)
    response = staff_client.post(
        "/admin/accounts/webhookdelivery/",
        {"action": "retry_now", "_selected_action": [failed.pk, done.pk]},
        follow=True,
    )
    assert "1 delivery(ies) due again." in response.content.decode()
    failed.refresh_from_db()
    done.refresh_from_db()
    assert (failed.status, failed.attempts) == (S.PENDING, 0) and failed.next_attempt_at is not None
    assert (done.status, done.attempts) == (S.SUCCEEDED, 1)
