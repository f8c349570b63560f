"""Billing services: the ledger (credits_*) and Stripe payments (checkout_*, stripe_*, subscription_*).

Import from here; the split into modules is only for size.
"""

from __future__ import annotations

from billing.services.ledger import (
    SPEND_KINDS,
    InsufficientCredits,
    LedgerResult,
    WalletDrift,
    _maybe_warn_low_balance,
    credits_adjust,
    credits_grant,
    credits_refund,
    credits_refund_part,
    credits_spend,
    credits_take_back,
    wallet_create_for_new_user,
    wallet_lock,
    wallets_check,
)
from billing.services.payments import (
    WebhookLockTimeout,
    billing_portal_url,
    checkout_start,
    stripe_event_process,
    stripe_event_record,
    subscription_sync,
)

__all__ = [
    "SPEND_KINDS",
    "InsufficientCredits",
    "LedgerResult",
    "WalletDrift",
    "WebhookLockTimeout",
    "_maybe_warn_low_balance",
    "billing_portal_url",
    "checkout_start",
    "credits_adjust",
    "credits_grant",
    "credits_refund",
    "credits_refund_part",
    "credits_spend",
    "credits_take_back",
    "stripe_event_process",
    "stripe_event_record",
    "subscription_sync",
    "wallet_create_for_new_user",
    "wallet_lock",
    "wallets_check",
]
