"""Trained LoRA models and the Hugging Face accounts they may be published under.

A LoraModel is born from a succeeded TrainingJob: its weights are copied into our private
storage first (so the user keeps them whatever Hugging Face does), then published to a
Hugging Face repo. Statuses move only through models_app.services.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

FLUX_DEV = "black-forest-labs/FLUX.1-dev"


class LoraModel(models.Model):
    class Status(models.TextChoices):
        PUBLISHING = "publishing", "Publishing"
        READY = "ready", "Ready"
        PUBLISH_FAILED = "publish_failed", "Publishing failed"

    class Visibility(models.TextChoices):
        PRIVATE = "private", "Private"
        PUBLIC = "public", "Public"

    class SubjectKind(models.TextChoices):
        SUBJECT = "subject", "A subject"
        STYLE = "style", "A style"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lora_models")
    # The public page's address: unguessable, so the numeric ids of private models leak nothing.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=80)
    slug = models.SlugField(max_length=90)
    trigger_word = models.CharField(max_length=32)
    subject_kind = models.CharField(max_length=16, choices=SubjectKind.choices, default=SubjectKind.SUBJECT)
    description = models.TextField(blank=True)
    base_model = models.CharField(max_length=200, default=FLUX_DEV)
    # The Replicate trainer that made the weights ("owner/name"), named on the Hugging Face card.
    trained_with = models.CharField(max_length=200, default="ostris/flux-dev-lora-trainer")
    replicate_version = models.CharField(
        max_length=300, blank=True, help_text="output.version: owner/name:hash"
    )

    # Our own copy, in the "private" storage.
    weights_file_name = models.CharField(max_length=300)
    weights_size = models.BigIntegerField()
    weights_sha256 = models.CharField(max_length=64)
    config_file_name = models.CharField(max_length=300, blank=True)
    training_params = models.JSONField(default=dict, blank=True)

    hf_repo_id = models.CharField(max_length=200, blank=True)
    hf_commit = models.CharField(max_length=64, blank=True)
    # Published with the owner's own token rather than ours: later visibility changes and
    # deletion must use that token too.
    hf_via_user_account = models.BooleanField(default=False)
    visibility = models.CharField(max_length=8, choices=Visibility.choices, default=Visibility.PRIVATE)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PUBLISHING, db_index=True)
    publish_error_category = models.CharField(max_length=32, blank=True)
    publish_error_message = models.TextField(blank=True)
    publish_attempts = models.PositiveIntegerField(default=0)
    published_at = models.DateTimeField(null=True, blank=True)

    cover_image_name = models.CharField(
        max_length=300, null=True, blank=True, help_text="In the public storage."
    )
    # The latest images made with the model, newest first (at most SHOWCASE_SIZE), kept here by the
    # generations app through models_app.services (lora_showcase_add / _remove): what the list card,
    # the model page and the Hugging Face card show, without this app reading the generations' tables.
    showcase = models.JSONField(default=list, blank=True)
    # The sample grid made after training (prompts × strengths, one seed), kept here by the training
    # app through models_app.services.lora_sample_grid_set, like the showcase:
    # {"seed": int, "strengths": [float], "prompts": [str],
    #  "cells": [[{"status": str, "file_name": str, "thumbnail_name": str}, …] per prompt]}
    sample_grid = models.JSONField(default=dict, blank=True)
    # The strength its owner picked from the grid: the generate page's default.
    suggested_lora_scale = models.FloatField(null=True, blank=True)
    training = models.OneToOneField(
        "training.TrainingJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="lora_model"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "slug"], name="lora_model_unique_slug_per_owner"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.trigger_word})"

    @property
    def is_public(self) -> bool:
        return self.visibility == self.Visibility.PUBLIC

    @property
    def hf_url(self) -> str:
        if not self.hf_repo_id or self.status != self.Status.READY:
            return ""
        return f"{settings.HF_ENDPOINT.rstrip('/')}/{self.hf_repo_id}"


class HuggingFaceAccount(models.Model):
    """A user's own Hugging Face token, encrypted at rest (models_app.services.hf_accounts)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="hf_account")
    username = models.CharField(max_length=100)
    token_encrypted = models.TextField()
    token_last4 = models.CharField(max_length=4)
    checked_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.username} (…{self.token_last4})"
