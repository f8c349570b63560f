from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib import admin
from django.db import models
from django.utils.html import format_html, format_html_join

from sandbox.replicate import simulation
from sandbox.replicate.models import SandboxModel, SandboxPrediction, SandboxTraining, SandboxVersion


class VersionInline(admin.TabularInline):
    model = SandboxVersion
    extra = 0
    fields = ("version_id", "kind", "training_id", "created_at")
    readonly_fields = fields


@admin.register(SandboxModel)
class SandboxModelAdmin(admin.ModelAdmin):
    list_display = ("owner", "name", "visibility", "hardware", "created_at")
    search_fields = ("owner", "name")
    inlines = [VersionInline]


@admin.register(SandboxVersion)
class SandboxVersionAdmin(admin.ModelAdmin):
    list_display = ("version_id", "model", "kind", "training_id", "created_at")
    list_filter = ("kind",)
    search_fields = ("version_id", "model__name", "training_id")


# Webhook URLs are typed with their scheme; say which one a bare host gets (Django 6's default).
URL_FIELDS: Mapping[type[models.Field[Any, Any]], Mapping[str, Any]] = {
    models.URLField: {"assume_scheme": "https"}
}


@admin.register(SandboxTraining)
class SandboxTrainingAdmin(admin.ModelAdmin):
    formfield_overrides = URL_FIELDS
    list_display = ("id", "destination", "status", "created_at", "duration_seconds", "fail_midway")
    list_filter = ("fail_midway",)
    search_fields = ("id", "destination")
    readonly_fields = ("status", "photo_thumbnails")
    exclude = ("photos",)

    @admin.display(description="status (derived from the clock)")
    def status(self, obj: SandboxTraining) -> str:
        return simulation.training_state(obj).status

    @admin.display(description="photos (what its version's pictures are made of)")
    def photo_thumbnails(self, obj: SandboxTraining) -> str:
        return format_html_join(
            " ",
            '<img src="data:image/jpeg;base64,{}" alt="" height="96">',
            ((photo,) for photo in obj.photos or []),
        ) or format_html("{}", "none kept")


@admin.register(SandboxPrediction)
class SandboxPredictionAdmin(admin.ModelAdmin):
    formfield_overrides = URL_FIELDS
    list_display = ("id", "model", "status", "created_at")
    search_fields = ("id", "model", "version")
    readonly_fields = ("status", "mode")

    @admin.display(description="status (derived from the clock)")
    def status(self, obj: SandboxPrediction) -> str:
        return simulation.prediction_state(obj).status

    @admin.display(description="mode")
    def mode(self, obj: SandboxPrediction) -> str:
        if obj.input_mask:
            return "inpainting"
        return "image-to-image" if obj.input_image else "text-to-image"
