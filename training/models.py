"""Trainings and their datasets.

A TrainingJob starts as a draft: its owner names it, picks a trigger word and builds a dataset
of photos. The pipeline (a later step) adds stages and vendor fields to TrainingJob.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class TrainingJob(models.Model):
    class SubjectKind(models.TextChoices):
        SUBJECT = "subject", "A subject (person, pet, product)"
        STYLE = "style", "A style"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        INITIALIZING = "initializing", "Initializing"
        ZIP_CREATION = "zip_creation", "Preparing the dataset"
        REPLICATE_TRAINING = "replicate_training", "Training on Replicate"
        HUGGINGFACE_UPLOAD = "huggingface_upload", "Publishing the weights"
        COMPLETION = "completion", "Finishing"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="trainings")
    NAME_MAX_LENGTH = 80
    name = models.CharField(max_length=NAME_MAX_LENGTH)
    trigger_word = models.CharField(max_length=32)
    subject_kind = models.CharField(max_length=16, choices=SubjectKind.choices, default=SubjectKind.SUBJECT)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.DRAFT, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # --- The pipeline (training.pipeline owns every write below) ---
    params = models.JSONField(default=dict, blank=True, help_text="The trainer's inputs, validated.")
    preset = models.CharField(max_length=20, blank=True)
    # Which trainer of the registry (training/trainers/) this training runs on; its key.
    trainer = models.CharField(max_length=32, default="flux-dev")
    duplicated_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cost_credits = models.PositiveIntegerField(null=True, blank=True)
    cost_estimate_dollars = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    credit_reference = models.CharField(
        max_length=80, blank=True, help_text="The ledger spend this run holds."
    )
    runs = models.PositiveSmallIntegerField(default=0)
    stage_times = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Attempts at the current stage.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    failed_stage = models.CharField(max_length=24, blank=True)
    error_category = models.CharField(max_length=20, blank=True)
    error_message = models.TextField(blank=True)
    error_hint = models.CharField(max_length=500, blank=True)
    # Replicate
    replicate_training_id = models.CharField(max_length=64, blank=True, db_index=True)
    replicate_create_started_at = models.DateTimeField(null=True, blank=True)
    replicate_trainer_version = models.CharField(
        max_length=64, blank=True, help_text="The trainer version we asked for (adoption matches on it)."
    )
    replicate_input = models.JSONField(
        default=dict,
        blank=True,
        help_text="The input we sent to the trainer, secrets excluded (adoption matches on it).",
    )
    replicate_destination = models.CharField(max_length=200, blank=True)
    replicate_status = models.CharField(max_length=20, blank=True)
    replicate_version = models.CharField(max_length=300, blank=True)
    weights_url = models.URLField(max_length=1000, blank=True)
    predict_time = models.FloatField(null=True, blank=True, help_text="Billed GPU seconds.")
    last_news_at = models.DateTimeField(null=True, blank=True)
    # Progress read from the trainer's logs
    progress_step = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(null=True, blank=True)
    seconds_per_step = models.FloatField(null=True, blank=True)
    eta_seconds = models.PositiveIntegerField(null=True, blank=True)
    current_loss = models.FloatField(null=True, blank=True)
    loss_history = models.JSONField(default=list, blank=True)
    logs_tail = models.TextField(blank=True)
    # What the trainer's own autocaption wrote, when it captioned photos we sent without one:
    # {ZIP member stem ("img_001"): caption}, read from the trainer's output.
    trainer_captions = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["owner", "status", "-created_at"]),
            # The history's default order, so a page of 20 is read off the index and stops there
            # (without it SQLite sorts every training of the person, photo counts included).
            models.Index(fields=["owner", "-created_at", "-id"], name="training_owner_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.trigger_word})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELED)

    @property
    def progress_percent(self) -> int:
        return int(self.progress_step * 100 / self.progress_total) if self.progress_total else 0

    @property
    def actual_cost_dollars(self):
        from decimal import Decimal

        if self.predict_time is None:
            return None
        return (Decimal(str(self.predict_time)) * Decimal(settings.GPU_PRICE_PER_SECOND)).quantize(
            Decimal("0.01")
        )


ACTIVE_STATUSES = (
    TrainingJob.Status.INITIALIZING,
    TrainingJob.Status.ZIP_CREATION,
    TrainingJob.Status.REPLICATE_TRAINING,
    TrainingJob.Status.HUGGINGFACE_UPLOAD,
    TrainingJob.Status.COMPLETION,
)


class TrainingEvent(models.Model):
    """One entry of a training's debugger: what happened, at which stage, and what to do about it."""

    class Level(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True)
    stage = models.CharField(max_length=24)
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.INFO)
    category = models.CharField(max_length=20, blank=True)
    message = models.TextField()
    hint = models.CharField(max_length=500, blank=True)
    data = models.JSONField(default=dict, blank=True)
    attempt = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["job", "created_at"])]

    def __str__(self) -> str:
        return f"[{self.level}] {self.stage}: {self.message[:60]}"


