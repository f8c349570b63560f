from __future__ import annotations

from billing.models import Wallet


def balance_for_user(user) -> int:
    """The user's cached balance (0 when no wallet exists yet)."""
    return Wallet.objects.filter(user=user).values_list("balance", flat=True).first() or 0
