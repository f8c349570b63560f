from django.contrib import admin

from api.models import IdempotencyRecord


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    """The stored answers to retried POSTs: for support ("my client retried, what did it get?")."""

    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows
    list_display = ("key", "method", "path", "status_code", "token", "created_at", "completed_at")
    list_filter = ("status_code", "method")
    search_fields = ("key", "path", "token__owner__email", "token__name")
    date_hierarchy = "created_at"
    list_select_related = ("token", "token__owner")
    readonly_fields = [f.name for f in IdempotencyRecord._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
