from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from billing.models import (
    CheckoutRecord,
    CreditEntry,
    CreditPack,
    InvoiceGrant,
    Plan,
    StripeCustomer,
    StripeEvent,
    Subscription,
    Wallet,
)
from billing.services import InsufficientCredits, credits_adjust, stripe_event_process
from fluxsite.admin_inlines import LatestRowsInline, all_rows_link
from fluxsite.http import AuthenticatedHttpRequest


class CreditEntryInline(LatestRowsInline):
    """The wallet's latest 50 entries, newest first."""

    model = CreditEntry
    fields = ("created_at", "kind", "amount", "shortfall", "balance_after", "reference", "note")
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    show_change_link = True


class AdjustForm(forms.Form):
    amount = forms.IntegerField(help_text="Positive adds credits, negative takes them (never below zero).")
    note = forms.CharField(max_length=200, help_text="Why: shown to the user in their credit history.")

    def clean_amount(self) -> int:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("Enter a non-zero number of credits.")
        return amount


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):
    """Balances are never edited: "Adjust credits" appends an entry through credits_adjust()."""

    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows

    list_display = ("user", "balance", "low_balance_notified", "updated_at")
    search_fields = ("user__email",)
    readonly_fields = ("user", "balance", "low_balance_notified", "updated_at", "entries")
    inlines = [CreditEntryInline]

    @admin.display(description="Ledger")
    def entries(self, obj: Wallet) -> str:
        return all_rows_link(obj, CreditEntry, "wallet")

    change_form_template = "billing/admin/wallet_change_form.html"

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        return [
            path(
                "<int:pk>/adjust/", self.admin_site.admin_view(self.adjust_view), name="billing_wallet_adjust"
            ),
            *super().get_urls(),
        ]

    def adjust_view(self, request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
        # admin_view() lets only logged-in staff through.
        wallet = get_object_or_404(Wallet.objects.select_related("user"), pk=pk)
        if not self.has_view_permission(request, wallet) or not request.user.has_perm(
            "billing.add_creditentry"
        ):
            raise PermissionError
        form = AdjustForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                credits_adjust(
                    user=wallet.user,
                    amount=form.cleaned_data["amount"],
                    note=form.cleaned_data["note"],
                    actor=request.user.email,
                )
            except InsufficientCredits as exc:
                form.add_error("amount", str(exc))
            else:
                self.message_user(request, "Credits adjusted.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:billing_wallet_change", args=[wallet.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Adjust credits of {wallet.user}",
            "wallet": wallet,
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "billing/admin/adjust.html", context)


@admin.register(CreditEntry)
class CreditEntryAdmin(admin.ModelAdmin):
    """The ledger is append-only: operators read it here and adjust through a new entry."""

    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows

    list_display = ("created_at", "wallet", "kind", "amount", "shortfall", "balance_after", "reference")
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


@admin.register(CreditPack)
class CreditPackAdmin(admin.ModelAdmin):
    list_display = ("name", "credits", "amount_cents", "currency", "stripe_price_id", "active", "sort_order")
    list_editable = ("active", "sort_order")


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "credits_per_period",
        "interval",
        "amount_cents",
        "currency",
        "stripe_price_id",
        "active",
    )
    list_editable = ("active",)


@admin.register(StripeCustomer)
class StripeCustomerAdmin(admin.ModelAdmin):
    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows
    list_display = ("user", "customer_id", "created_at")
    search_fields = ("user__email", "customer_id")
    readonly_fields = ("user", "customer_id", "created_at")


class InvoiceGrantInline(admin.TabularInline):
    model = InvoiceGrant
    extra = 0
    can_delete = False
    fields = ("created_at", "invoice_id", "payment_intent_id", "credits", "amount_cents")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    """Written only from Stripe (re-read on each webhook): change it in Stripe, not here."""

    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows

    list_display = (
        "user",
        "plan",
        "status",
        "current_period_end",
        "cancel_at_period_end",
        "stripe_subscription_id",
    )
    list_filter = ("status", "plan")
    search_fields = ("user__email", "stripe_subscription_id", "stripe_customer_id")
    readonly_fields = [f.name for f in Subscription._meta.fields]
    inlines = [InvoiceGrantInline]


@admin.register(CheckoutRecord)
class CheckoutRecordAdmin(admin.ModelAdmin):
    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows
    list_display = (
        "created_at",
        "user",
        "mode",
        "pack",
        "plan",
        "credits",
        "status",
        "amount_cents",
        "session_id",
    )
    list_filter = ("status", "mode")
    search_fields = ("user__email", "session_id", "payment_intent_id")
    readonly_fields = [f.name for f in CheckoutRecord._meta.fields]


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_per_page = 50
    show_full_result_count = False  # a growing table: no second COUNT(*) over all its rows
    list_display = ("received_at", "event_id", "type", "status", "attempts", "processed_at")
    list_filter = ("status", "type")
    search_fields = ("event_id",)
    readonly_fields = [f.name for f in StripeEvent._meta.fields]
    actions = ["process_again"]

    @admin.action(description="Process the selected events again (harmless for handled ones)")
    def process_again(self, request: HttpRequest, queryset) -> None:
        failed = 0
        for pk in queryset.values_list("pk", flat=True):
            try:
                stripe_event_process(event_pk=pk)
            except Exception:
                failed += 1
        self.message_user(
            request,
            f"Processed {queryset.count() - failed}, failed {failed}.",
            messages.WARNING if failed else messages.SUCCESS,
        )
