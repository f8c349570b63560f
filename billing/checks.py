"""Billing's system checks (registered in BillingConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

SANDBOX_PRICE_PREFIX = "price_sandbox_"


@checks.register(checks.Tags.database)
def sandbox_prices_outside_the_sandbox(
    app_configs: Any, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Databases migrated before the catalog moved to `catalog_seed` hold the sandbox's packs and
    plan (billing/migrations/0003_seed_prices.py): real Stripe knows none of those price ids, so
    their checkout can only fail. Runs with `check --database default` and on `migrate`."""
    if settings.SANDBOX_MODE or not databases:
        return []
    from django.db import connection

    from billing.models import CreditPack, Plan

    # `migrate` runs this before it migrates: on a new database there is nothing to warn about, and
    # querying the missing tables would stop the deployment's first `migrate`.
    if CreditPack._meta.db_table not in connection.introspection.table_names():
        return []

    names = [
        *CreditPack.objects.filter(active=True, stripe_price_id__startswith=SANDBOX_PRICE_PREFIX).values_list(
            "name", flat=True
        ),
        *Plan.objects.filter(active=True, stripe_price_id__startswith=SANDBOX_PRICE_PREFIX).values_list(
            "name", flat=True
        ),
    ]
    if not names:
        return []
    return [
        checks.Warning(
            f"Active packs or plans sell sandbox prices outside the sandbox: {', '.join(names)}.",
            hint="Deactivate them in the admin (Billing → Credit packs / Plans) and add your own Stripe "
            "prices there or with `manage.py catalog_seed FILE`.",
            id="billing.W001",
        )
    ]
