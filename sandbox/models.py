from __future__ import annotations

from django.db import models


class FaultKind(models.TextChoices):
    STATUS = "status", "Answer with an HTTP error status"
    TIMEOUT = "timeout", "Hang longer than the client waits"
    SLOW = "slow", "Answer correctly, but slowly"
    DROP_WEBHOOK = "drop_webhook", "Do not deliver the webhook"
    DUPLICATE_WEBHOOK = "duplicate_webhook", "Deliver the webhook twice"
    REORDER_WEBHOOKS = "reorder_webhooks", "Deliver webhooks out of order"
    FAIL_TRAINING = "fail_training", "Fail the training midway"
    BAD_SIGNATURE = "bad_signature", "Sign the webhook with a wrong key"
    # A captioning model's output gone wrong (no vendor material shows these; they are what the
    # schemas allow: an empty string, a very long one, text outside the promised shape, markup).
    CAPTION_EMPTY = "caption_empty", "Caption: answer with an empty caption"
    CAPTION_LONG = "caption_long", "Caption: answer with an absurdly long caption"
    CAPTION_GARBLED = "caption_garbled", "Caption: answer outside the model's output format"
    CAPTION_MARKUP = "caption_markup", "Caption: answer with HTML and script markup"


class Fault(models.Model):
    """A fault the sandbox will inject on the next matching call(s): for tests and demos.

    `operation` names one endpoint of one service (e.g. "trainings.create", "repos.create",
    "checkout.sessions.create", "webhook.completed") or "*" for all of that service.
    """

    service = models.CharField(
        max_length=20,
        choices=[("replicate", "Replicate"), ("huggingface", "Hugging Face"), ("stripe", "Stripe")],
    )
    operation = models.CharField(max_length=80, default="*")
    kind = models.CharField(max_length=24, choices=FaultKind.choices, default=FaultKind.STATUS)
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    retry_after = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds, sent with 429/503.")
    delay_seconds = models.FloatField(default=0, help_text="For timeout and slow faults.")
    remaining = models.PositiveIntegerField(
        null=True, blank=True, default=1, help_text="Empty: until removed."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        what = f"{self.status}" if self.kind == FaultKind.STATUS else self.get_kind_display()
        return f"{self.service} {self.operation}: {what}"
