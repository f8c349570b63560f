from __future__ import annotations

from django.core.management.base import BaseCommand

from training.services import trainings_reconcile


class Command(BaseCommand):
    help = (
        "Poll trainings with no news from Replicate, resume stalled stages, fail the unconfirmed (refunded)."
    )

    def handle(self, *args, **options) -> None:
        counts = trainings_reconcile()
        self.stdout.write(", ".join(f"{k}: {v}" for k, v in counts.items()))
