from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from fluxsite.accounts.models import User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("-date_joined",)
    list_display = ("email", "is_staff", "is_active", "date_joined", "last_login", "balance")
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("email", "first_name", "last_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("wallet")

    @admin.display(description="Credits")
    def balance(self, obj) -> int:
        wallet = getattr(obj, "wallet", None)
        return wallet.balance if wallet else 0
