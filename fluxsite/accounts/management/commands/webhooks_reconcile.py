from __future__ import annotations

from django.core.management.base import BaseCommand

from fluxsite.accounts.services.webhooks import webhooks_reconcile


class Command(BaseCommand):
    help = "Send the outbound webhook deliveries whose retry is due (scheduled every minute)."

    def handle(self, *args, **options) -> None:
        counts = webhooks_reconcile()
        self.stdout.write(", ".join(f"{k}: {v}" for k, v in counts.items()))
