"""The support page of a user: what it shows, who may see it, and each action's effect and log entry."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing.models import CheckoutRecord, CreditEntry, CreditKind, CreditPack, StripeEvent, StripeEventStatus
from fluxsite.accounts.models import User
from generations.models import Generation
from models_app.models import LoraModel
from tests.billing.conftest import ensure_catalog, stripe_event
from tests.conftest import _client_for
from tests.helpers import balance
from tests.training.test_dashboards import PARAMS, hold_credits, make_training
from training.models import ReplicateWebhook, TrainingJob

pytestmark = pytest.mark.django_db
S = TrainingJob.Status


def page_url(user) -> str:
    return reverse("admin:accounts_user_support", args=[user.pk])


def action_url(user, action: str) -> str:
    return reverse("admin:accounts_user_support_action", args=[user.pk, action])


def act(client, user, action: str, **data):
    """The confirmed POST of an action (the form, then "Yes, do it")."""
    return client.post(action_url(user, action), {**data, "confirmed": "on"}, follow=True)


def log_of(user) -> list[LogEntry]:
    return list(LogEntry.objects.filter(object_id=str(user.pk), content_type__model="user").order_by("pk"))


def lora(owner, **fields) -> LoraModel:
    return LoraModel.objects.create(
        owner=owner,
        name=(name := fields.pop("name", "Portrait")),
        slug=name.lower(),
        trigger_word="ALICEX",
        weights_file_name="weights/x/lora.safetensors",
        weights_size=10,
        weights_sha256="0" * 64,
        **fields,
    )


# --- Who may see it -----------------------------------------------------------------------------------
def test_anonymous_visitors_and_people_who_are_not_staff_are_sent_to_the_admin_login(
    anon_client, alice_client, alice
):
    for client in (anon_client, alice_client):
        response = client.get(page_url(alice))
        assert response.status_code == 302 and reverse("admin:login") in response["Location"]
        response = client.post(
            action_url(alice, "credits_adjust"), {"amount": 5, "reason": "x", "confirmed": "on"}
        )
        assert response.status_code == 302 and reverse("admin:login") in response["Location"]
    assert not log_of(alice)


def test_staff_without_the_permission_to_view_users_get_403_and_to_change_them_cannot_act(alice):
    helper = User.objects.create_user(email="helper@example.com", password="x", is_staff=True)
    client = _client_for(helper)
    assert client.get(page_url(alice)).status_code == 403
    helper.user_permissions.add(Permission.objects.get(codename="view_user"))
    client = _client_for(User.objects.get(pk=helper.pk))
    body = client.get(page_url(alice)).content.decode()
    assert "Grant or take back" not in body
    before = balance(alice)
    response = client.post(
        action_url(alice, "credits_adjust"), {"amount": 5, "reason": "x", "confirmed": "on"}
    )
    assert response.status_code == 403 and balance(alice) == before and not log_of(alice)


def test_the_page_answers_only_get_and_the_actions_only_post(staff_client, alice):
    assert staff_client.post(page_url(alice)).status_code == 405
    assert staff_client.get(action_url(alice, "credits_adjust")).status_code == 405
    assert staff_client.post(action_url(alice, "no_such_action"), {"reason": "x"}).status_code == 404
    assert staff_client.get(reverse("admin:accounts_user_support", args=[999999])).status_code == 404


def test_the_user_list_and_change_page_link_to_it(staff_client, alice):
    assert page_url(alice) in staff_client.get(reverse("admin:accounts_user_changelist")).content.decode()
    assert (
        page_url(alice)
        in staff_client.get(reverse("admin:accounts_user_change", args=[alice.pk])).content.decode()
    )


# --- What it shows ------------------------------------------------------------------------------------
def test_it_shows_the_balance_and_the_users_own_things_linked_to_their_admin_pages(staff_client, alice, bob):
    job = make_training(alice, name="Alice portrait", status=S.SUCCEEDED)
    make_training(bob, name="Bob secret")
    model = lora(alice, name="Alice model")
    gen = Generation.objects.create(
        owner=alice, model_name="Alice model", prompt="a cat", effective_prompt="a cat"
    )

    body = staff_client.get(page_url(alice)).content.decode()

    assert f"{balance(alice)} credits" in body
    assert reverse("admin:training_trainingjob_change", args=[job.pk]) in body and "Bob secret" not in body
    assert reverse("admin:models_app_loramodel_change", args=[model.pk]) in body
    assert reverse("admin:generations_generation_change", args=[gen.pk]) in body
    signup = CreditEntry.objects.get(wallet__user=alice, kind=CreditKind.SIGNUP)
    assert reverse("admin:billing_creditentry_change", args=[signup.pk]) in body


def test_long_lists_are_cut_with_a_link_to_the_admins_list(staff_client, alice):
    jobs = [make_training(alice, name=f"T{i}") for i in range(25)]
    body = staff_client.get(page_url(alice)).content.decode()
    assert len(re.findall(r"/admin/training/trainingjob/\d+/change/", body)) == 20
    assert f"#{jobs[24].pk} T24<" in body and f"#{jobs[0].pk} T0<" not in body  # the newest 20
    assert f"{reverse('admin:training_trainingjob_changelist')}?owner__id__exact={alice.pk}" in body
    listed = staff_client.get(
        f"{reverse('admin:training_trainingjob_changelist')}?owner__id__exact={alice.pk}"
    )
    assert listed.status_code == 200 and "T0" in listed.content.decode()


def test_the_page_costs_the_same_queries_with_a_few_rows_and_with_many(staff_client, alice):
    def rows(start: int, stop: int) -> None:
        for i in range(start, stop):
            job = make_training(alice, name=f"T{i}", status=S.FAILED, replicate_training_id=f"r8{i}")
            lora(alice, name=f"M{i}")
            Generation.objects.create(owner=alice, model_name="M", prompt="p", effective_prompt="p")
            ReplicateWebhook.objects.create(
                webhook_id=f"msg_{i}", replicate_id=job.replicate_training_id, kind="training", payload={}
            )
            act(staff_client, alice, "credits_adjust", amount=1, reason=f"r{i}")

    rows(0, 1)
    staff_client.get(page_url(alice))
    with CaptureQueriesContext(connection) as few:
        staff_client.get(page_url(alice))
    rows(1, 31)
    with CaptureQueriesContext(connection) as many:
        body = staff_client.get(page_url(alice)).content.decode()
    assert len(few) == len(many) and "Reason: r30" in body and "Reason: r0<" not in body


# --- Every action: a confirmation first, a reason always, the effect, the log -----------------------------
def test_an_action_asks_for_confirmation_first_and_changes_nothing_until_confirmed(staff_client, alice):
    before = balance(alice)
    response = staff_client.post(action_url(alice, "credits_adjust"), {"amount": 50, "reason": "goodwill"})
    body = response.content.decode()
    assert response.status_code == 200 and "Adjust the balance by +50 credits" in body and "goodwill" in body
    assert 'name="confirmed"' in body and balance(alice) == before and not log_of(alice)


def test_an_action_without_a_reason_is_refused(staff_client, alice):
    before = balance(alice)
    body = act(staff_client, alice, "credits_adjust", amount=50, reason="  ").content.decode()
    assert "reason" in body and balance(alice) == before and not log_of(alice)


def test_granting_credits_is_a_ledger_adjustment_logged_with_who_and_why(staff_client, staff, alice):
    before = balance(alice)
    body = act(
        staff_client, alice, "credits_adjust", amount=250, reason="Lost a training to an outage"
    ).content.decode()
    assert balance(alice) == before + 250 and "Adjusted the balance by +250" in body
    entry = CreditEntry.objects.get(wallet__user=alice, kind=CreditKind.ADJUSTMENT, amount=250)
    assert "Lost a training to an outage" in entry.note and staff.email in entry.note
    [log] = log_of(alice)
    assert log.user == staff and "Lost a training to an outage" in log.change_message
    assert entry.reference in log.change_message
    assert "Lost a training to an outage" in body  # the page's support log


def test_taking_back_more_than_the_balance_is_refused_and_not_logged(staff_client, alice):
    before = balance(alice)
    body = act(staff_client, alice, "credits_adjust", amount=-(before + 1), reason="mistake").content.decode()
    assert "your balance is" in body and balance(alice) == before and not log_of(alice)


def test_refunding_a_spend_gives_it_back_once(staff_client, staff, alice):
    job = make_training(alice, status=S.SUCCEEDED)
    hold_credits(job, 80)
    spend = CreditEntry.objects.get(reference=f"training:{job.pk}")
    act(staff_client, alice, "credits_refund", object_id=spend.pk, reason="Bad results")
    assert balance(alice) == 80
    assert CreditEntry.objects.filter(reference=f"refund:training:{job.pk}", amount=80).exists()
    body = act(staff_client, alice, "credits_refund", object_id=spend.pk, reason="again").content.decode()
    assert "already refunded" in body and balance(alice) == 80
    [log] = log_of(alice)
    assert log.user == staff and "Bad results" in log.change_message


def test_refunding_bobs_entry_from_alices_page_is_refused(staff_client, alice, bob):
    job = make_training(bob, status=S.SUCCEEDED)
    hold_credits(job, 80)
    spend = CreditEntry.objects.get(reference=f"training:{job.pk}")
    body = act(staff_client, alice, "credits_refund", object_id=spend.pk, reason="x").content.decode()
    assert "no such ledger entry" in body and balance(bob) == 0 and not log_of(alice)


def test_canceling_a_training_refunds_it_and_its_debugger_names_the_operator(staff_client, staff, alice):
    job = make_training(alice, status=S.ZIP_CREATION, photos=3)
    hold_credits(job, 60)
    act(staff_client, alice, "training_cancel", object_id=job.pk, reason="Asked by e-mail")
    job.refresh_from_db()
    assert job.status == S.CANCELED and balance(alice) == 60
    assert job.events.filter(
        message__contains=f"Canceled by support ({staff.email}): Asked by e-mail"
    ).exists()
    [log] = log_of(alice)
    assert (
        log.user == staff and f"#{job.pk}" in log.change_message and "Asked by e-mail" in log.change_message
    )


def test_canceling_a_finished_training_is_refused(staff_client, alice):
    job = make_training(alice, status=S.SUCCEEDED)
    body = act(staff_client, alice, "training_cancel", object_id=job.pk, reason="x").content.decode()
    assert "Only a running training can be canceled" in body and not log_of(alice)


def test_retrying_a_failed_training_resumes_its_failed_stage_with_credits_held_again(
    staff_client, staff, alice
):
    job = make_training(alice, status=S.FAILED, photos=3, failed_stage=S.ZIP_CREATION, params=PARAMS)
    hold_credits(job, 50)
    from billing.services import credits_refund

    credits_refund(spend_reference=f"training:{job.pk}")
    act(staff_client, alice, "training_retry", object_id=job.pk, reason="Fixed the storage")
    job.refresh_from_db()
    assert job.status == S.ZIP_CREATION and balance(alice) == 0
    [log] = log_of(alice)
    assert (
        log.user == staff
        and "Fixed the storage" in log.change_message
        and "zip_creation" in log.change_message
    )


def test_resending_the_last_notification_mails_the_last_finished_training_again(staff_client, staff, alice):
    older = make_training(
        alice, name="Older", status=S.SUCCEEDED, finished_at=timezone.now() - timedelta(days=2)
    )
    last = make_training(
        alice, name="Latest", status=S.FAILED, finished_at=timezone.now(), error_message="Out of memory."
    )
    make_training(alice, name="Running", status=S.REPLICATE_TRAINING)
    assert older.pk < last.pk
    act(staff_client, alice, "notification_resend", reason="Never arrived")
    [message] = mail.outbox
    assert message.to == [alice.email] and "“Latest” failed" in message.subject
    [log] = log_of(alice)
    assert log.user == staff and "Never arrived" in log.change_message and f"#{last.pk}" in log.change_message


def test_resending_with_nothing_sent_yet_is_refused(staff_client, alice):
    body = act(staff_client, alice, "notification_resend", reason="x").content.decode()
    assert "no notification yet" in body and not mail.outbox and not log_of(alice)


def test_publishing_a_failed_model_again_moves_it_back_to_publishing(
    staff_client, staff, alice, django_capture_on_commit_callbacks
):
    model = lora(alice, status=LoraModel.Status.PUBLISH_FAILED, publish_error_message="HF said 500")
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        act(staff_client, alice, "model_publish", object_id=model.pk, reason="HF is back")
    model.refresh_from_db()
    assert model.status == LoraModel.Status.PUBLISHING and len(enqueued) == 1
    [log] = log_of(alice)
    assert log.user == staff and "HF is back" in log.change_message


def test_publishing_a_ready_model_again_is_refused(staff_client, alice):
    model = lora(alice, status=LoraModel.Status.READY)
    body = act(staff_client, alice, "model_publish", object_id=model.pk, reason="x").content.decode()
    assert "Only a model whose publishing failed" in body and not log_of(alice)


def test_replaying_a_stored_replicate_delivery_applies_it_again(staff_client, staff, alice):
    job = make_training(alice, status=S.REPLICATE_TRAINING, replicate_training_id="r8trainingabc")
    hold_credits(job, 70)
    delivery = ReplicateWebhook.objects.create(
        webhook_id="msg_1",
        replicate_id="r8trainingabc",
        job_hint=job.pk,
        kind="training",
        status="canceled",
        payload={"id": "r8trainingabc", "status": "canceled", "model": "m/n", "version": "v", "input": {}},
        processed_at=timezone.now(),  # processed once already: only a replay applies it again
    )
    body = staff_client.get(page_url(alice)).content.decode()
    assert reverse("admin:training_replicatewebhook_change", args=[delivery.pk]) in body
    act(
        staff_client, alice, "webhook_replay", source="replicate", object_id=delivery.pk, reason="Lost update"
    )
    job.refresh_from_db()
    assert job.status == S.CANCELED and balance(alice) == 70
    [log] = log_of(alice)
    assert log.user == staff and "msg_1" in log.change_message and "Lost update" in log.change_message


def test_replaying_a_stored_stripe_event_grants_the_purchase_once(staff_client, staff, alice):
    ensure_catalog()
    pack = CreditPack.objects.get(stripe_price_id="price_sandbox_pack_1000")
    CheckoutRecord.objects.create(user=alice, session_id="cs_test_9", mode="payment", pack=pack, credits=1000)
    session = {
        "id": "cs_test_9",
        "object": "checkout.session",
        "mode": "payment",
        "status": "complete",
        "payment_status": "paid",
        "client_reference_id": str(alice.pk),
        "metadata": {"user_id": str(alice.pk), "pack_id": str(pack.pk)},
        "payment_intent": "pi_9",
        "amount_total": pack.amount_cents,
        "currency": "usd",
    }
    payload = stripe_event("checkout.session.completed", session)
    event = StripeEvent.objects.create(
        event_id=payload["id"], type=payload["type"], payload=payload, status=StripeEventStatus.FAILED
    )
    before = balance(alice)
    assert (
        reverse("admin:billing_stripeevent_change", args=[event.pk])
        in staff_client.get(page_url(alice)).content.decode()
    )
    act(staff_client, alice, "webhook_replay", source="stripe", object_id=event.pk, reason="Was down")
    act(staff_client, alice, "webhook_replay", source="stripe", object_id=event.pk, reason="Twice")
    event.refresh_from_db()
    assert balance(alice) == before + 1000 and event.status == StripeEventStatus.PROCESSED
    assert [entry.user for entry in log_of(alice)] == [staff, staff]


def test_replaying_bobs_webhook_from_alices_page_is_refused(staff_client, alice, bob):
    job = make_training(bob, status=S.REPLICATE_TRAINING, replicate_training_id="r8bob")
    delivery = ReplicateWebhook.objects.create(
        webhook_id="msg_b", replicate_id="r8bob", kind="training", status="canceled", payload={"id": "r8bob"}
    )
    body = act(
        staff_client, alice, "webhook_replay", source="replicate", object_id=delivery.pk, reason="x"
    ).content.decode()
    assert "no such Replicate delivery" in body and not log_of(alice)
    job.refresh_from_db()
    assert job.status == S.REPLICATE_TRAINING
