from __future__ import annotations

from django.conf import settings
from django.db import models


class CreditKind(models.TextChoices):
    GRANT = "billing.credits.granted", "Grant"
    SIGNUP = "billing.credits.signup", "Sign-up bonus"
    PURCHASE = "billing.credits.purchased", "Purchase"
    SUBSCRIPTION = "billing.credits.subscription", "Subscription allowance"
    SPEND_TRAINING = "billing.credits.spent.training", "Training"
    SPEND_GENERATION = "billing.credits.spent.generation", "Generation"
    REFUND = "billing.credits.refunded", "Refund"
    CHARGEBACK = "billing.credits.charged_back", "Payment refunded"
    ADJUSTMENT = "billing.credits.adjusted", "Adjustment"


class Wallet(models.Model):
    """The cached balance of one user's ledger.

    Only billing.services changes it, in the same transaction as the CreditEntry it caches,
    under select_for_update(). The database refuses a negative balance.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="wallet")
    balance = models.BigIntegerField(default=0)
    low_balance_notified = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(balance__gte=0), name="wallet_balance_not_negative")]

    def __str__(self) -> str:
        return f"{self.user} ({self.balance} credits)"


class CreditEntry(models.Model):
    """One append-only line of the credit ledger. Never updated, never deleted.

    `reference` names the source (a Stripe event or object id, a training, a generation)
    and is unique, so doing the same thing twice is a harmless no-op.
    """

    wallet = models.ForeignKey(Wallet, on_delete=models.CASCADE, related_name="entries")
    amount = models.BigIntegerField(help_text="Positive adds credits, negative takes them.")
    kind = models.CharField(max_length=64, choices=CreditKind.choices)
    reference = models.CharField(max_length=200, unique=True)
    balance_after = models.BigIntegerField()
    note = models.CharField(max_length=300, blank=True)
    amount_cents = models.BigIntegerField(null=True, blank=True, help_text="Money paid, if any, in minor units.")
    currency = models.CharField(max_length=3, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "credit entries"
        indexes = [models.Index(fields=["wallet", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.amount:+d} {self.get_kind_display()} ({self.reference})"
