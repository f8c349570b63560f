from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html

from fluxsite.admin_inlines import LatestRowsInline, all_rows_link
from training.models import (
    CaptionBatch,
    CaptionTask,
    Dataset,
    DatasetImage,
    ReplicateWebhook,
    SampleImage,
    TrainingEvent,
    TrainingJob,
)
from training.services import SampleGridError, caption_batch_cancel, sample_grid_rerun, trainings_reconcile


class DatasetInline(admin.StackedInline):
    model = Dataset
    extra = 0
    can_delete = False
    readonly_fields = ["zip_name", "zip_size", "zip_crc32", "zip_fingerprint", "zip_built_at"]


class TrainingEventInline(LatestRowsInline):
    """The training's debugger, newest first (the latest 50); written only by the pipeline."""

    model = TrainingEvent
    fields = ("created_at", "stage", "level", "category", "attempt", "message", "hint")
    readonly_fields = fields
    ordering = ["-created_at", "-pk"]


# The pipeline owns these (compare-and-swap transitions, the ledger reference): editing them by hand
# would desynchronise the job from Replicate and the credits, so staff see them read-only.
PIPELINE_FIELDS = [
    "status",
    "params",
    "preset",
    "duplicated_from",
    "cost_credits",
    "cost_estimate_dollars",
    "credit_reference",
    "runs",
    "stage_times",
    "attempts",
    "next_attempt_at",
    "started_at",
    "finished_at",
    "failed_stage",
    "error_category",
    "error_message",
    "error_hint",
    "replicate_training_id",
    "replicate_create_started_at",
    "replicate_destination",
    "replicate_status",
    "replicate_version",
    "weights_url",
    "predict_time",
    "last_news_at",
    "progress_step",
    "progress_total",
    "seconds_per_step",
    "eta_seconds",
    "current_loss",
    "loss_history",
    "logs_tail",
    "trainer_captions",
]


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows
    list_display = [
        "name",
        "owner",
        "trigger_word",
        "subject_kind",
        "trainer",
        "status",
        "progress",
        "cost_credits",
        "image_count",
        "created_at",
    ]
    list_filter = ["status", "trainer", "failed_stage", "error_category", "subject_kind", "created_at"]
    search_fields = ["name", "trigger_word", "owner__email", "replicate_training_id"]
    raw_id_fields = ["owner"]
    # The trainer is chosen on the start page and fixed when it starts (training.services).
    readonly_fields = ["created_at", "updated_at", "events", "trainer", *PIPELINE_FIELDS]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    inlines = [DatasetInline, TrainingEventInline]

    @admin.display(description="Events")
    def events(self, obj: TrainingJob) -> str:
        return all_rows_link(obj, TrainingEvent, "job")

    actions = ["reconcile_now"]

    @admin.display(description="Progress")
    def progress(self, obj: TrainingJob) -> str:
        return f"{obj.progress_step}/{obj.progress_total}" if obj.progress_total else "—"

    @admin.action(description="Reconcile now (poll Replicate, resume stuck stages, fail unconfirmed)")
    def reconcile_now(self, request, queryset) -> None:
        # The poller works on every stuck training at once, whichever rows are selected: it is the
        # same pass the schedule runs every minute, started by hand.

        counts = trainings_reconcile()
        self.message_user(
            request,
            "Reconciled: {polled} polled at Replicate, {resumed} resumed, {failed} failed and refunded.".format(
                **counts
            ),
            messages.SUCCESS,
        )

    @admin.display(description="Photos")
    def image_count(self, obj: TrainingJob) -> int:
        return obj.dataset.images.count() if hasattr(obj, "dataset") else 0


class DatasetImageInline(admin.TabularInline):
    model = DatasetImage
    extra = 0
    fields = [
        "position",
        "original_name",
        "width",
        "height",
        "byte_size",
        "warnings",
        "caption",
        "caption_source",
        "caption_model",
    ]
    readonly_fields = ["original_name", "width", "height", "byte_size", "warnings"]


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows
    list_display = ["training", "owner", "zip_size", "zip_built_at"]
    search_fields = ["training__name", "training__owner__email"]
    readonly_fields = ["training", "zip_name", "zip_size", "zip_crc32", "zip_fingerprint", "zip_built_at"]
    inlines = [DatasetImageInline]

    @admin.display(description="Owner")
    def owner(self, obj: Dataset) -> str:
        return obj.training.owner.email


