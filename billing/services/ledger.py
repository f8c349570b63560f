"""Credits: the only code that writes the ledger.

Every function takes a unique `reference` naming what caused the entry; a second call with
the same reference changes nothing and returns the existing entry, which is what makes
duplicate webhooks and redelivered tasks harmless.

Concurrency: every write locks the user's Wallet row (select_for_update) and re-checks the
reference under that lock, so two twins on two connections serialise on the wallet and the
second one sees the first one's entry. The unique index on `reference` is the last line of
defence (a twin writing to another user's wallet with the same reference).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum

from billing.models import CreditEntry, CreditKind, Wallet
from billing.selectors import balance_shown_forget

if TYPE_CHECKING:  # the user model is a type here; billing sits below accounts (docs/architecture.md)
    from fluxsite.accounts.models import User

logger = logging.getLogger(__name__)

SPEND_KINDS = (CreditKind.SPEND_TRAINING, CreditKind.SPEND_GENERATION, CreditKind.SPEND_CAPTIONING)


class InsufficientCredits(Exception):
    def __init__(self, *, needed: int, balance: int) -> None:
        self.needed = needed
        self.balance = balance
        super().__init__(
            f"This needs {needed} credits and your balance is {balance}. Buy credits to continue."
        )


@dataclass(frozen=True)
class LedgerResult:
    entry: CreditEntry
    created: bool


class _DuplicateReference(Exception):
    pass


def _locked_wallet(user: User) -> Wallet:
    Wallet.objects.get_or_create(user=user)
    return Wallet.objects.select_for_update().get(user=user)


def wallet_lock(*, user: User) -> Wallet:
    """Lock the user's wallet until the current transaction ends (call it inside atomic()).

    A service that must count the user's running work before a spend (the per-user caps) takes
    this lock first: two requests at once then count one after the other, never both under the cap.
    """
    return _locked_wallet(user)


def _balance_shown_refresh(user_id: int) -> None:
    """The layout's cached balance (billing.selectors.balance_shown) is forgotten now, for the rest
    of this transaction, and again once it commits, for every other connection."""
    balance_shown_forget(user_id)
    transaction.on_commit(lambda: balance_shown_forget(user_id))


def _append(
    *,
    user: User,
    amount: int,
    kind: str,
    reference: str,
    note: str = "",
    amount_cents: int | None = None,
    currency: str = "",
    shortfall: int = 0,
    allow_zero: bool = False,
) -> LedgerResult:
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError("credit amounts are integers")
    if amount == 0 and not allow_zero:
        raise ValueError("a ledger entry moves a non-zero number of credits")
    if not reference:
        raise ValueError("every ledger entry needs a reference")
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
        _balance_shown_refresh(wallet.user_id)
        try:
            with transaction.atomic():
                entry = CreditEntry.objects.create(
                    wallet=wallet,
                    amount=amount,
                    kind=kind,
                    reference=reference,
                    balance_after=wallet.balance,
                    note=note[:300],
                    amount_cents=amount_cents,
                    currency=currency,
                    shortfall=shortfall,
                )
        except IntegrityError:
            # A twin on another connection won the unique reference: leaving the outer block by
            # an exception rolls our balance change back too.
            raise _DuplicateReference(reference)
    return LedgerResult(entry, created=True)


def _append_idempotent(**kwargs: Any) -> LedgerResult:
    try:
        return _append(**kwargs)
    except _DuplicateReference:
        return LedgerResult(CreditEntry.objects.get(reference=kwargs["reference"]), created=False)


def credits_grant(
    *,
    user: User,
    amount: int,
    reference: str,
    kind: str = CreditKind.GRANT,
    note: str = "",
    amount_cents: int | None = None,
    currency: str = "",
) -> LedgerResult:
    """Add `amount` (> 0) credits once per reference."""
    if amount <= 0:
        raise ValueError("a grant adds a positive number of credits")
    return _append_idempotent(
        user=user,
        amount=amount,
        kind=kind,
        reference=reference,
        note=note,
        amount_cents=amount_cents,
        currency=currency,
    )


def credits_spend(*, user: User, amount: int, reference: str, kind: str, note: str = "") -> LedgerResult:
    """Take `amount` (> 0) credits once per reference.

    Raises InsufficientCredits (nothing written) when the balance is smaller than `amount`.
    `kind` is CreditKind.SPEND_TRAINING or SPEND_GENERATION; `reference` names the job, e.g.
    "training:42" or "generation:17", and is what a later credits_refund() names.
    """
    if amount <= 0:
        raise ValueError("a spend takes a positive number of credits")
    if kind not in SPEND_KINDS:
        raise ValueError(f"a spend has a spend kind ({', '.join(SPEND_KINDS)}), not {kind!r}")
    result = _append_idempotent(user=user, amount=-amount, kind=kind, reference=reference, note=note)
    if result.created:
        user_id = user.pk
        transaction.on_commit(lambda: _maybe_warn_low_balance(user_id))
    return result


def credits_refund(*, spend_reference: str, note: str = "") -> LedgerResult | None:
    """Give back a spend, at most once (reference "refund:<spend reference>").

    Returns None when there was no such spend (or the entry is not a spend).
    """
    spend = CreditEntry.objects.select_related("wallet__user").filter(reference=spend_reference).first()
    if spend is None or spend.amount >= 0 or spend.kind not in SPEND_KINDS:
        return None
    return _append_idempotent(
        user=spend.wallet.user,
        amount=-spend.amount,
        kind=CreditKind.REFUND,
        reference=f"refund:{spend_reference}",
        note=note or f"Refund of {spend.note or spend_reference}",
    )


def credits_refund_part(
    *, spend_reference: str, part: str, amount: int, note: str = ""
) -> LedgerResult | None:
    """Give back `amount` of a spend for one part of it (a photo of a caption batch), at most once
    per part (reference "refund:<spend reference>:<part>").

    The refunds of one spend never add up to more than the spend: checked under the wallet lock,
    so parts refunded at the same moment by a webhook and a cancel cannot overshoot. Returns None
    when there is no such spend; raises ValueError for an amount that is not positive or that
    would refund more than was spent.
    """
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValueError("a part refund gives back a positive integer of credits")
    spend = CreditEntry.objects.select_related("wallet__user").filter(reference=spend_reference).first()
    if spend is None or spend.amount >= 0 or spend.kind not in SPEND_KINDS:
        return None
    reference = f"refund:{spend_reference}:{part}"
    with transaction.atomic():
        existing = CreditEntry.objects.filter(reference=reference).first()
        if existing is not None:
            return LedgerResult(existing, created=False)
        _locked_wallet(spend.wallet.user)  # serialises the sum below with every other refund
        refunded = (
            CreditEntry.objects.filter(
                kind=CreditKind.REFUND, reference__startswith=f"refund:{spend_reference}"
            ).aggregate(total=Sum("amount"))["total"]
            or 0
        )
        if refunded + amount > -spend.amount:
            raise ValueError(f"refunds of {spend_reference} would exceed what it spent")
        return _append_idempotent(
            user=spend.wallet.user,
            amount=amount,
            kind=CreditKind.REFUND,
            reference=reference,
            note=note or f"Refund of part of {spend.note or spend_reference}",
        )


def credits_take_back(*, user: User, amount: int, reference: str, note: str = "") -> LedgerResult:
    """Take back up to `amount` (> 0) credits because a payment was refunded; never below zero.

    Policy (also on the billing FAQ): credits already spent on trainings or images are not
    recovered and the balance never goes negative. The entry takes what is left and records
    the rest in `shortfall`, so an operator can see it in admin and decide.
    The whole computation runs under the wallet lock, so a concurrent spend cannot slip between
    reading the balance and writing the entry.
    """
    if amount <= 0:
        raise ValueError("a take-back takes a positive number of credits")
    with transaction.atomic():
        existing = CreditEntry.objects.filter(reference=reference).first()
        if existing is not None:
            return LedgerResult(existing, created=False)
        wallet = _locked_wallet(user)
        take = min(amount, wallet.balance)
        shortfall = amount - take
        if shortfall:
            note = f"{note} ({shortfall} credits were already spent and could not be taken back)".strip()
            logger.warning("take-back %s: %s credits already spent by user %s", reference, shortfall, user.pk)
        # A zero-credit entry is still written when everything was spent: it records the shortfall.
        result = _append_idempotent(
            user=user,
            amount=-take,
            kind=CreditKind.CHARGEBACK,
            reference=reference,
            note=note,
            shortfall=shortfall,
            allow_zero=True,
        )
    if result.created:
        user_id = user.pk
        transaction.on_commit(lambda: _maybe_warn_low_balance(user_id))
    return result


def credits_adjust(
    *, user: User, amount: int, note: str, actor: str | None = None, reference: str = ""
) -> LedgerResult:
    """An operator's correction: a new entry, never an edit. Negative amounts cannot go below zero.

    Raises InsufficientCredits for a negative adjustment larger than the balance and ValueError
    for zero or a missing note (every adjustment must say why).
    """
    if amount == 0:
        raise ValueError("an adjustment moves a non-zero number of credits")
    if not note.strip():
        raise ValueError("an adjustment needs a note saying why")
    who = f" by {actor}" if actor is not None else ""
    return _append_idempotent(
        user=user,
        amount=amount,
        kind=CreditKind.ADJUSTMENT,
        reference=reference or f"adjustment:{uuid.uuid4().hex}",
        note=f"{note.strip()}{who}",
    )


def wallet_create_for_new_user(*, user: User) -> Wallet:
    """An empty wallet. Welcome credits come when the address is verified, once per mailbox
    (fluxsite.accounts.services.user_email_verify, reference "signup:<address hash>")."""
    wallet, _ = Wallet.objects.get_or_create(user=user)
    return wallet


@dataclass(frozen=True)
class WalletDrift:
    wallet_id: int
    user_email: str
    cached: int
    ledger: int


def wallets_check(*, fix: bool = False) -> list[WalletDrift]:
    """Recompute every balance from the ledger; return the wallets whose cache disagrees.

    With fix=True each drifting wallet is set to its ledger sum under the wallet lock (the
    ledger is the truth; a negative sum is reported but never written, the constraint forbids it).
    """
    drifts: list[WalletDrift] = []
    sums = dict(
        CreditEntry.objects.values("wallet_id")
        .annotate(total=Sum("amount"))
        .values_list("wallet_id", "total")
    )
    for wallet in Wallet.objects.select_related("user").order_by("pk").iterator():
        total = sums.get(wallet.pk) or 0
        if wallet.balance == total:
            continue
        if fix:
            with transaction.atomic():
                locked = Wallet.objects.select_for_update().get(pk=wallet.pk)
                total = CreditEntry.objects.filter(wallet=locked).aggregate(t=Sum("amount"))["t"] or 0
                if locked.balance != total and total >= 0:
                    Wallet.objects.filter(pk=locked.pk).update(balance=total)
                    _balance_shown_refresh(locked.user_id)
                    logger.warning("wallet %s fixed: %s -> %s", locked.pk, locked.balance, total)
        drifts.append(WalletDrift(wallet.pk, wallet.user.email, wallet.balance, total))
    return drifts


def _maybe_warn_low_balance(user_id: int) -> None:
    """E-mail once per crossing below the threshold (reset when the balance goes back above)."""
    from django.core.mail import send_mail

    threshold = settings.LOW_BALANCE_THRESHOLD
    updated = Wallet.objects.filter(
        user_id=user_id, balance__lt=threshold, low_balance_notified=False
    ).update(low_balance_notified=True)
    if updated:
        wallet = Wallet.objects.select_related("user").get(user_id=user_id)
        send_mail(
            "Your Fluxsite credits are running low",
            f"Your balance is {wallet.balance} credits. Buy more at {settings.SITE_URL}/billing/ to keep training.",
            None,
            [wallet.user.email],
            fail_silently=True,
        )
