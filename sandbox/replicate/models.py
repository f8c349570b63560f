"""State of the Replicate stand-in: models, versions, trainings and predictions.

A training's or prediction's status is not stored: it is derived from the time elapsed since
creation (see sandbox.replicate.simulation), so a GET always shows where a real run would be.
Only facts that time cannot tell are stored: the dataset check, a cancellation, a planned failure.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class VersionKind(models.TextChoices):
    TRAINER = "trainer", "LoRA trainer"
    GENERATOR = "generator", "Base image model"
    LORA = "lora", "Trained LoRA"
    CAPTIONER = "captioner", "Captioning (vision) model"


class SandboxModel(models.Model):
    """A model on the stand-in (`owner/name`): a destination for trainings, or a built-in one."""

    owner = models.CharField(max_length=100)
    name = models.CharField(max_length=100)
    visibility = models.CharField(max_length=10, default="private")
    hardware = models.CharField(max_length=40, default="cpu")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="sandbox_replicate_model_unique")
        ]
        ordering = ["owner", "name"]

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}"


class SandboxVersion(models.Model):
    model = models.ForeignKey(SandboxModel, on_delete=models.CASCADE, related_name="versions")
    version_id = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=12, choices=VersionKind.choices)
    openapi_schema = models.JSONField(default=dict)
    training_id = models.CharField(max_length=40, blank=True, help_text="The training that produced it.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.model}:{self.version_id[:12]}"


class SandboxTraining(models.Model):
    id = models.CharField(max_length=40, primary_key=True)
    trainer = models.CharField(max_length=200, help_text="owner/name of the trainer model.")
    trainer_version = models.CharField(max_length=64)
    destination = models.CharField(max_length=200)
    input = models.JSONField(default=dict)
    webhook = models.URLField(max_length=1000, blank=True)
    webhook_events_filter = models.JSONField(default=list)
    base_url = models.CharField(
        max_length=500, help_text="Absolute URL of the stand-in, for urls.* and files."
    )
    created_at = models.DateTimeField(default=timezone.now)
    duration_seconds = models.FloatField()
    fail_midway = models.BooleanField(default=False, help_text="Armed by a fail_training fault.")
    dataset_checked_at = models.DateTimeField(null=True, blank=True)
    dataset_error = models.TextField(blank=True)
    dataset_images = models.JSONField(default=list, help_text="Image names found in the zip.")
    captions = models.JSONField(default=dict, help_text="Image stem to caption text.")
    photos = models.JSONField(
        default=list,
        blank=True,
        help_text="Small JPEG thumbnails (base64) of the dataset's first images: what the trained "
        "version's sandbox pictures are made of.",
    )
    canceled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.id} → {self.destination}"


class SandboxPrediction(models.Model):
    id = models.CharField(max_length=40, primary_key=True)
    model = models.CharField(max_length=200)
    version = models.CharField(max_length=64)
    input = models.JSONField(default=dict)
    webhook = models.URLField(max_length=1000, blank=True)
    webhook_events_filter = models.JSONField(default=list)
    base_url = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    duration_seconds = models.FloatField()
    error = models.TextField(
        blank=True,
        help_text="Set at creation when the run is bound to fail (NSFW, an input image that does not open).",
    )
    text_output = models.JSONField(
        null=True, blank=True, help_text="A captioning model's output, decided at creation from the image."
    )
    # The input image and mask as the predictor uses them (RGB and binarised L, PNG, at the output
    # size), fetched and decoded at creation like a captioner's image: the output files are drawn
    # from them later, so a signed URL that has expired by then changes nothing.
    input_image = models.BinaryField(null=True, blank=True)
    input_mask = models.BinaryField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.id} ({self.model})"
