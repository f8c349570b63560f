"""Images made with a LoRA model: one Generation per Replicate prediction, its GeneratedImages.

These tables were created by the models app and kept their names (db_table) when generations got
their own app, so no data moved.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from models_app.models import LoraModel


class Generation(models.Model):
    """One prediction on Replicate with a LoRA: a prompt, its parameters and the images it made.

    Statuses move only through generations.services, by compare-and-swap, because the
    worker, the prediction webhook and the poller can race:
        queued → running → succeeded | failed | canceled   (queued → failed | canceled too)
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    class Mode(models.TextChoices):
        TEXT = "text", "Text to image"
        IMAGE = "image", "Image to image"
        INPAINT = "inpaint", "Inpainting"
        UPSCALE = "upscale", "Upscale"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generations")
    # SET_NULL: deleting a model keeps the images already made with it (the gallery still shows them).
    lora_model = models.ForeignKey(
        LoraModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="generations"
    )
    model_name = models.CharField(max_length=80, help_text="The model's name when this was made.")
    prompt = models.TextField(help_text="As typed.")
    effective_prompt = models.TextField(help_text="As sent: with the trigger word.")
    params = models.JSONField(default=dict, help_text="Our form's parameters (guidance_scale, not guidance).")
    num_outputs = models.PositiveSmallIntegerField(default=1)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.TEXT)
    # Image to image, inpainting and upscaling start from an image (and inpainting from a mask), kept
    # in the private storage and sent to Replicate as expiring signed URLs; "again" reuses them.
    input_image_name = models.CharField(max_length=300, blank=True)
    mask_name = models.CharField(max_length=300, blank=True)
    # The gallery image it started from (picked as the input, or upscaled): the upscale is shown
    # beside its original. SET_NULL: deleting the original keeps what was made from it.
    source_image = models.ForeignKey(
        "GeneratedImage", null=True, blank=True, on_delete=models.SET_NULL, related_name="derived_generations"
    )
    # A second LoRA of the same owner (extra_lora), its strength in params["extra_lora_scale"].
    extra_lora_model = models.ForeignKey(
        LoraModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="extra_generations"
    )
    seed = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)

    cost_credits = models.PositiveIntegerField(default=0)
    credit_reference = models.CharField(max_length=80, blank=True)

    # Replicate: "version:<64 hex>" or "model:owner/name" (with lora_weights in the input).
    replicate_target = models.CharField(max_length=300, blank=True)
    replicate_prediction_id = models.CharField(max_length=64, blank=True, db_index=True)
    replicate_status = models.CharField(max_length=20, blank=True)
    # Claims: only the worker that sets one may create the paid prediction / copy the outputs.
    submit_started_at = models.DateTimeField(null=True, blank=True)
    output_claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Attempts at creating the prediction.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_news_at = models.DateTimeField(null=True, blank=True)
    predict_time = models.FloatField(null=True, blank=True, help_text="Billed GPU seconds.")

    error_category = models.CharField(max_length=20, blank=True)
    error_message = models.TextField(blank=True)
    invalid_fields = models.JSONField(default=list, blank=True, help_text="Replicate's 422 invalid_fields.")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "models_app_generation"  # the table kept its name when generations got their own app
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["status", "last_news_at"]),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.model_name}: {self.prompt[:40]}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELED)


class GeneratedImage(models.Model):
    """One output image, copied into the public storage (Replicate's own URLs expire)."""

    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="images")
    # The generation's owner, copied: the gallery reads a page of a person's images off one index
    # instead of sorting all of them through a join.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    index = models.PositiveSmallIntegerField()
    file_name = models.CharField(max_length=300)
    thumbnail_name = models.CharField(max_length=300)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    byte_size = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "models_app_generatedimage"
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["generation", "index"], name="generated_image_unique_index")
        ]
        indexes = [models.Index(fields=["owner", "-created_at", "-id"], name="generated_image_owner_newest")]

    def __str__(self) -> str:
        return f"{self.generation_id}#{self.index}"


class InputImage(models.Model):
    """An image a person brought to start a generation from, other than an upload or a gallery image:
    today a photo of one of their datasets, copied here by the training app
    (generations.services.input_image_add), since this app never reads the training's tables. Kept
    privately; a generation made from it stores its own copy, so these may be pruned."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    file_name = models.CharField(max_length=300, help_text="In the private storage.")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    label = models.CharField(max_length=200, help_text="Where it came from, as the generate page says.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.label} ({self.width}×{self.height})"
