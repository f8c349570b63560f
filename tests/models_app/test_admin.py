"""The admin pages of the models app, and its retry-publishing action."""

from __future__ import annotations

import pytest

from models_app.models import HuggingFaceAccount, LoraModel
from models_app.services.hf_accounts import token_encrypt

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed(alice):
    return LoraModel.objects.create(
        owner=alice,
        name="Portrait",
        slug="portrait",
        trigger_word="ALICEX",
        weights_file_name="weights/x/lora.safetensors",
        weights_size=1,
        weights_sha256="0" * 64,
        status=LoraModel.Status.PUBLISH_FAILED,
        publish_error_category="rate_limit",
        publish_error_message="Slow down",
    )


def test_the_changelists_filter_and_search(staff_client, failed, alice):
    HuggingFaceAccount.objects.create(
        user=alice,
        username="alice",
        token_encrypted=token_encrypt("hf_secret1234"),
        token_last4="1234",
        checked_at=failed.created_at,
    )
    page = staff_client.get("/admin/models_app/loramodel/?status__exact=publish_failed&q=ALICEX")
    assert page.status_code == 200 and b"Portrait" in page.content
    account = staff_client.get("/admin/models_app/huggingfaceaccount/")
    assert account.status_code == 200 and b"1234" in account.content
    change = staff_client.get(f"/admin/models_app/huggingfaceaccount/{alice.hf_account.pk}/change/")
    assert change.status_code == 200 and b"hf_secret1234" not in change.content
    assert alice.hf_account.token_encrypted.encode() not in change.content


def test_the_retry_action_moves_failed_models_back_to_publishing(staff_client, failed, monkeypatch):
    # The task itself is covered against the sandbox in test_publishing; here only the transition
    # is checked, so the queue runs nothing (django-q2's async mode with no cluster).
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)
    response = staff_client.post(
        "/admin/models_app/loramodel/", {"action": "retry_publishing", "_selected_action": [failed.pk]}
    )
    assert response.status_code == 302
    failed.refresh_from_db()
    assert failed.status == LoraModel.Status.PUBLISHING
