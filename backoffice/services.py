"""The support page's actions: each one calls the app's own service, then records who did it and why
in Django's admin log (LogEntry, on the user the action was for, so their History shows it).

Every function takes the operator (`actor`), the user whose page it is, the object's id (looked up
among that user's objects only) and a reason; it returns what to tell the operator, and raises
SupportActionError with a message safe to show when the app's service refuses.
"""

from __future__ import annotations

from django.contrib.admin.models import CHANGE, LogEntry

from backoffice.selectors import last_notified_training, replicate_webhooks_for_user, stripe_events_for_user
from billing.models import CreditEntry
from billing.services import InsufficientCredits, credits_adjust, credits_refund, stripe_event_process
from fluxsite.accounts.models import User
from fluxsite.integrations.errors import IntegrationError
from models_app.models import LoraModel
from models_app.services import LoraStateError, lora_publish_retry
from training.models import TrainingJob
from training.services import PipelineError, training_cancel, training_notify, training_retry
from training.webhook_records import replicate_webhook_process

REASON_MAX = 300


class SupportActionError(Exception):
    """A refused support action; the message is safe to show."""


def support_log(*, actor: User, user: User, message: str, reason: str) -> LogEntry:
    """Record a support action in the admin log: by `actor`, on `user`, with what and why."""
    entry = LogEntry.objects.log_actions(
        user_id=actor.pk,
        queryset=[user],  # any iterable of model instances
        action_flag=CHANGE,
        change_message=f"Support: {message} Reason: {reason.strip()}"[:2000],
        single_object=True,
    )
    assert isinstance(entry, LogEntry)
    return entry


def _training(user: User, training_id: int) -> TrainingJob:
    job = TrainingJob.objects.filter(owner=user, pk=training_id).first()
    if job is None:
        raise SupportActionError("This user has no such training.")
    return job


def _reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise SupportActionError("Every support action needs a reason.")
    return reason[:REASON_MAX]


def support_training_cancel(*, actor: User, user: User, training_id: int, reason: str) -> str:
    reason = _reason(reason)
    job = _training(user, training_id)
    try:
        training_cancel(job=job, by=f"support ({actor.email}): {reason}")
    except (PipelineError, IntegrationError) as exc:
        raise SupportActionError(str(exc.message if isinstance(exc, IntegrationError) else exc))
    done = f"Canceled training #{job.pk} “{job.name}” (its credits refunded)."
    support_log(actor=actor, user=user, message=done, reason=reason)
    return done


def support_training_retry(*, actor: User, user: User, training_id: int, reason: str) -> str:
    reason = _reason(reason)
    job = _training(user, training_id)
    failed_stage = job.failed_stage
    try:
        job = training_retry(job=job)
    except (PipelineError, InsufficientCredits) as exc:
        raise SupportActionError(str(exc))
    done = f"Retried training #{job.pk} “{job.name}” from its failed stage ({failed_stage or 'the start'})."
    support_log(actor=actor, user=user, message=done, reason=reason)
    return done


def support_credits_adjust(*, actor: User, user: User, amount: int, reason: str) -> str:
    """Grant (amount > 0) or take back (amount < 0) credits: an adjustment entry of the ledger."""
    reason = _reason(reason)
    try:
        result = credits_adjust(user=user, amount=amount, note=reason, actor=actor.email)
    except (InsufficientCredits, ValueError) as exc:
        raise SupportActionError(str(exc))
    done = f"Adjusted the balance by {amount:+d} credits (ledger entry {result.entry.reference})."
    support_log(actor=actor, user=user, message=done, reason=reason)
    return done


def support_credits_refund(*, actor: User, user: User, entry_id: int, reason: str) -> str:
    """Give back one spend of the user's ledger, at most once (billing's credits_refund)."""
    reason = _reason(reason)
    spend = CreditEntry.objects.filter(wallet__user=user, pk=entry_id).first()
    if spend is None:
        raise SupportActionError("This user has no such ledger entry.")
    result = credits_refund(spend_reference=spend.reference, note=f"Refunded by support: {reason}")
    if result is None:
        raise SupportActionError("Only a spend can be refunded.")
    if not result.created:
        raise SupportActionError(f"This spend was already refunded ({result.entry.reference}).")
    done = f"Refunded {result.entry.amount} credits of {spend.reference} ({result.entry.reference})."
    support_log(actor=actor, user=user, message=done, reason=reason)
    return done


def support_notification_resend(*, actor: User, user: User, reason: str) -> str:
    """Send again the e-mail about the user's last finished training."""
    reason = _reason(reason)
    job = last_notified_training(user=user)
    if job is None:
        raise SupportActionError("This user has had no notification yet (no training has ended).")
    training_notify(job_id=job.pk)
    done = f"Sent the notification of training #{job.pk} “{job.name}” ({job.status}) again to {user.email}."
    support_log(actor=actor, user=user, message=done, reason=reason)
    return done


def support_model_publish(*, actor: User, user: User, model_id: int, reason: str) -> str:
    reason = _reason(reason)
    model = LoraModel.objects.filter(owner=user, pk=model_id).first()
    if model is None:
        raise SupportActionError("This user has no such model.")
    try:
        lora_publish_retry(model=model)
    except LoraStateError as exc:
        raise SupportActionError(str(exc))
    done = f"Publishing model #{model.pk} “{model.name}” to Hugging Face again."
    support_log(actor=actor, user=user, message=done, reason=reason)
    return done


def support_webhook_replay(*, actor: User, user: User, source: str, record_id: int, reason: str) -> str:
    """Apply a stored Replicate delivery or Stripe event again (both appliers are safe to run twice)."""
    reason = _reason(reason)
    if source == "replicate":
        delivery = replicate_webhooks_for_user(user=user).filter(pk=record_id).first()
        if delivery is None:
            raise SupportActionError("This user has no such Replicate delivery.")
        if not replicate_webhook_process(delivery_id=delivery.pk, replay=True):
            raise SupportActionError("This delivery was refused when it came: it is never applied.")
        done = f"Replayed Replicate delivery {delivery.webhook_id} ({delivery.kind} {delivery.replicate_id})."
    elif source == "stripe":
        event = stripe_events_for_user(user=user).filter(pk=record_id).first()
        if event is None:
            raise SupportActionError("This user has no such Stripe event.")
        try:
            status = stripe_event_process(event_pk=event.pk)
        except Exception as exc:  # the event is marked failed with its error; the operator sees the kind
            raise SupportActionError(
                f"Replaying {event.event_id} failed ({type(exc).__name__}); see the event."
            )
        done = f"Replayed Stripe event {event.event_id} ({event.type}): {status}."
    else:
        raise SupportActionError("Unknown webhook source.")
    support_log(actor=actor, user=user, message=done, reason=reason)
    return done
