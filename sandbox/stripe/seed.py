"""The products and prices the sandbox sells, with the ids billing refers to.

Used by the data migration and again on demand (`seed_records`), because tests that flush the
database (transaction=True) remove the migrated rows.
"""

from __future__ import annotations

from typing import Any

CREATED = 1735689600  # 2025-01-01, a fixed date so the seed is reproducible

PRODUCTS: list[tuple[str, str]] = [
    ("prod_sandbox_credits", "Fluxsite credits"),
    ("prod_sandbox_pro", "Fluxsite Pro"),
]
# id, product, unit_amount (cents), recurring interval or None, nickname, metadata
PRICES: list[tuple[str, str, int, str | None, str, dict[str, str]]] = [
    ("price_sandbox_pack_1000", "prod_sandbox_credits", 1000, None, "1,000 credits", {"credits": "1000"}),
    ("price_sandbox_pack_3000", "prod_sandbox_credits", 2700, None, "3,000 credits", {"credits": "3000"}),
    ("price_sandbox_pack_10000", "prod_sandbox_credits", 8000, None, "10,000 credits", {"credits": "10000"}),
    ("price_sandbox_plan_pro", "prod_sandbox_pro", 1900, "month", "Pro monthly", {}),
]
SEED_IDS = frozenset([p[0] for p in PRODUCTS] + [p[0] for p in PRICES])


def product_json(
    pid: str, name: str, *, created: int = CREATED, metadata: dict | None = None
) -> dict[str, Any]:
    return {
        "id": pid,
        "object": "product",
        "active": True,
        "created": created,
        "default_price": None,
        "description": None,
        "images": [],
        "livemode": False,
        "metadata": metadata or {},
        "name": name,
        "type": "service",
        "updated": created,
        "url": None,
    }


def price_json(
    pid: str,
    product: str,
    amount: int,
    interval: str | None,
    nickname: str | None,
    metadata: dict[str, str],
    *,
    currency: str = "usd",
    created: int = CREATED,
    lookup_key: str | None = None,
) -> dict[str, Any]:
    return {
        "id": pid,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": created,
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": lookup_key,
        "metadata": metadata,
        "nickname": nickname,
        "product": product,
        "recurring": None
        if interval is None
        else {
            "interval": interval,
            "interval_count": 1,
            "meter": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        },
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "one_time" if interval is None else "recurring",
        "unit_amount": amount,
        "unit_amount_decimal": str(amount),
    }


def seed_records(record_model: Any) -> None:
    """Create the seed products and prices that are missing (takes the model: migrations pass theirs)."""
    existing = set(record_model.objects.filter(id__in=SEED_IDS).values_list("id", flat=True))
    for pid, name in PRODUCTS:
        if pid not in existing:
            record_model.objects.create(id=pid, object="product", data=product_json(pid, name))
    for pid, product, amount, interval, nickname, metadata in PRICES:
        if pid not in existing:
            record_model.objects.create(
                id=pid,
                object="price",
                data=price_json(
                    pid, product, amount, interval, nickname, metadata, lookup_key=pid.removeprefix("price_")
                ),
            )
