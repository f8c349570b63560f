from __future__ import annotations

from django.contrib import admin, messages

from models_app.models import HuggingFaceAccount, LoraModel
from models_app.services import LoraStateError, lora_publish_retry


@admin.register(LoraModel)
class LoraModelAdmin(admin.ModelAdmin):
    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows
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
    list_filter = [
        "status",
        "visibility",
        "subject_kind",
        "base_model",
        "hf_via_user_account",
        "publish_error_category",
    ]
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
        "sample_grid",
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
    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows
    list_display = ["user", "username", "token_last4", "checked_at", "created_at"]
    search_fields = ["user__email", "username"]
    raw_id_fields = ["user"]
    # The encrypted token is never shown, not even to staff.
    exclude = ["token_encrypted"]
    readonly_fields = ["username", "token_last4", "checked_at", "created_at"]
