from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: Any) -> User:
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A Fluxsite account: the e-mail address is the login."""

    # Django removes an inherited field set to None; the stubs cannot say "no such field".
    username = None  # type: ignore[assignment]
    email = models.EmailField("e-mail address", unique=True, max_length=254)
    # Set when the current address was proven by a verification link; welcome credits come then.
    email_verified_at = models.DateTimeField("e-mail verified at", null=True, blank=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    # The stubs pin AbstractUser.objects to auth's UserManager, whose create_user() takes a username
    # first; ours takes the e-mail address, as this model has no username.
    objects: ClassVar[UserManager] = UserManager()  # type: ignore[assignment]

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    @property
    def handle(self) -> str:
        """A short, slug-safe name for URLs and repo names (never the full e-mail)."""
        from django.utils.text import slugify

        return slugify(self.email.split("@", 1)[0])[:20] or f"user{self.pk}"


class VerifiedAddress(models.Model):
    """An address (normalised) that has been verified once: it can bring welcome credits only once.

    Rows outlive the account (user becomes NULL), so deleting an account and signing up again with
    the same mailbox brings no second welcome grant.
    """

    normalised = models.CharField(max_length=254, unique=True)
    email = models.EmailField("address as verified", max_length=254)
    user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="verified_addresses"
    )
    credits_granted = models.PositiveIntegerField(default=0)
    verified_at = models.DateTimeField()

    class Meta:
        ordering = ["-verified_at"]
        verbose_name_plural = "verified addresses"

    def __str__(self) -> str:
        return self.normalised


class ApiToken(models.Model):
    """A bearer token for the developer API (api/). The secret is shown once, when it is made; only
    its SHA-256 is kept (a token is a random 32-byte string: a fast hash is enough, no salt needed,
    and the lookup by hash is one indexed equality, whatever the secret)."""

    class Scope(models.TextChoices):
        READ = "read", "Read (trainings, models, images, credits)"
        TRAIN = "train", "Train (cancel and retry trainings)"
        GENERATE = "generate", "Generate images (spends credits)"
        WEBHOOKS = "webhooks", "Webhooks (register and delete endpoints, send test events)"

    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=60)
    prefix = models.CharField(max_length=12, help_text="The secret's first characters (fx_…).")
    last4 = models.CharField(max_length=4)
    secret_sha256 = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list, help_text="Some of read, train, generate, webhooks.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="api_token_owner_newest")]

    def __str__(self) -> str:
        return f"{self.name} (…{self.last4})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class WebhookEndpoint(models.Model):
    """A URL of the person's own that gets signed events (Standard Webhooks). The secret must be
    kept in clear: it signs every delivery (it is shown once on the page, then only in the admin)."""

    class Event(models.TextChoices):
        TRAINING_STAGE_CHANGED = "training.stage_changed", "A training moved to another stage"
        TRAINING_SUCCEEDED = "training.succeeded", "A training succeeded"
        TRAINING_FAILED = "training.failed", "A training failed"
        GENERATION_SUCCEEDED = "generation.succeeded", "An image generation succeeded"
        GENERATION_FAILED = "generation.failed", "An image generation failed"

    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list, help_text="Some of the Event values.")
    secret = models.CharField(max_length=80, help_text="whsec_ + base64 of 24 random bytes.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event for one endpoint: sent, and retried with backoff until 2xx or the last attempt."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Delivered"
        FAILED = "failed", "Failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=40, help_text="The webhook-id header (msg_…), kept on retries.")
    type = models.CharField(max_length=40)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="webhook_delivery_unique_event"),
        ]

    def __str__(self) -> str:
        return f"{self.type} → {self.endpoint_id} [{self.event_id}]"
