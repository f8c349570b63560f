from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from training.models import Dataset, DatasetImage, TrainingJob


class DatasetInline(admin.StackedInline):
    model = Dataset
    extra = 0
    can_delete = False
    readonly_fields = ["zip_name", "zip_size", "zip_sha256", "zip_fingerprint", "zip_built_at"]


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "trigger_word", "subject_kind", "status", "image_count", "created_at"]
    list_filter = ["status", "subject_kind", "created_at"]
    search_fields = ["name", "trigger_word", "owner__email"]
    raw_id_fields = ["owner"]
    readonly_fields = ["created_at", "updated_at"]
    date_hierarchy = "created_at"
    inlines = [DatasetInline]

    @admin.display(description="Photos")
    def image_count(self, obj: TrainingJob) -> int:
        return obj.dataset.images.count() if hasattr(obj, "dataset") else 0


class DatasetImageInline(admin.TabularInline):
    model = DatasetImage
    extra = 0
    fields = ["position", "original_name", "width", "height", "byte_size", "warnings", "caption"]
    readonly_fields = ["original_name", "width", "height", "byte_size", "warnings"]


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["training", "owner", "zip_size", "zip_built_at"]
    search_fields = ["training__name", "training__owner__email"]
    readonly_fields = ["training", "zip_name", "zip_size", "zip_sha256", "zip_fingerprint", "zip_built_at"]
    inlines = [DatasetImageInline]

    @admin.display(description="Owner")
    def owner(self, obj: Dataset) -> str:
        return obj.training.owner.email


@admin.register(DatasetImage)
class DatasetImageAdmin(admin.ModelAdmin):
    list_display = ["original_name", "dataset", "size", "byte_size", "has_warnings", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["original_name", "pixel_sha256", "dataset__training__owner__email"]
    readonly_fields = [
        "dataset", "file_name", "thumbnail_name", "original_name", "width", "height", "original_width",
        "original_height", "byte_size", "pixel_sha256", "dhash", "warnings", "created_at",
    ]

    @admin.display(description="Size")
    def size(self, obj: DatasetImage) -> str:
        return format_html("{}×{}", obj.width, obj.height)

    @admin.display(description="Warnings", boolean=True)
    def has_warnings(self, obj: DatasetImage) -> bool:
        return bool(obj.warnings)
