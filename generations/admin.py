from __future__ import annotations

from django.contrib import admin, messages

from fluxsite.integrations.errors import IntegrationError
from generations.models import GeneratedImage, Generation, InputImage
from generations.services import generation_sync


class GeneratedImageInline(admin.TabularInline):
    model = GeneratedImage
    extra = 0
    readonly_fields = ["index", "file_name", "thumbnail_name", "width", "height", "byte_size", "created_at"]
    can_delete = False


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows
    list_display = [
        "pk",
        "owner",
        "model_name",
        "mode",
        "status",
        "num_outputs",
        "cost_credits",
        "attempts",
        "replicate_prediction_id",
        "created_at",
    ]
    list_filter = ["status", "mode", "error_category", "replicate_status"]
    search_fields = ["owner__email", "model_name", "prompt", "=replicate_prediction_id", "=credit_reference"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner", "lora_model", "extra_lora_model", "source_image"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "mode",
        "input_image_name",
        "mask_name",
        "credit_reference",
        "cost_credits",
        "replicate_target",
        "replicate_prediction_id",
        "replicate_status",
        "submit_started_at",
        "output_claimed_at",
        "attempts",
        "last_news_at",
        "predict_time",
        "invalid_fields",
        "created_at",
        "updated_at",
        "finished_at",
    ]
    inlines = [GeneratedImageInline]
    actions = ["poll_replicate"]

    @admin.action(description="Ask Replicate for the state now (queued/running ones)")
    def poll_replicate(self, request, queryset) -> None:
        polled = 0
        for generation in queryset.filter(status__in=["queued", "running"]).exclude(
            replicate_prediction_id=""
        ):
            try:
                generation_sync(generation=generation)
                polled += 1
            except IntegrationError as exc:
                self.message_user(request, f"#{generation.pk}: {exc.message}", messages.WARNING)
        self.message_user(request, f"Polled {polled} generation(s).", messages.SUCCESS)


@admin.register(InputImage)
class InputImageAdmin(admin.ModelAdmin):
    list_display = ["pk", "owner", "label", "width", "height", "created_at"]
    search_fields = ["owner__email", "label"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    readonly_fields = ["file_name", "width", "height", "created_at"]
    date_hierarchy = "created_at"