class ReplicateWebhook(models.Model):
    """Every verified Replicate delivery, once: `webhook_id` is the same on retries.

    A signed body that is not the object we expect (an array, a number, an object without an id or
    a status) is kept too, as `refused` with the reason: it came from Replicate, so it is evidence
    of a change on their side, and it is never processed.
    """

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        REFUSED = "refused", "Refused"

    webhook_id = models.CharField(max_length=100, unique=True)
    replicate_id = models.CharField(max_length=64, db_index=True)
    job_hint = models.PositiveIntegerField(null=True, blank=True, help_text="The job id in our webhook URL.")
    kind = models.CharField(max_length=20, default="training")
    status = models.CharField(
        max_length=20, blank=True, help_text="The object's status, as Replicate sent it."
    )
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.ACCEPTED)
    refusal_reason = models.CharField(max_length=200, blank=True)
    payload = models.JSONField(
        help_text="The body as sent: parsed JSON, or the text itself when it is not JSON."
    )
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.webhook_id} ({self.replicate_id} {self.status or self.outcome})"


class Dataset(models.Model):
    training = models.OneToOneField(TrainingJob, on_delete=models.CASCADE, related_name="dataset")
    caption_template = models.CharField(max_length=500, blank=True)
    # The training ZIP, built by training.dataset_zip; zip_fingerprint says which images and
    # captions it was built from, so building again is a no-op until something changes.
    zip_name = models.CharField(max_length=300, blank=True)
    zip_size = models.BigIntegerField(null=True, blank=True)
    zip_crc32 = models.CharField(max_length=8, blank=True, help_text="CRC-32 of the whole archive (hex).")
    zip_fingerprint = models.CharField(max_length=64, blank=True)
    zip_built_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Dataset of {self.training}"


class DatasetImage(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="images")
    # Names in the "private" storage, generated by us; never derived from the user's file name.
    file_name = models.CharField(max_length=300)
    thumbnail_name = models.CharField(max_length=300)
    original_name = models.CharField(max_length=120)  # sanitised, for display only
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    original_width = models.PositiveIntegerField()
    original_height = models.PositiveIntegerField()
    byte_size = models.PositiveIntegerField()
    crc32 = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Of the stored JPEG, for the ZIP."
    )
    pixel_sha256 = models.CharField(max_length=64)
    source_sha256 = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        help_text="Of the uploaded bytes: the same file again is refused before decoding.",
    )
    dhash = models.CharField(max_length=16)
    warnings = models.JSONField(default=list, blank=True)

    class CaptionSource(models.TextChoices):
        NONE = "", "No caption"
        PERSON = "person", "Written by the person"  # typed, pasted, a template, a ZIP or CSV import
        MODEL = "model", "Written by a captioning model"  # caption_model says which
        TRAINER = "trainer", "Written by the trainer's own autocaption"

    caption = models.TextField(blank=True)
    # Who wrote the caption: re-captioning in "keep" mode never overwrites a person's words, and a
    # machine-written caption is marked as such until the person edits it.
    caption_source = models.CharField(max_length=10, choices=CaptionSource.choices, default="", blank=True)
    caption_model = models.CharField(
        max_length=200, blank=True, help_text="owner/name:version of the model that wrote the caption."
    )
    # A vision model's answers to the photo checklist (training.captioning_models.INSPECTION_KEYS),
    # with "model": owner/name:version; empty until the photo is inspected.
    inspection = models.JSONField(default=dict, blank=True)
    position = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "pixel_sha256"], name="dataset_image_unique_pixels"),
        ]

    def __str__(self) -> str:
        return self.original_name

    @property
    def inspection_warnings(self) -> list[tuple[str, str]]:
        """(warning, why it matters for a subject LoRA) for each checklist answer that is a problem."""
        found = self.inspection or {}
        out = []
        people = found.get("people")
        if isinstance(people, int) and people > 1:
            out.append(
                (
                    f"{people} people in the photo",
                    "the LoRA cannot tell which one is the subject: crop to one.",
                )
            )
        if people == 0:
            out.append(("no person found", "a photo without the subject teaches the trigger word nothing."))
        if found.get("face_visible") is False and people != 0:
            out.append(("face not visible", "the face is what a subject LoRA most needs to see."))
        if found.get("face_covered") is True:
            out.append(("face covered (sunglasses, hat)", "the LoRA learns the cover as part of the face."))
        if found.get("text_or_watermark") is True:
            out.append(("text or watermark", "letters get baked into every image the LoRA makes."))
        if found.get("heavy_filter") is True:
            out.append(("heavy filter", "the filter's colours are learned as the subject's own."))
        return out


