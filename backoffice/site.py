"""Fluxsite's admin site: Django's, with the overview on its index and each user's support page.

It is `admin.site` (backoffice.apps.BackofficeAdminConfig names it the default site), so every app's
`@admin.register` lands here unchanged.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path

OVERVIEW_PERMISSIONS = ("training.view_trainingjob", "billing.view_creditentry")


class FluxsiteAdminSite(admin.AdminSite):
    site_header = "Fluxsite back office"
    site_title = "Fluxsite back office"
    index_template = "admin/backoffice_index.html"

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        from backoffice.views import overview_context

        # Money and every user's activity: only for staff who may read trainings and the ledger.
        shown = request.user.has_perms(OVERVIEW_PERMISSIONS)
        return super().index(request, {**(overview_context() if shown else {}), **(extra_context or {})})

    def get_urls(self) -> list[URLResolver | URLPattern]:
        from backoffice import views

        # Before the model admins' URLs: UserAdmin's "<path:object_id>/" would take "5/support/".
        return [
            path(
                "accounts/user/<int:user_id>/support/",
                self.admin_view(views.support),
                name="accounts_user_support",
            ),
            path(
                "accounts/user/<int:user_id>/support/<slug:action>/",
                self.admin_view(views.support_action),
                name="accounts_user_support_action",
            ),
            *super().get_urls(),
        ]