@admin.register(DatasetImage)
class DatasetImageAdmin(admin.ModelAdmin):
    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows
    list_display = ["original_name", "dataset", "size", "byte_size", "has_warnings", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["original_name", "pixel_sha256", "dataset__training__owner__email"]
    readonly_fields = [
        "dataset",
        "file_name",
        "thumbnail_name",
        "original_name",
        "width",
        "height",
        "original_width",
        "original_height",
        "byte_size",
        "pixel_sha256",
        "dhash",
        "warnings",
        "created_at",
    ]

    @admin.display(description="Size")
    def size(self, obj: DatasetImage) -> str:
        return format_html("{}×{}", obj.width, obj.height)

    @admin.display(description="Warnings", boolean=True)
    def has_warnings(self, obj: DatasetImage) -> bool:
        return bool(obj.warnings)


@admin.register(TrainingEvent)
class TrainingEventAdmin(admin.ModelAdmin):
    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows
    list_display = ["created_at", "job", "stage", "level", "category", "short_message"]
    list_filter = ["level", "stage", "category"]
    search_fields = ["message", "hint", "job__name", "job__owner__email", "job__replicate_training_id"]
    readonly_fields = [
        "job",
        "created_at",
        "stage",
        "level",
        "category",
        "message",
        "hint",
        "data",
        "attempt",
    ]
    list_select_related = ["job"]

    @admin.display(description="Message")
    def short_message(self, obj: TrainingEvent) -> str:
        return obj.message[:100]


@admin.register(SampleImage)
class SampleImageAdmin(admin.ModelAdmin):
    """The sample grids' images: which failed and why, their predictions to look up at Replicate."""

    list_per_page = 50
    show_full_result_count = False
    list_display = [
        "job",
        "row",
        "col",
        "lora_scale",
        "status",
        "attempts",
        "replicate_prediction_id",
        "updated_at",
    ]
    list_filter = ["status"]
    search_fields = ["job__name", "job__owner__email", "replicate_prediction_id", "prompt"]
    list_select_related = ["job"]
    raw_id_fields = ["job"]
    readonly_fields = [f.name for f in SampleImage._meta.fields if f.name != "id"]
    actions = ["rerun_failed"]

    @admin.action(description="Run the failed images of these grids again (no charge)")
    def rerun_failed(self, request, queryset) -> None:
        jobs = TrainingJob.objects.filter(pk__in=queryset.values("job_id"))
        queued = 0
        for job in jobs:
            try:
                queued += sample_grid_rerun(job=job)
            except SampleGridError as exc:
                self.message_user(request, f"{job}: {exc}", messages.WARNING)
        self.message_user(request, f"{queued} images queued again.")


@admin.register(ReplicateWebhook)
class ReplicateWebhookAdmin(admin.ModelAdmin):
    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows
    list_display = [
        "webhook_id",
        "replicate_id",
        "job_hint",
        "kind",
        "status",
        "outcome",
        "refusal_reason",
        "received_at",
        "processed",
    ]
    list_filter = ["outcome", "kind", "status", "received_at"]
    search_fields = ["webhook_id", "replicate_id", "refusal_reason"]
    readonly_fields = [
        "webhook_id",
        "replicate_id",
        "job_hint",
        "kind",
        "status",
        "outcome",
        "refusal_reason",
        "payload",
        "received_at",
        "processed_at",
    ]
    date_hierarchy = "received_at"

    @admin.display(description="Processed", boolean=True)
    def processed(self, obj: ReplicateWebhook) -> bool:
        return obj.processed_at is not None


class CaptionTaskInline(admin.TabularInline):
    """One row per photo; written only by training.services.captioning (compare-and-swap, refunds)."""

    model = CaptionTask
    extra = 0
    can_delete = False
    fields = ("image_name", "status", "note", "replicate_prediction_id", "attempts", "refunded", "caption")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CaptionBatch)
class CaptionBatchAdmin(admin.ModelAdmin):
    """Caption batches, read-only: their statuses and refunds are the service's (an edit here would
    break the one-refund-per-photo rule). "Cancel" goes through the service, refunding the rest."""

    list_display = (
        "pk",
        "dataset",
        "owner",
        "model",
        "status",
        "mode",
        "style",
        "cost_credits",
        "created_at",
    )
    list_filter = ("status", "model", "mode", "style")
    search_fields = ("owner__email", "dataset__training__name")
    readonly_fields = [f.name for f in CaptionBatch._meta.fields]
    inlines = [CaptionTaskInline]
    actions = ["cancel_batches"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Cancel the selected running batches (refunds the photos not captioned)")
    def cancel_batches(self, request, queryset) -> None:
        count = 0
        for batch in queryset.filter(status=CaptionBatch.Status.RUNNING):
            count += caption_batch_cancel(batch=batch)
        self.message_user(request, f"{count} photos canceled and refunded.", messages.SUCCESS)
