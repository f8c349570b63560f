from __future__ import annotations

from django.core.management.base import BaseCommand

from generations.services import generations_reconcile


class Command(BaseCommand):
    help = "Poll generations with no news from Replicate, run due retries, fail the unconfirmed (refunded)."

    def handle(self, *args, **options) -> None:
        counts = generations_reconcile()
        self.stdout.write(", ".join(f"{k}: {v}" for k, v in counts.items()))
