"""Storage of the Stripe stand-in.

Stripe's API is a set of JSON objects addressed by prefixed ids (cus_, cs_, pi_, ch_, sub_, in_,
price_, prod_, evt_...). One table holds them all as the JSON the API returns, so every
endpoint answers exactly what was stored; `internal` keeps what the real API hides from a GET
(the line items and the *_data parameters a Checkout Session was created with).
"""

from __future__ import annotations

from django.db import models


class StripeRecord(models.Model):
    id = models.CharField(primary_key=True, max_length=64)
    object = models.CharField(
        max_length=40, db_index=True, help_text="Stripe's `object` field, e.g. checkout.session"
    )
    data = models.JSONField(help_text="The object exactly as the API returns it.")
    internal = models.JSONField(
        default=dict, blank=True, help_text="Creation parameters the API does not echo."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "id"]

    def __str__(self) -> str:
        return f"{self.object} {self.id}"


class StripeEvent(models.Model):
    """An event as Stripe records it (GET /v1/events) and as it is delivered to the webhook."""

    id = models.CharField(primary_key=True, max_length=64)
    type = models.CharField(max_length=80, db_index=True)
    data = models.JSONField(help_text="The whole event envelope.")
    created_at = models.DateTimeField(auto_now_add=True)
    delivery_attempts = models.PositiveIntegerField(default=0)
    last_delivery_status = models.PositiveSmallIntegerField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class IdempotentRequest(models.Model):
    """The first answer given to a POST with an Idempotency-Key, replayed for the same key."""

    key = models.CharField(max_length=255, unique=True)
    path = models.CharField(max_length=255)
    params_digest = models.CharField(
        max_length=64, help_text="sha256 of the form body: a different body is refused."
    )
    status = models.PositiveSmallIntegerField()
    body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.key} → {self.status} {self.path}"
