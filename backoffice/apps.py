"""The operator's back office: Django's admin with an overview on its index and a support page per user.

`BackofficeAdminConfig` replaces "django.contrib.admin" in INSTALLED_APPS, so `admin.site` (and every
`@admin.register` of the apps) is our FluxsiteAdminSite; `BackofficeConfig` is the app itself.
"""

from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class BackofficeConfig(AppConfig):
    default = True
    name = "backoffice"
    verbose_name = "Back office"


class BackofficeAdminConfig(admin_apps.AdminConfig):
    default = False
    default_site = "backoffice.site.FluxsiteAdminSite"
