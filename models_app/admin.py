from __future__ import annotations

from django.contrib import admin, messages

from models_app.models import GeneratedImage, Generation, HuggingFaceAccount, LoraModel
from models_app.services import LoraStateError, lora_publish_retry


@admin.register(LoraModel)
class LoraModelAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "owner",
        "trigger_word",
        "status",
        "visibility",
        "hf_repo_id",
        "publish_attempts",
        "created_at",
    ]
    list_filter = ["status", "visibility", "subject_kind", "hf_via_user_account", "publish_error_category"]
    search_fields = [
        "name",
        "slug",
        "trigger_word",
        "owner__email",
        "hf_repo_id",
        "replicate_version",
        "=public_id",
    ]
    list_select_related = ["owner"]
    raw_id_fields = ["owner", "training"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "public_id",
        "weights_file_name",
        "weights_size",
        "weights_sha256",
        "config_file_name",
        "hf_commit",
        "publish_attempts",
        "published_at",
        "created_at",
        "updated_at",
    ]
    actions = ["retry_publishing"]

    @admin.action(description="Retry publishing to Hugging Face (failed ones only)")
    def retry_publishing(self, request, queryset) -> None:
        retried = 0
        for model in queryset:
            try:
                lora_publish_retry(model=model)
                retried += 1
            except LoraStateError:
                continue
        self.message_user(request, f"Publishing retried for {retried} model(s).", messages.SUCCESS)


@admin.register(HuggingFaceAccount)
class HuggingFaceAccountAdmin(admin.ModelAdmin):
    list_display = ["user", "username", "token_last4", "checked_at", "created_at"]
    search_fields = ["user__email", "username"]
    raw_id_fields = ["user"]
    # The encrypted token is never shown, not even to staff.
    exclude = ["token_encrypted"]
    readonly_fields = ["username", "token_last4", "checked_at", "created_at"]


class GeneratedImageInline(admin.TabularInline):
    model = GeneratedImage
    extra = 0
    readonly_fields = ["index", "file_name", "thumbnail_name", "width", "height", "byte_size", "created_at"]
    can_delete = False


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = [
        "pk",
        "owner",
        "model_name",
        "status",
        "num_outputs",
        "cost_credits",
        "attempts",
        "replicate_prediction_id",
        "created_at",
    ]
    list_filter = ["status", "error_category", "replicate_status"]
    search_fields = ["owner__email", "model_name", "prompt", "=replicate_prediction_id", "=credit_reference"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner", "lora_model"]
    date_hierarchy = "created_at"
    readonly_fields = [
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
        from fluxsite.integrations.errors import IntegrationError
        from models_app.services import generation_sync

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
