"""What the developer API stores of its own: the answers to POSTs sent with an Idempotency-Key.

Tokens are the account's (fluxsite.accounts.models.ApiToken): the account page manages them.
"""

from __future__ import annotations

from django.db import models

from fluxsite.accounts.models import ApiToken

IDEMPOTENCY_KEY_MAX_LENGTH = 255


class IdempotencyRecord(models.Model):
    """The first answer to a POST with this token and key. Until `status_code` is set the request
    is in flight (a second one with the key gets 409). Kept a day (`manage.py api_prune`)."""

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="idempotency_records")
    key = models.CharField(max_length=IDEMPOTENCY_KEY_MAX_LENGTH)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body.")
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    response_body = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["token", "key"], name="idempotency_unique_token_key"),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.key}]"
