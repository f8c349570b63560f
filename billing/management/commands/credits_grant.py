"""Grant credits to one account from the command line, through the ledger (billing.services).

    manage.py credits_grant --user alice@example.com --credits 500 --reason "Support ticket 1234"

The grant is an entry of kind "billing.credits.granted" whose note is the reason and who ran it; its
reference is unique per run ("grant:cli:<random>"), or `--reference` names it so that running the
same command twice (a retried script) grants once. Refuses zero, negative amounts and no reason.
"""

from __future__ import annotations

import getpass
import uuid

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from billing.models import CreditKind
from billing.services import credits_grant


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no name in /etc/passwd
        return "an operator"


class Command(BaseCommand):
    help = "Grant credits to a user (a ledger entry with a reason and a unique reference)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", required=True, help="The account's e-mail address.")
        parser.add_argument(
            "--credits", required=True, type=int, help="How many credits (a positive number)."
        )
        parser.add_argument("--reason", required=True, help="Why: kept on the ledger entry.")
        parser.add_argument(
            "--reference",
            default="",
            help="A reference of your own (e.g. a ticket id): the same reference never grants twice.",
        )

    def handle(self, *args, **options) -> None:
        amount: int = options["credits"]
        reason: str = options["reason"].strip()
        if amount <= 0:
            raise CommandError("--credits must be a positive number of credits.")
        if not reason:
            raise CommandError("--reason must say why the credits are granted.")
        user_model = get_user_model()
        try:
            user = user_model.objects.get(email__iexact=options["user"].strip())
        except user_model.DoesNotExist:
            raise CommandError(f"No account has the address {options['user']!r}.")
        reference = f"grant:cli:{options['reference'].strip() or uuid.uuid4().hex}"
        operator = _operator()
        result = credits_grant(
            user=user,
            amount=amount,
            reference=reference,
            kind=CreditKind.GRANT,
            note=f"{reason} (granted by {operator} with manage.py credits_grant)",
        )
        entry = result.entry
        if not result.created:
            self.stdout.write(
                self.style.WARNING(
                    f"Nothing granted: {reference} was already used ({entry.amount:+d} credits to "
                    f"{entry.wallet.user.email})."
                )
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Granted {amount} credits to {user.email} ({reference}); balance now {entry.balance_after}."
            )
        )
