from django.contrib import admin

from sandbox.models import Fault


@admin.register(Fault)
class FaultAdmin(admin.ModelAdmin):
    list_display = ("service", "operation", "kind", "status", "remaining", "created_at")
    list_filter = ("service", "kind")