class CaptionBatch(models.Model):
    """One "caption these photos" request: which photos, how, with which model, at what price.

    Its photos are its CaptionTask rows. The credits of the whole batch are spent at once
    (reference `credit_reference`); each photo that ends without a caption is refunded on its own,
    once (billing's credits_refund_part, part = the task's pk).
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"
        CANCELED = "canceled", "Canceled"

    class Purpose(models.TextChoices):
        CAPTION = "caption", "Captions"
        INSPECT = "inspect", "Photo inspection"

    class Mode(models.TextChoices):
        KEEP = "keep", "Keep existing captions (caption only empty ones)"
        APPEND = "append", "Append to existing captions"
        REPLACE = "replace", "Replace existing captions"

    class Style(models.TextChoices):
        NATURAL = "natural", "A natural-language description"
        TAGS = "tags", "Short comma-separated tags"

    class TriggerPlacement(models.TextChoices):
        START = "start", "At the start of each caption"
        TOKEN = "token", "Where [trigger] is in the template"
        NONE = "none", "Not at all"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="caption_batches")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING, db_index=True)
    purpose = models.CharField(max_length=10, choices=Purpose.choices, default=Purpose.CAPTION)
    model = models.CharField(max_length=200, help_text="owner/name of the captioning model.")
    version = models.CharField(max_length=64)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.KEEP)
    style = models.CharField(max_length=10, choices=Style.choices, default=Style.NATURAL)
    trigger_placement = models.CharField(
        max_length=10, choices=TriggerPlacement.choices, default=TriggerPlacement.START
    )
    trigger_template = models.CharField(
        max_length=200, blank=True, help_text="With [trigger] and [caption], for the 'token' placement."
    )
    subject_kind = models.CharField(max_length=16, default="subject")
    price_per_photo = models.PositiveIntegerField()
    cost_credits = models.PositiveIntegerField()
    credit_reference = models.CharField(max_length=80, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # One running batch per dataset: the same batch started twice (a double click, two tabs)
            # is one run, whatever the timing.
            models.UniqueConstraint(
                fields=["dataset"], condition=models.Q(status="running"), name="caption_batch_one_running"
            )
        ]

    def __str__(self) -> str:
        return f"Captions for {self.dataset} ({self.status})"


class CaptionTask(models.Model):
    """One photo of a caption batch. Statuses move by compare-and-swap (fluxsite.statemachine):

    queued → submitting (claimed: only its holder creates the prediction) → running → done
    any of the first three → failed | canceled (refunded once) ; done may also be "skipped"
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SUBMITTING = "submitting", "Starting"
        RUNNING = "running", "Captioning"
        DONE = "done", "Done"
        SKIPPED = "skipped", "Kept your caption"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    batch = models.ForeignKey(CaptionBatch, on_delete=models.CASCADE, related_name="tasks")
    image = models.ForeignKey(
        DatasetImage, null=True, blank=True, on_delete=models.SET_NULL, related_name="caption_tasks"
    )
    image_name = models.CharField(max_length=120, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    caption_before = models.TextField(blank=True, help_text="The photo's caption when the batch started.")
    caption = models.TextField(blank=True, help_text="What the model wrote, cleaned.")
    note = models.CharField(max_length=300, blank=True, help_text="Why it failed, or what was done.")
    replicate_prediction_id = models.CharField(max_length=64, blank=True, db_index=True)
    replicate_status = models.CharField(max_length=20, blank=True)
    submit_started_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    predict_time = models.FloatField(null=True, blank=True)
    refunded = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["batch", "status"])]

    def __str__(self) -> str:
        return f"{self.image_name} ({self.status})"


class SampleImage(models.Model):
    """One cell of a training's sample grid: a prompt (row) at a LoRA strength (column), one seed.

    Made after the training succeeded, with its model, by training.services.samples, and paid for
    in the training's price. Statuses move by compare-and-swap, because the grid's worker, a
    redelivered task and the poller can race:
        queued → running → succeeded | failed        failed → queued (the owner's rerun)
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="samples")
    row = models.PositiveSmallIntegerField(help_text="The prompt's index.")
    col = models.PositiveSmallIntegerField(help_text="The strength's index.")
    prompt = models.TextField(help_text="As sent: with the trigger word.")
    lora_scale = models.FloatField()
    seed = models.BigIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    replicate_prediction_id = models.CharField(max_length=64, blank=True, db_index=True)
    replicate_status = models.CharField(max_length=20, blank=True)
    # Only the worker that set it may create the prediction: a redelivered task never runs it twice.
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    file_name = models.CharField(max_length=300, blank=True, help_text="In the public storage.")
    thumbnail_name = models.CharField(max_length=300, blank=True)
    error_message = models.TextField(blank=True)
    predict_time = models.FloatField(null=True, blank=True, help_text="GPU seconds (paid by the training).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["job", "row", "col"]
        constraints = [
            models.UniqueConstraint(fields=["job", "row", "col"], name="sample_image_unique_cell"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id} [{self.row}, {self.col}] at {self.lora_scale}"
