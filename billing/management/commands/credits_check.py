"""Recompute every balance from the ledger and report drift. Exit status 1 when any drift is found.

`--fix` sets each drifting cached balance to its ledger sum, under the wallet lock. That is safe:
the ledger is the truth and is never changed; a negative sum is reported and left alone.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from billing.services import wallets_check


class Command(BaseCommand):
    help = "Check every wallet's cached balance against the sum of its ledger entries."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--fix", action="store_true", help="Set drifting balances to their ledger sum.")

    def handle(self, *args, fix: bool = False, **options) -> None:
        drifts = wallets_check(fix=fix)
        for d in drifts:
            self.stdout.write(
                f"DRIFT wallet {d.wallet_id} ({d.user_email}): cached {d.cached}, ledger {d.ledger}"
                f"{' (fixed)' if fix and d.ledger >= 0 else ''}"
            )
        if not drifts:
            self.stdout.write(self.style.SUCCESS("All balances match the ledger."))
            return
        self.stderr.write(f"{len(drifts)} wallet(s) drifted from the ledger.")
        sys.exit(1)
