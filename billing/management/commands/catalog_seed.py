"""Add the credit packs and plans of a catalog file that are not in the database yet.

    manage.py catalog_seed sandbox/stripe/catalog.json    # the sandbox's prices (make run does this)
    manage.py catalog_seed /etc/fluxsite/catalog.json     # your Stripe account's prices

The file format is described in billing/services/catalog.py; rows already present (matched by
Stripe price id) are left alone, so running it twice changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.services.catalog import CatalogError, catalog_read, catalog_seed


class Command(BaseCommand):
    help = "Add the credit packs and plans of a catalog file that are missing (matched by Stripe price id)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "path", type=Path, help="The catalog file (JSON), e.g. sandbox/stripe/catalog.json."
        )

    def handle(self, *args: object, path: Path, **options: object) -> None:
        try:
            packs, plans = catalog_read(path)
        except (CatalogError, OSError) as exc:
            raise CommandError(str(exc)) from None
        result = catalog_seed(packs=packs, plans=plans)
        self.stdout.write(
            f"Catalog {path}: {result.packs_created} of {len(packs)} packs and "
            f"{result.plans_created} of {len(plans)} plans added (the others were already there)."
        )
