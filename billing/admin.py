from django.contrib import admin

from billing.models import CreditEntry, Wallet


class CreditEntryInline(admin.TabularInline):
    model = CreditEntry
    extra = 0
    can_delete = False
    fields = ("created_at", "kind", "amount", "balance_after", "reference", "note")
    readonly_fields = fields
    ordering = ("-created_at",)
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):
    list_display = ("user", "balance", "updated_at")
    search_fields = ("user__email",)
    readonly_fields = ("user", "balance", "low_balance_notified", "updated_at")
    inlines = [CreditEntryInline]


@admin.register(CreditEntry)
class CreditEntryAdmin(admin.ModelAdmin):
    """The ledger is append-only: operators read it here and adjust through a new entry."""

    list_display = ("created_at", "wallet", "kind", "amount", "balance_after", "reference")
    list_filter = ("kind",)
    search_fields = ("wallet__user__email", "reference", "note")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in CreditEntry._meta.fields]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False
