"""The catalog of credit packs and plans, loaded from a data file (`manage.py catalog_seed FILE`).

No migration inserts prices: a price id belongs to one Stripe account, so the rows come from the
file of the account in use. The sandbox's file is sandbox/stripe/catalog.json, which `make run`'s
demo setup and the tests' `catalog` fixture load; production loads its own file or uses the admin.

Seeding only adds what is missing, matched by Stripe price id: a row an operator edited in the
admin is left as it is, so running the command again is harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import transaction

from billing.models import CreditPack, Plan


class CatalogError(ValueError):
    """The catalog file is not what catalog_read expects; the message names the entry."""


@dataclass(frozen=True)
class PackSpec:
    stripe_price_id: str
    name: str
    credits: int
    amount_cents: int
    currency: str = "usd"
    sort_order: int = 0


@dataclass(frozen=True)
class PlanSpec:
    stripe_price_id: str
    name: str
    credits_per_period: int
    amount_cents: int
    currency: str = "usd"
    interval: str = "month"
    sort_order: int = 0


@dataclass(frozen=True)
class CatalogSeedResult:
    packs_created: int
    plans_created: int


def _spec(cls: type[PackSpec] | type[PlanSpec], entry: Any, where: str) -> Any:
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: expected an object, got {type(entry).__name__}")
    try:
        spec = cls(**entry)
    except TypeError as exc:
        raise CatalogError(f"{where}: {exc}") from None
    for name, value in vars(spec).items():
        wanted = str if name in ("stripe_price_id", "name", "currency", "interval") else int
        # bool is an int to Python, never a count of credits or cents
        if not isinstance(value, wanted) or isinstance(value, bool) or (wanted is int and value < 0):
            raise CatalogError(
                f"{where}: {name} must be a {'text' if wanted is str else 'whole number >= 0'}"
            )
    return spec


def catalog_read(path: Path) -> tuple[list[PackSpec], list[PlanSpec]]:
    """Parse a catalog file: `{"packs": [...], "plans": [...]}`, each entry the fields of PackSpec or
    PlanSpec (money in integer minor units). Raises CatalogError, or OSError if it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or set(data) - {"packs", "plans", "_comment"}:
        raise CatalogError(f'{path}: expected an object with "packs" and "plans"')
    packs = [_spec(PackSpec, e, f"{path} packs[{i}]") for i, e in enumerate(data.get("packs", []))]
    plans = [_spec(PlanSpec, e, f"{path} plans[{i}]") for i, e in enumerate(data.get("plans", []))]
    return packs, plans


def catalog_seed(*, packs: list[PackSpec], plans: list[PlanSpec]) -> CatalogSeedResult:
    """Create the packs and plans whose Stripe price id is not in the database yet; returns how many.

    Existing rows, active or not, are not changed (the admin is where prices are edited).
    """
    created_packs = created_plans = 0
    with transaction.atomic():
        for pack in packs:
            _, created = CreditPack.objects.get_or_create(
                stripe_price_id=pack.stripe_price_id,
                defaults={k: v for k, v in vars(pack).items() if k != "stripe_price_id"},
            )
            created_packs += created
        for plan in plans:
            _, created = Plan.objects.get_or_create(
                stripe_price_id=plan.stripe_price_id,
                defaults={k: v for k, v in vars(plan).items() if k != "stripe_price_id"},
            )
            created_plans += created
    return CatalogSeedResult(packs_created=created_packs, plans_created=created_plans)
