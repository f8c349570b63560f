from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.urls import reverse
from django.utils.html import format_html

from fluxsite.accounts.models import ApiToken, User, VerifiedAddress, WebhookDelivery, WebhookEndpoint


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows
    ordering = ("-date_joined",)
    list_display = (
        "email",
        "email_verified_at",
        "is_staff",
        "is_active",
        "date_joined",
        "last_login",
        "balance",
        "support",
    )
    list_filter = ("is_staff", "is_superuser", "is_active", ("email_verified_at", admin.EmptyFieldListFilter))
    search_fields = ("email", "first_name", "last_name")
    fieldsets = (
        (None, {"fields": ("email", "email_verified_at", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    readonly_fields = ("email_verified_at",)
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("wallet")

    @admin.display(description="Credits")
    def balance(self, obj) -> int:
        wallet = getattr(obj, "wallet", None)
        return wallet.balance if wallet else 0

    @admin.display(description="Support")
    def support(self, obj) -> str:
        # The back office's support page (backoffice.site), named by URL only: accounts sits below it.
        return format_html('<a href="{}">Support</a>', reverse("admin:accounts_user_support", args=[obj.pk]))


@admin.register(VerifiedAddress)
class VerifiedAddressAdmin(admin.ModelAdmin):
    """Which mailboxes already brought welcome credits. Read-only: deleting a row would let the
    mailbox collect them again (the ledger's reference would still refuse a second grant)."""

    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows

    list_display = ("normalised", "email", "user", "credits_granted", "verified_at")
    list_filter = (("user", admin.EmptyFieldListFilter),)
    search_fields = ("normalised", "email", "user__email")
    date_hierarchy = "verified_at"
    list_select_related = ("user",)
    readonly_fields = ("normalised", "email", "user", "credits_granted", "verified_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Developer API tokens. Only the hash is stored, so nothing here can reveal a secret; staff can
    revoke a leaked token (the action) but not create one for somebody."""

    list_per_page = 50
    show_full_result_count = False
    list_display = ("name", "owner", "prefix", "last4", "scopes", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "owner__email", "prefix", "last4")
    list_select_related = ("owner",)
    readonly_fields = (
        "owner",
        "name",
        "prefix",
        "last4",
        "secret_sha256",
        "scopes",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    actions = ("revoke",)

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset) -> None:
        from django.utils import timezone

        count = queryset.filter(revoked_at=None).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} token(s) revoked.")


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    extra = 0
    max_num = 0
    can_delete = False
    fields = (
        "type",
        "event_id",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "created_at",
    )
    readonly_fields = fields
    ordering = ("-created_at",)
    show_change_link = True

    def get_queryset(self, request):
        # The newest few only: an endpoint's log grows without bound.
        ids = list(super().get_queryset(request).order_by("-created_at").values_list("pk", flat=True)[:20])
        return super().get_queryset(request).filter(pk__in=ids)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """A person's outbound webhook endpoints; the secret is not shown (it signs their deliveries)."""

    list_per_page = 50
    show_full_result_count = False
    list_display = ("url", "owner", "events", "created_at")
    search_fields = ("url", "owner__email")
    list_select_related = ("owner",)
    fields = ("owner", "url", "events", "created_at")
    readonly_fields = fields
    inlines = (WebhookDeliveryInline,)

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Every delivery attempt's outcome; "Retry now" makes a failed or waiting delivery due at once."""

    list_per_page = 50
    show_full_result_count = False
    list_display = (
        "event_id",
        "type",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "type")
    search_fields = ("event_id", "endpoint__url", "endpoint__owner__email")
    list_select_related = ("endpoint",)
    readonly_fields = (
        "endpoint",
        "event_id",
        "type",
        "payload",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "created_at",
        "updated_at",
    )
    actions = ("retry_now",)

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Retry now (the reconcile sends them within a minute)")
    def retry_now(self, request, queryset) -> None:
        from django.utils import timezone

        count = queryset.exclude(status=WebhookDelivery.Status.SUCCEEDED).update(
            status=WebhookDelivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now()
        )
        self.message_user(request, f"{count} delivery(ies) due again.")
