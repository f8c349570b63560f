from django.core.management.base import BaseCommand

from api.services import idempotency_prune


class Command(BaseCommand):
    help = "Delete the stored answers of Idempotency-Key requests older than a day."

    def handle(self, *args, **options) -> None:
        count = idempotency_prune()
        self.stdout.write(f"{count} idempotency record(s) deleted.")
