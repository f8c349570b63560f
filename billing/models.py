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
    SPEND_CAPTIONING = "billing.credits.spent.captioning", "Captioning"
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
        constraints = [
            models.CheckConstraint(condition=models.Q(balance__gte=0), name="wallet_balance_not_negative")
        ]

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
    amount_cents = models.BigIntegerField(
        null=True, blank=True, help_text="Money paid, if any, in minor units."
    )
    currency = models.CharField(max_length=3, blank=True)
    shortfall = models.BigIntegerField(
        default=0,
        help_text="Credits that should have been taken back but were already spent (refunded payments).",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "credit entries"
        indexes = [models.Index(fields=["wallet", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.amount:+d} {self.get_kind_display()} ({self.reference})"


class CreditPack(models.Model):
    """A one-time purchase of credits, sold through a Stripe price (mode=payment)."""

    name = models.CharField(max_length=100)
    credits = models.PositiveIntegerField()
    stripe_price_id = models.CharField(max_length=100, unique=True)
    # Shown on the pricing page; Stripe's price is what is actually charged.
    amount_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    active = models.BooleanField(default=True)
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "credits"]

    def __str__(self) -> str:
        return f"{self.name} ({self.credits} credits)"


class Plan(models.Model):
    """A subscription: a monthly allowance of credits, sold through a recurring Stripe price."""

    name = models.CharField(max_length=100)
    credits_per_period = models.PositiveIntegerField()
    stripe_price_id = models.CharField(max_length=100, unique=True)
    amount_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    interval = models.CharField(max_length=10, default="month")
    active = models.BooleanField(default=True)
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "amount_cents"]

    def __str__(self) -> str:
        return f"{self.name} ({self.credits_per_period} credits / {self.interval})"


class StripeCustomer(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stripe_customer"
    )
    customer_id = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} → {self.customer_id}"


class SubscriptionStatus(models.TextChoices):
    # Stripe's own statuses, stored as Stripe reports them after a re-read.
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    UNPAID = "unpaid"
    PAUSED = "paused"


class Subscription(models.Model):
    """Our copy of a Stripe subscription, always written from a fresh subscription_retrieve()."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscriptions")
    stripe_subscription_id = models.CharField(max_length=100, unique=True)
    stripe_customer_id = models.CharField(max_length=100, blank=True)
    plan = models.ForeignKey(
        Plan, on_delete=models.PROTECT, null=True, blank=True, related_name="subscriptions"
    )
    status = models.CharField(
        max_length=20, choices=SubscriptionStatus.choices, default=SubscriptionStatus.INCOMPLETE
    )
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user} {self.plan or '?'} ({self.status})"


class InvoiceGrant(models.Model):
    """What one paid subscription invoice granted, and the payment that paid it.

    Since API version 2025-03-31 a charge no longer names its invoice; the invoice names its
    payment intents. Keeping that link lets a refunded subscription charge take its credits back.
    """

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="invoice_grants")
    invoice_id = models.CharField(max_length=100, unique=True)
    payment_intent_id = models.CharField(max_length=100, blank=True, db_index=True)
    credits = models.PositiveIntegerField()
    amount_cents = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.invoice_id}: {self.credits} credits"


class CheckoutStatus(models.TextChoices):
    OPEN = "open", "Waiting for payment"
    PROCESSING = "processing", "Payment processing"
    PAID = "paid", "Paid"
    FAILED = "failed", "Payment failed"
    EXPIRED = "expired", "Expired"
    REFUNDED = "refunded", "Refunded"


class CheckoutRecord(models.Model):
    """One Stripe Checkout Session we created, linking it to the user and what they bought."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="checkouts")
    session_id = models.CharField(max_length=200, unique=True)
    mode = models.CharField(max_length=20)  # payment | subscription
    pack = models.ForeignKey(
        CreditPack, on_delete=models.PROTECT, null=True, blank=True, related_name="checkouts"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, null=True, blank=True, related_name="checkouts")
    # Snapshot at checkout time, so an operator editing the pack later does not change this sale.
    credits = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=20, choices=CheckoutStatus.choices, default=CheckoutStatus.OPEN)
    amount_cents = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    payment_intent_id = models.CharField(max_length=200, blank=True, db_index=True)
    stripe_subscription_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.session_id} ({self.get_status_display()})"


class StripeEventStatus(models.TextChoices):
    RECEIVED = "received"
    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"


class StripeEvent(models.Model):
    """Every verified Stripe webhook, stored once by its event id before any work is done."""

    event_id = models.CharField(max_length=200, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    payload = models.JSONField()
    status = models.CharField(
        max_length=20, choices=StripeEventStatus.choices, default=StripeEventStatus.RECEIVED
    )
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type} ({self.status})"
