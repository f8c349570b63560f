from __future__ import annotations

from django.contrib import admin

from sandbox.stripe.models import IdempotentRequest, StripeEvent, StripeRecord


@admin.register(StripeRecord)
class StripeRecordAdmin(admin.ModelAdmin):
    list_display = ["id", "object", "created_at", "updated_at"]
    list_filter = ["object"]
    search_fields = ["id"]
    readonly_fields = ["created_at", "updated_at"]


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "created_at", "delivery_attempts", "last_delivery_status", "delivered_at"]
    list_filter = ["type", "last_delivery_status"]
    search_fields = ["id", "type"]
    readonly_fields = ["created_at", "delivery_attempts", "last_delivery_status", "delivered_at"]


@admin.register(IdempotentRequest)
class IdempotentRequestAdmin(admin.ModelAdmin):
    list_display = ["key", "path", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["key", "path"]
