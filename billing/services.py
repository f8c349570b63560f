"""Credits: the only code that writes the ledger.

Every function takes a unique `reference` naming what caused the entry; a second call with
the same reference changes nothing and returns the existing entry, which is what makes
duplicate webhooks and redelivered tasks harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction

from billing.models import CreditEntry, CreditKind, Wallet

logger = logging.getLogger(__name__)


class InsufficientCredits(Exception):
    def __init__(self, *, needed: int, balance: int) -> None:
        self.needed = needed
        self.balance = balance
        super().__init__(f"This needs {needed} credits and your balance is {balance}. Buy credits to continue.")


@dataclass(frozen=True)
class LedgerResult:
    entry: CreditEntry
    created: bool


def _locked_wallet(user) -> Wallet:
    Wallet.objects.get_or_create(user=user)
    return Wallet.objects.select_for_update().get(user=user)


def _append(
    *, user, amount: int, kind: str, reference: str, note: str = "", amount_cents: int | None = None,
    currency: str = "",
) -> LedgerResult:
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError("credit amounts are integers")
    with transaction.atomic():
        existing = CreditEntry.objects.filter(reference=reference).first()
        if existing is not None:
            return LedgerResult(existing, created=False)
        wallet = _locked_wallet(user)
        # Checked again under the lock: a concurrent twin may have committed meanwhile.
        existing = CreditEntry.objects.filter(reference=reference).first()
        if existing is not None:
            return LedgerResult(existing, created=False)
        if wallet.balance + amount < 0:
            raise InsufficientCredits(needed=-amount, balance=wallet.balance)
        wallet.balance += amount
        if wallet.balance >= settings.LOW_BALANCE_THRESHOLD:
            wallet.low_balance_notified = False
        wallet.save(update_fields=["balance", "low_balance_notified", "updated_at"])
        try:
            with transaction.atomic():
                entry = CreditEntry.objects.create(
                    wallet=wallet, amount=amount, kind=kind, reference=reference, balance_after=wallet.balance,
                    note=note[:300], amount_cents=amount_cents, currency=currency,
                )
        except IntegrityError:
            # A twin on another connection won the unique reference: undo our balance change.
            raise _DuplicateReference(reference)
    return LedgerResult(entry, created=True)


class _DuplicateReference(Exception):
    pass


def _append_idempotent(**kwargs) -> LedgerResult:
    try:
        return _append(**kwargs)
    except _DuplicateReference:
        return LedgerResult(CreditEntry.objects.get(reference=kwargs["reference"]), created=False)


def credits_grant(*, user, amount: int, reference: str, kind: str = CreditKind.GRANT, note: str = "",
                  amount_cents: int | None = None, currency: str = "") -> LedgerResult:
    """Add `amount` (> 0) credits once per reference."""
    if amount <= 0:
        raise ValueError("a grant adds a positive number of credits")
    return _append_idempotent(user=user, amount=amount, kind=kind, reference=reference, note=note,
                              amount_cents=amount_cents, currency=currency)


def credits_spend(*, user, amount: int, reference: str, kind: str, note: str = "") -> LedgerResult:
    """Take `amount` (> 0) credits once per reference; raises InsufficientCredits over the balance."""
    if amount <= 0:
        raise ValueError("a spend takes a positive number of credits")
    result = _append_idempotent(user=user, amount=-amount, kind=kind, reference=reference, note=note)
    if result.created:
        transaction.on_commit(lambda: _maybe_warn_low_balance(user.pk))
    return result


def credits_refund(*, spend_reference: str, note: str = "") -> LedgerResult | None:
    """Give back a spend, at most once. Returns None when there was no such spend."""
    spend = CreditEntry.objects.select_related("wallet__user").filter(reference=spend_reference).first()
    if spend is None or spend.amount >= 0:
        return None
    return _append_idempotent(user=spend.wallet.user, amount=-spend.amount, kind=CreditKind.REFUND,
                              reference=f"refund:{spend_reference}", note=note or f"Refund of {spend.note}".strip())


def credits_take_back(*, user, amount: int, reference: str, note: str = "") -> LedgerResult:
    """Take back up to `amount` credits (a refunded payment): never below zero.

    Credits already spent cannot be recovered; the entry records only what was taken and the
    note says how much could not be, so an operator can see it in admin.
    """
    with transaction.atomic():
        wallet = _locked_wallet(user)
        take = min(amount, wallet.balance)
        shortfall = amount - take
        if shortfall:
            note = f"{note} ({shortfall} credits were already spent and could not be taken back)".strip()
        if take == 0:
            take_amount = 0
        else:
            take_amount = -take
        return _append_idempotent(user=user, amount=take_amount, kind=CreditKind.CHARGEBACK, reference=reference,
                                  note=note)


def wallet_create_for_new_user(*, user) -> Wallet:
    wallet, _ = Wallet.objects.get_or_create(user=user)
    if settings.SIGNUP_CREDITS > 0:
        credits_grant(user=user, amount=settings.SIGNUP_CREDITS, reference=f"signup:{user.pk}",
                      kind=CreditKind.SIGNUP, note="Welcome credits")
    return wallet


def _maybe_warn_low_balance(user_id: int) -> None:
    """E-mail once per crossing below the threshold (reset when the balance goes back above)."""
    from django.core.mail import send_mail

    threshold = settings.LOW_BALANCE_THRESHOLD
    updated = Wallet.objects.filter(user_id=user_id, balance__lt=threshold, low_balance_notified=False).update(
        low_balance_notified=True
    )
    if updated:
        wallet = Wallet.objects.select_related("user").get(user_id=user_id)
        send_mail(
            "Your Fluxsite credits are running low",
            f"Your balance is {wallet.balance} credits. Buy more at {settings.SITE_URL}/billing/ to keep training.",
            None,
            [wallet.user.email],
            fail_silently=True,
        )
