from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from fluxsite.accounts.models import User

DEMO_EMAIL = "demo@fluxsite.local"
DEMO_PASSWORD = "fluxsite-demo-password"
# The packs and plan the Stripe sandbox sells; no migration inserts them (billing/services/catalog.py).
SANDBOX_CATALOG = settings.BASE_DIR / "sandbox" / "stripe" / "catalog.json"


class Command(BaseCommand):
    help = "Make sure the demo account and, in the sandbox, the demo catalog exist (local development only)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            self.stdout.write("DEBUG is off: no demo account is created.")
            return
        from fluxsite.accounts.services import user_email_confirm, user_sign_up

        user = User.objects.filter(email=DEMO_EMAIL).first()
        if user is None:
            user = user_sign_up(email=DEMO_EMAIL, password=DEMO_PASSWORD)
            if user is None:  # a concurrent run created the account meanwhile: use that one
                user = User.objects.get(email=DEMO_EMAIL)
            user.is_staff = True
            user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
        if user.email_verified_at is None:
            # Verified without a link (there is no mailbox behind it), which grants the welcome credits.
            user_email_confirm(user=user)
        if settings.SANDBOX_MODE:
            call_command("catalog_seed", SANDBOX_CATALOG, stdout=self.stdout)
        self.stdout.write(
            self.style.SUCCESS(
                f"\n  Log in at {settings.SITE_URL}/account/login/ with\n"
                f"    e-mail:   {DEMO_EMAIL}\n    password: {DEMO_PASSWORD}\n"
                f"  (the demo account is staff too: {settings.SITE_URL}/admin/)\n"
            )
        )
